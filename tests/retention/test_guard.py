"""Only auditor_purge_event_partition() drops a partition, and only when its sealed receipt
matches and no hold applies; the retention login can do nothing else destructive. Each test
in a rolled-back transaction (DDL included)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg import errors, sql

from auditor.retention import holds
from auditor.retention.plan import make_plan
from auditor.retention.purge import purge_partition
from auditor.retention.settings import RetentionSettings
from auditor.store import sealer
from tests.logins import LOGINS
from tests.retention.support import NOW, partitions, store_month

Conn = psycopg.Connection[Any]

# _sealed_receipt names event positions one per event: record format 1.
pytestmark = pytest.mark.usefixtures("record_format_1")


@pytest.fixture
def old(conn: Conn) -> Conn:
    store_month(conn, 2023, 1, ["G-1", "G-2"])
    store_month(conn, 2026, 11, ["G-3"])
    return conn


def _as_retention(conn: Conn) -> None:
    conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(LOGINS["retention"])))


def _decision(conn: Conn, name: str) -> Any:
    plan = make_plan(conn, RetentionSettings(24), NOW)
    return next(d for d in plan.decisions if d.partition == name)


def test_the_retention_login_purges_through_the_function(old: Conn) -> None:
    decision = _decision(old, "events_2023_01")
    _as_retention(old)
    receipt = purge_partition(old, decision, "tester")
    assert receipt.rows == 2
    old.execute("RESET ROLE")
    assert "events_2023_01" not in partitions(old)
    stored = old.execute(
        "SELECT partition, row_count, positions, range_from FROM purges WHERE id = %s",
        (receipt.id,),
    ).fetchone()
    assert stored is not None
    assert stored[:2] == ("events_2023_01", 2)
    assert stored[2].startswith("{[")
    assert stored[3] == datetime(2023, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "statement",
    [
        "DROP TABLE events_2023_01",
        "ALTER TABLE events DETACH PARTITION events_2023_01",
        "DELETE FROM events",
        "TRUNCATE events_2023_01",
        "UPDATE purges SET row_count = 0",
        "DELETE FROM legal_holds",
        "SELECT set_config('auditor.retention_path', 'on', true); DROP TABLE events_2023_01",
    ],
)
def test_the_retention_login_cannot_remove_rows_any_other_way(old: Conn, statement: str) -> None:
    _as_retention(old)
    with pytest.raises(errors.InsufficientPrivilege), old.transaction():
        old.execute(statement)  # type: ignore[arg-type]


def test_the_function_refuses_a_receipt_that_is_not_in_the_record(old: Conn) -> None:
    row = old.execute(
        "INSERT INTO purges (partition, range_from, range_to, row_count, event_ids, positions,"
        " leaves_sha256, head_position, head_chain, purged_by, reason) VALUES"
        " ('events_2023_01', '2023-01-01+00', '2023-02-01+00', 2, '{}', '{}',"
        " decode(repeat('00', 32), 'hex'), 0, decode(repeat('00', 32), 'hex'), 'x', 'x')"
        " RETURNING id"
    ).fetchone()
    assert row is not None
    with pytest.raises(errors.ObjectNotInPrerequisiteState, match="not in the record"):
        old.execute("SELECT auditor_purge_event_partition(%s)", (row[0],))


def test_the_function_refuses_while_a_hold_matches_even_if_the_plan_said_drop(old: Conn) -> None:
    decision = _decision(old, "events_2023_01")  # planned before the hold
    holds.place(old, holds.HoldSpec("late hold", reference_ids=["1"]), "counsel")
    holds.place(old, holds.HoldSpec("case", interaction_ids=["G-2"]), "counsel")
    with pytest.raises(errors.ObjectNotInPrerequisiteState, match="legal hold"):
        purge_partition(old, decision, "tester")


def _sealed_receipt(conn: Conn, row_count: int, event_ids: str) -> int:
    row = conn.execute(
        "INSERT INTO purges (partition, range_from, range_to, row_count, event_ids, positions,"
        " leaves_sha256, head_position, head_chain, purged_by, reason) SELECT"
        " 'events_2023_01', '2023-01-01+00', '2023-02-01+00', %s, %s,"
        " range_agg(int8range(position, position + 1))::text,"
        " decode(repeat('00', 32), 'hex'), 0, decode(repeat('00', 32), 'hex'), 'x', 'x'"
        " FROM record WHERE source = 'event' AND source_id IN"
        " (SELECT id FROM events WHERE received_at < '2023-02-01+00') RETURNING id",
        (row_count, event_ids),
    ).fetchone()
    assert row is not None
    sealer.seal(conn, ("purge",))
    return int(row[0])


def test_the_function_refuses_a_receipt_that_no_longer_matches_the_rows(old: Conn) -> None:
    ids = old.execute(
        "SELECT range_agg(int8range(id, id + 1))::text FROM events"
        " WHERE received_at < '2023-02-01+00'"
    ).fetchone()
    assert ids is not None
    stale = _sealed_receipt(old, 1, str(ids[0]))  # the partition holds 2 rows
    with (
        pytest.raises(errors.ObjectNotInPrerequisiteState, match="no longer matches"),
        old.transaction(),
    ):
        old.execute("SELECT auditor_purge_event_partition(%s)", (stale,))
    assert "events_2023_01" in partitions(old)


def test_a_partition_whose_month_is_not_over_is_never_planned(old: Conn) -> None:
    plan = make_plan(old, RetentionSettings(1), datetime(2026, 11, 20, tzinfo=UTC))
    decision = next(d for d in plan.decisions if d.partition == "events_2026_11")
    assert not decision.drop
    assert "not over" in decision.reason


def test_a_longer_keep_for_one_media_type_keeps_its_partitions(old: Conn) -> None:
    store_month(old, 2023, 1, ["V-1"], media_type="voicemail")
    plan = make_plan(old, RetentionSettings(24, {"voicemail": 84}), NOW)
    decision = next(d for d in plan.decisions if d.partition == "events_2023_01")
    assert not decision.drop
    assert "mediaType voicemail" in decision.reason
    assert decision.by_media_type == {"email": 2, "voicemail": 1}


@pytest.mark.parametrize(
    "statement",
    [
        "DROP TABLE legal_holds",
        "DROP TABLE hold_releases",
        "DROP TABLE purges CASCADE",
        "DROP TABLE retention_runs",
        "DROP TRIGGER purges_append_only ON purges",
        "ALTER TABLE legal_holds DISABLE TRIGGER legal_holds_append_only",
        "ALTER TABLE hold_releases ENABLE REPLICA TRIGGER hold_releases_no_truncate",
    ],
)
def test_the_owner_cannot_drop_or_switch_off_the_holds_and_receipts(
    conn: Conn, statement: str
) -> None:
    with pytest.raises(errors.InsufficientPrivilege, match="refused"), conn.transaction():
        conn.execute(statement)  # type: ignore[arg-type]
