"""The views' answers for hand-made lifecycles, computed by hand (tests/bi/fixture.py)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from auditor.store.writer import store_batch
from tests.bi import fixture
from tests.bi.fixture import T0, at
from tests.helpers import from_sample

Conn = psycopg.Connection[Any]


def _rows(conn: Conn, query: str, *params: Any) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)  # type: ignore[arg-type]
        return cur.fetchall()


def _interaction(conn: Conn, interaction_id: str) -> dict[str, Any]:
    rows = _rows(conn, "SELECT * FROM bi.interactions WHERE interaction_id = %s", interaction_id)
    assert len(rows) == 1
    return rows[0]


def test_a_transferred_interaction_has_exact_timestamps_and_durations(bi_conn: Conn) -> None:
    row = _interaction(bi_conn, "OM-TRANSFER")
    assert row["first_invited_at"] == T0
    assert row["accepted_at"] == at(12.5)
    assert row["completed_at"] == at(100.75)
    assert row["time_to_accept_seconds"] == Decimal("12.5")
    assert row["handle_time_seconds"] == Decimal("88.25")
    assert row["lifetime_seconds"] == Decimal("100.75")
    assert (row["transfers"], row["rejects"], row["agents_involved"]) == (1, 0, 2)
    assert (row["agents"], row["completed_by"]) == ("agent001,agent002", "agent002")
    assert (row["final_state"], row["media_type"], row["event_count"]) == ("Completed", "email", 8)
    assert row["error_count"] == 0
    # agent001's two overlapping sessions cover it together.
    assert row["has_coverage_gap"] is False


def test_each_agents_part_of_a_transfer(bi_conn: Conn) -> None:
    rows = _rows(
        bi_conn,
        "SELECT account, invited_at, accepted_at, completed_at, outcome, time_to_accept_seconds,"
        " handle_time_seconds FROM bi.agent_segments WHERE interaction_id = %s ORDER BY account",
        "OM-TRANSFER",
    )
    assert rows == [
        {
            "account": "agent001",
            "invited_at": T0,
            "accepted_at": at(12.5),
            "completed_at": at(60),
            "outcome": "transferred",
            "time_to_accept_seconds": Decimal("12.5"),
            "handle_time_seconds": Decimal("47.5"),
        },
        {
            "account": "agent002",
            "invited_at": at(60.25),
            "accepted_at": at(70),
            "completed_at": at(100.75),
            "outcome": "completed",
            "time_to_accept_seconds": Decimal("9.75"),
            "handle_time_seconds": Decimal("30.75"),
        },
    ]


def test_a_rejected_then_rerouted_interaction(bi_conn: Conn) -> None:
    row = _interaction(bi_conn, "OM-REJECT")
    assert (row["first_invited_at"], row["accepted_at"], row["completed_at"]) == (
        at(5),
        at(10),
        at(40),
    )
    assert row["time_to_accept_seconds"] == Decimal("5")
    assert row["handle_time_seconds"] == Decimal("30")
    assert (row["transfers"], row["rejects"], row["error_count"]) == (0, 1, 1)
    assert (row["agents"], row["completed_by"]) == ("agent003,agent001", "agent001")
    outcomes = _rows(
        bi_conn,
        "SELECT account, outcome FROM bi.agent_segments WHERE interaction_id = 'OM-REJECT'"
        " ORDER BY account",
    )
    assert outcomes == [
        {"account": "agent001", "outcome": "completed"},
        {"account": "agent003", "outcome": "rejected"},
    ]


def test_an_outbound_item_starts_at_its_create(bi_conn: Conn) -> None:
    row = _interaction(bi_conn, "OM-OUTBOUND")
    assert row["first_invited_at"] is None
    assert row["time_to_accept_seconds"] is None
    assert row["accepted_at"] == at(30)
    assert row["handle_time_seconds"] == Decimal("15")
    assert row["openmedia_type"] == "Outbound"


def test_coverage_gap_inside_an_interaction_is_flagged(bi_conn: Conn) -> None:
    assert _interaction(bi_conn, "OM-GAP")["has_coverage_gap"] is True
    assert _interaction(bi_conn, "OM-REJECT")["has_coverage_gap"] is False
    # Never covered at all: a gap too.
    assert _interaction(bi_conn, "BAD-ORDER")["has_coverage_gap"] is True


def test_coverage_merges_overlapping_sessions_and_lists_gaps(bi_conn: Conn) -> None:
    rows = _rows(
        bi_conn,
        "SELECT account, kind, started_at, ended_at, seconds, sessions, workers FROM bi.coverage"
        " WHERE account IN ('agent001', 'agent003') AND started_at < %s"
        " ORDER BY account, started_at",
        at(86400),
    )
    end = at(2 * 86400)
    assert rows == [
        {
            "account": "agent001",
            "kind": "connected",
            "started_at": at(-3600),
            "ended_at": end,
            "seconds": Decimal(2 * 86400 + 3600),
            "sessions": 2,
            "workers": "w1,w2",
        },
        {
            "account": "agent003",
            "kind": "connected",
            "started_at": at(-3600),
            "ended_at": at(50),
            "seconds": Decimal(3650),
            "sessions": 1,
            "workers": "w1",
        },
        {
            "account": "agent003",
            "kind": "gap",
            "started_at": at(50),
            "ended_at": at(55),
            "seconds": Decimal(5),
            "sessions": None,
            "workers": None,
        },
        {
            "account": "agent003",
            "kind": "connected",
            "started_at": at(55),
            "ended_at": end,
            "seconds": Decimal(2 * 86400 - 55),
            "sessions": 1,
            "workers": "w2",
        },
    ]


def test_user_data_changes_one_row_per_key(bi_conn: Conn) -> None:
    rows = _rows(
        bi_conn,
        "SELECT account, key, change, old_value, new_value, old_type, new_type, is_initial,"
        " reference_id FROM bi.user_data_changes WHERE interaction_id = 'OM-TRANSFER'"
        " ORDER BY event_id, key",
    )
    initial = [r for r in rows if r["is_initial"]]
    assert {(r["key"], r["change"], r["new_value"]) for r in initial} == {
        ("RTenant", "added", "Environment"),
        ("ServiceType", "added", "sales"),
    }
    later = [
        (r["account"], r["key"], r["change"], r["old_value"], r["new_value"], r["reference_id"])
        for r in rows
        if not r["is_initial"]
    ]
    assert later == [
        ("agent001", "CaseId", "added", None, "C-1", "2"),
        ("agent001", "Priority", "added", None, "2", "2"),
        ("agent002", "Priority", "changed", "2", "3", "2"),
        ("agent002", "ServiceType", "removed", "sales", None, "2"),
    ]
    types = {(r["key"], r["change"]): (r["old_type"], r["new_type"]) for r in rows}
    assert types[("Priority", "changed")] == ("number", "number")
    assert types[("ServiceType", "removed")] == ("string", None)


def test_events_have_user_data_columns_and_no_jsonb(bi_conn: Conn) -> None:
    rows = _rows(
        bi_conn,
        "SELECT state, capabilities, ud_case_id, ud_priority, ud_service_type, day"
        " FROM bi.events WHERE interaction_id = 'OM-TRANSFER' ORDER BY event_id",
    )
    assert rows[0]["capabilities"] == "Accept,Reject"
    assert rows[3]["capabilities"] == ""
    assert [(r["ud_case_id"], r["ud_priority"], r["ud_service_type"]) for r in rows] == [
        (None, None, "sales"),
        (None, None, "sales"),
        ("C-1", "2", "sales"),
        ("C-1", "2", "sales"),
        ("C-1", "2", "sales"),
        ("C-1", "2", "sales"),
        ("C-1", "3", None),
        ("C-1", "3", None),
    ]
    assert rows[0]["day"] == T0.date()
    jsonb = _rows(
        bi_conn,
        "SELECT table_schema, table_name, column_name FROM information_schema.columns"
        " WHERE table_schema IN ('bi', 'bi_v1') AND data_type IN ('jsonb', 'json', 'ARRAY')",
    )
    assert jsonb == []


def test_daily_volumes_count_events(bi_conn: Conn) -> None:
    rows = bi_conn.execute(
        "SELECT notification_type, state, account, events FROM bi.daily_volumes"
        " WHERE day = %s AND media_type = 'chat' ORDER BY 1, 2, 3",
        (T0.date(),),
    ).fetchall()
    assert rows == [
        ("Error", "Processing", "agent001", 1),
        ("StatusChange", "Completed", "agent001", 1),
        ("StatusChange", "Completed", "agent003", 2),
        ("StatusChange", "Invited", "agent001", 1),
        ("StatusChange", "Invited", "agent003", 2),
        ("StatusChange", "Processing", "agent001", 1),
        ("StatusChange", "Processing", "agent003", 1),
    ]


def test_findings_fire_on_bad_lifecycles(bi_conn: Conn) -> None:
    rows = _rows(
        bi_conn,
        "SELECT interaction_id, account, code FROM bi.lifecycle_findings WHERE received_at >= %s",
        fixture.BAD_DAY,
    )
    assert {(r["interaction_id"], r["account"], r["code"]) for r in rows} == (
        fixture.EXPECTED_BAD_FINDINGS
    )
    assert len(rows) == len(fixture.EXPECTED_BAD_FINDINGS)


def test_good_lifecycles_have_no_findings_but_their_error(bi_conn: Conn) -> None:
    rows = _rows(
        bi_conn,
        "SELECT interaction_id, code, detail, reference_id, explanation"
        " FROM bi.lifecycle_findings WHERE received_at < %s",
        fixture.BAD_DAY,
    )
    assert [(r["interaction_id"], r["code"], r["reference_id"]) for r in rows] == [
        ("OM-REJECT", "OPERATION_FAILED", "5")
    ]
    assert "1203" in rows[0]["detail"]
    assert rows[0]["explanation"].startswith("An Error notification")
    snap = _rows(bi_conn, "SELECT * FROM bi.lifecycle_findings WHERE interaction_id = 'OM-SNAP'")
    assert snap == []


def test_the_bundled_sample_has_no_findings_but_its_errors(conn: Conn) -> None:
    from auditor.sample import generate

    store_batch(conn, [from_sample(line) for line in generate(interactions=60)])
    codes = _rows(conn, "SELECT DISTINCT code FROM bi.lifecycle_findings")
    assert codes == [{"code": "OPERATION_FAILED"}]
    errors = _rows(conn, "SELECT count(*) AS n FROM bi.events WHERE notification_type = 'Error'")
    found = _rows(conn, "SELECT count(*) AS n FROM bi.lifecycle_findings")
    assert found == errors


def test_every_finding_code_is_documented_in_the_codes_view(bi_conn: Conn) -> None:
    codes = {r["code"] for r in _rows(bi_conn, "SELECT code FROM bi.finding_codes")}
    assert {code for _, _, code in fixture.EXPECTED_BAD_FINDINGS} == codes


@pytest.mark.parametrize("interaction_id", ["OM-TRANSFER", "BAD-AFTER"])
def test_interaction_view_agrees_with_its_segments(bi_conn: Conn, interaction_id: str) -> None:
    row = _interaction(bi_conn, interaction_id)
    segments = _rows(
        bi_conn, "SELECT * FROM bi.agent_segments WHERE interaction_id = %s", interaction_id
    )
    assert row["agents_involved"] == len(segments)
    assert row["event_count"] == sum(s["event_count"] for s in segments)


@pytest.mark.parametrize("error_includes_openmedia", [True, False])
def test_the_simulators_lifecycles_raise_no_findings_but_their_errors(
    conn: Conn, error_includes_openmedia: bool
) -> None:
    """Thousands of operations as the simulator's agents do them (accept, reject, transfer,
    user data, create, errors): only the Errors are findings."""
    import json
    import uuid
    from datetime import timedelta

    from auditor.simulator.config import SimConfig
    from auditor.simulator.lifecycle import Engine
    from auditor.store.receipts import Receipt

    sent: list[Receipt] = []

    def emit(agent: str, message: dict[str, Any]) -> None:
        at = T0 + timedelta(milliseconds=10 * len(sent))
        sent.append(Receipt(uuid.uuid4(), at, agent, "/v2/me/openmedia", json.dumps(message)))

    engine = Engine(
        SimConfig(
            agents=6, seed=3, error_rate=0.05, error_includes_openmedia=error_includes_openmedia
        ),
        emit,
        "http://gws.example:8080",
    )
    while len(sent) < 3000:
        engine.step()
    store_batch(conn, sent)
    codes = _rows(conn, "SELECT code, count(*) AS n FROM bi.lifecycle_findings GROUP BY code")
    errors = _rows(conn, "SELECT count(*) AS n FROM events WHERE notification_type = 'Error'")
    assert errors[0]["n"] > 0
    assert codes == [{"code": "OPERATION_FAILED", "n": errors[0]["n"]}]
