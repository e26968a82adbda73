"""Legal holds through the API (admins only, problem+json on bad input) and answers over a
purged range: the coverage says "purged" in the API and on the pages, nothing fails, the
integrity check passes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg

from auditor.config import libpq_conninfo
from auditor.store import sealer
from tests.api.conftest import Api
from tests.pages.conftest import csrf_of
from tests.retention.support import run, store_month


def _post(api: Api, path: str, body: Any, role: str = "admin") -> Any:
    headers = {"Authorization": f"Bearer {api.tokens[role]}"}
    return api.client.post(path, json=body, headers=headers)


def test_admins_place_list_and_release_holds_and_both_enter_the_record(committed_api: Api) -> None:
    api = committed_api  # the sealer runs on a connection of its own
    placed = _post(
        api,
        "/api/v1/holds",
        {
            "reason": "case 17",
            "account": "agent002",
            "from": "2023-02-01T00:00:00Z",
            "to": "2023-03-01T00:00:00Z",
        },
    )
    assert placed.status_code == 201, placed.json
    hold = placed.json
    assert hold["placed_by"] == "api token test-admin"
    assert hold["active"] is True
    assert hold["from"] == "2023-02-01T00:00:00Z"
    listed = api.get("/api/v1/holds", active="true").json["items"]
    assert [h["id"] for h in listed] == [hold["id"]]
    released = _post(api, f"/api/v1/holds/{hold['id']}/release", {"reason": "case closed"})
    assert released.status_code == 200, released.json
    assert released.json["active"] is False
    assert released.json["release_reason"] == "case closed"
    again = _post(api, f"/api/v1/holds/{hold['id']}/release", {"reason": "again"})
    assert again.status_code == 409
    assert api.get("/api/v1/holds", active="true").json["items"] == []
    with psycopg.connect(libpq_conninfo(api.url)) as conn:
        sealed = sealer.seal(conn)
        conn.commit()
    assert sealed.sealed["hold"] == 1
    assert sealed.sealed["release"] == 1


def test_bad_holds_are_refused_with_a_problem_naming_the_field(api: Api) -> None:
    nothing = _post(api, "/api/v1/holds", {"reason": "no predicate"})
    assert nothing.status_code == 400
    assert nothing.content_type.startswith("application/problem+json")
    assert "predicate" in str(nothing.json)
    backwards = _post(
        api,
        "/api/v1/holds",
        {
            "reason": "r",
            "account": "a",
            "from": "2024-02-01T00:00:00Z",
            "to": "2024-01-01T00:00:00Z",
        },
    )
    assert backwards.status_code == 400
    assert "received_to" in str(backwards.json)
    no_reason = _post(api, "/api/v1/holds", {"account": "a"})
    assert no_reason.status_code == 400
    naive = _post(api, "/api/v1/holds", {"reason": "r", "from": "2024-02-01T00:00:00"})
    assert naive.status_code == 400
    assert _post(api, "/api/v1/holds/999/release", {"reason": "r"}).status_code == 404
    assert api.get("/api/v1/holds/999").status_code == 404


def test_only_admins_may_hold(api: Api) -> None:
    body = {"reason": "r", "account": "a"}
    assert _post(api, "/api/v1/holds", body, role="exporter").status_code == 403
    assert api.get("/api/v1/holds", role="reader").status_code == 403


def _purge_january_2023(api: Api) -> list[dict[str, Any]]:
    """Events in January 2023 and November 2026, listened to throughout; retention keeps
    24 months. Returns what it dropped. Committed: ``api`` must be a ``committed_api``."""
    with psycopg.connect(libpq_conninfo(api.url), autocommit=True) as conn:
        with conn.transaction():
            store_month(conn, 2023, 1, ["P-1", "P-2"])
            store_month(conn, 2026, 11, ["Q-1", "P-1"])  # P-1 spans both months
        api.cover("agent001", datetime(2022, 12, 1, tzinfo=UTC), datetime(2026, 11, 30, tzinfo=UTC))
        dropped: list[dict[str, Any]] = run(conn, 24).dropped
    return dropped


def test_answers_over_a_purged_range_say_purged_and_never_fail(committed_api: Api) -> None:
    api = committed_api  # a purge commits one transaction per partition
    assert [d["partition"] for d in _purge_january_2023(api)] == ["events_2023_01"]
    window = {"from": "2023-01-01T00:00:00Z", "to": "2023-03-01T00:00:00Z"}
    coverage = api.get("/api/v1/coverage", account="agent001", **window)
    assert coverage.status_code == 200, coverage.json
    assert coverage.json["status"] == "purged"
    assert coverage.json["complete"] is False
    assert coverage.json["gaps"] == []
    [purged] = coverage.json["purged"]
    assert purged["partition"] == "events_2023_01"
    assert purged["rows"] == 2
    assert purged["receipt_position"] is not None
    events = api.get("/api/v1/events", account="agent001", **window)
    assert events.status_code == 200, events.json
    assert events.json["items"] == []
    assert events.json["coverage"]["status"] == "purged"
    timeline = api.get("/api/v1/interactions/P-1/timeline")
    assert timeline.status_code == 200, timeline.json
    assert len(timeline.json["events"]) == 1  # what is left: November 2026
    assert [p["partition"] for p in timeline.json["purged"]] == ["events_2023_01"]
    assert api.get("/api/v1/interactions/P-2/timeline").status_code == 404  # all gone
    later = api.get(
        "/api/v1/coverage",
        account="agent001",
        **{"from": "2026-11-01T00:00:00Z", "to": "2026-11-20T00:00:00Z"},
    )
    assert later.json["status"] == "complete"
    assert later.json["purged"] == []
    integrity = api.get("/api/v1/integrity")
    assert integrity.json["ok"] is True, integrity.json
    # the two purged events were sealed in one record format-2 batch row: one position
    assert integrity.json["purged_positions"] == 1
    assert "events_2023_01" in integrity.json["purged"][0]


def test_the_pages_say_what_was_purged_and_never_fail(committed_api: Api) -> None:
    api = committed_api  # a purge commits one transaction per partition
    _purge_january_2023(api)
    client = api.app.test_client()
    csrf = csrf_of(client.get("/ui/login").get_data(as_text=True))
    signed_in = client.post("/ui/login", data={"token": api.tokens["reader"], "csrf_token": csrf})
    assert signed_in.status_code == 303
    window = {"from": "2023-01-01T00:00:00", "to": "2023-03-01T00:00:00", "account": "agent001"}
    pages = {
        "search": client.get("/ui/search", query_string={"what": "events", **window}),
        "timeline": client.get("/ui/interactions/P-1"),
        "coverage": client.get("/ui/coverage", query_string=window),
    }
    for name, page in pages.items():
        html = page.get_data(as_text=True)
        assert page.status_code == 200, (name, html)
        assert "Purged by retention" in html, name
        assert "events_2023_01" in html, name
    assert "Coverage has gaps" not in pages["search"].get_data(as_text=True)
    november = {"from": "2026-11-01T00:00:00", "to": "2026-11-20T00:00:00"}
    later = client.get("/ui/coverage", query_string={**window, **november})
    assert later.status_code == 200
    assert "Purged by retention" not in later.get_data(as_text=True)
    gone = client.get("/ui/interactions/P-2")  # every event purged: nothing left to show
    assert gone.status_code == 404
