"""GET /api/v1/integrity: verify over a range of positions, for admins, problem+json on bad
input."""

from __future__ import annotations

import pytest

from auditor.store import writer
from tests.api.conftest import Api
from tests.helpers import om_message, receipt

# Positions counted one per event (record format 1); format 2 below.
pytestmark = pytest.mark.usefixtures("record_format_1")


def test_admins_get_the_verdict_over_a_range(api: Api) -> None:
    api.store([receipt(om_message("G-1", "Invited"), at=i) for i in range(5)])
    whole = api.get("/api/v1/integrity")
    assert whole.status_code == 200, whole.json
    assert whole.json["ok"] is True
    assert (whole.json["from"], whole.json["to"], whole.json["checked"]) == (1, 5, 5)
    assert whole.json["problem"] is None
    part = api.get("/api/v1/integrity", **{"from": "2", "to": "3"})
    assert (part.json["from"], part.json["to"], part.json["checked"]) == (2, 3, 2)


def test_a_tampered_row_is_named_with_its_position_and_kind(api: Api) -> None:
    api.store([receipt(om_message("G-2", "Invited"), at=i) for i in range(3)])
    with api.db() as conn, conn.transaction():
        conn.execute("ALTER EVENT TRIGGER auditor_guard_alter DISABLE")
        conn.execute("ALTER TABLE events DISABLE TRIGGER events_append_only")
        conn.execute(
            "UPDATE events SET state = 'Completed'"
            " WHERE id = (SELECT source_id FROM record WHERE position = 2)"
        )
        conn.execute("ALTER TABLE events ENABLE ALWAYS TRIGGER events_append_only")
        conn.execute("ALTER EVENT TRIGGER auditor_guard_alter ENABLE ALWAYS")
    answer = api.get("/api/v1/integrity")
    assert answer.status_code == 200
    assert answer.json["ok"] is False
    assert answer.json["problem"]["position"] == 2
    assert answer.json["problem"]["kind"] == "altered"


def test_only_admins_may_ask(api: Api) -> None:
    assert api.get("/api/v1/integrity", role="reader").status_code == 403
    assert api.get("/api/v1/integrity", role=None).status_code == 401


def test_bad_ranges_are_problem_json(api: Api) -> None:
    api.store([receipt(om_message("G-3", "Invited"))])
    for params in ({"from": "0"}, {"from": "x"}, {"to": "+9"}, {"from": "2", "to": "1"}):
        answer = api.get("/api/v1/integrity", **params)
        assert answer.status_code == 400, (params, answer.json)
        assert answer.mimetype == "application/problem+json"


def test_a_range_past_the_end_checks_what_is_recorded(api: Api) -> None:
    api.store([receipt(om_message("G-4", "Invited"))])
    answer = api.get("/api/v1/integrity", to="9")
    assert answer.status_code == 200
    assert (answer.json["ok"], answer.json["to"], answer.json["checked"]) == (True, 1, 1)
    beyond = api.get("/api/v1/integrity", **{"from": "5", "to": "9"})
    assert beyond.status_code == 200
    assert (beyond.json["ok"], beyond.json["checked"]) == (True, 0)


def test_unsealed_access_rows_are_reported(api: Api) -> None:
    api.get("/api/v1/integrity")  # leaves an access-log row, sealed by the worker later
    answer = api.get("/api/v1/integrity")
    assert answer.json["unsealed"].get("access", 0) >= 1


def test_format_2_positions_answer_with_the_rows_behind_them(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer, "RECORD_FORMAT", 2)  # after the module's record_format_1
    api.store([receipt(om_message("G-9", "Invited"), at=i) for i in range(5)])
    whole = api.get("/api/v1/integrity")
    assert whole.status_code == 200, whole.json
    assert whole.json["ok"] is True
    assert (whole.json["checked"], whole.json["rows"]) == (1, 5)
    with api.db() as conn, conn.transaction():
        conn.execute("ALTER EVENT TRIGGER auditor_guard_alter DISABLE")
        conn.execute("ALTER TABLE events DISABLE TRIGGER events_append_only")
        conn.execute(
            "UPDATE events SET state = 'Completed'"
            " WHERE id = (SELECT source_id + 3 FROM record WHERE position = 1)"
        )
        conn.execute("ALTER TABLE events ENABLE ALWAYS TRIGGER events_append_only")
        conn.execute("ALTER EVENT TRIGGER auditor_guard_alter ENABLE ALWAYS")
    answer = api.get("/api/v1/integrity")
    assert answer.json["problem"]["position"] == 1
    assert answer.json["problem"]["kind"] == "altered"
