"""Hostile strings in every filter are values, never SQL."""

from __future__ import annotations

import pytest

from tests.api.conftest import Api
from tests.helpers import om_message, receipt

HOSTILE = [
    "' OR '1'='1",
    "x'; DROP TABLE events; --",
    '" OR 1=1 --',
    "1) UNION SELECT token_hash, null FROM api_tokens --",
    "%' OR 'a' LIKE '%",
    "$$; DELETE FROM interactions; $$",
    "\\'; SELECT pg_sleep(5); --",
]
EVENT_FILTERS = [
    "referenceId",
    "mediaType",
    "openmediaType",
    "state",
    "notificationType",
    "messageType",
    "interactionId",
    "account",
    "channel",
]
INTERACTION_FILTERS = ["state", "mediaType", "openmediaType", "account"]


@pytest.fixture
def loaded(committed_api: Api) -> Api:
    """On a database of its own: the exports among these hold a slot (an advisory lock) and
    stream past their request."""
    api = committed_api
    api.store([receipt(om_message(f"i{n}", "Routing", reference_id=n), at=n) for n in range(5)])
    return api


def _intact(api: Api) -> None:
    with api.db() as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (5,)
        assert conn.execute("SELECT count(*) FROM interactions").fetchone() == (5,)
        assert conn.execute("SELECT count(*) FROM api_tokens").fetchone() == (3,)


def test_hostile_event_filters_match_nothing_and_change_nothing(loaded: Api) -> None:
    for name in EVENT_FILTERS:
        for value in HOSTILE:
            response = loaded.get("/api/v1/events", **{name: value})
            assert response.status_code == 200, (name, value)
            assert response.json["items"] == []
            export = loaded.get("/api/v1/events/export", **{name: value}).get_data(as_text=True)
            assert export.startswith('{"_summary": {"rows": 0') or export.startswith(
                '{"_summary":{"rows":0'
            )
    _intact(loaded)


def test_hostile_interaction_filters_and_ids_match_nothing(loaded: Api) -> None:
    for value in HOSTILE:
        for name in INTERACTION_FILTERS:
            response = loaded.get("/api/v1/interactions", **{name: value})
            assert response.status_code == 200
            assert response.json["items"] == []
        assert loaded.get("/api/v1/coverage", account=value).json["accounts"][0]["intervals"] == []
        assert loaded.get(f"/api/v1/interactions/{value}").status_code == 404
        assert loaded.get(f"/api/v1/interactions/{value}/timeline").status_code == 404
    _intact(loaded)


def test_hostile_cursor_and_time_values_are_400s(loaded: Api) -> None:
    for value in HOSTILE:
        for name in ("cursor", "from", "to", "limit", "order"):
            response = loaded.get("/api/v1/events", **{name: value})
            assert response.status_code == 400, (name, value)
    _intact(loaded)
