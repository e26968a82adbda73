"""A purge reads its month outside the writer's lock and only then takes the lock: what is
stored in between (a spool drained late stores events with an old received_at; an
interaction of the month goes on in a later one; a hold is placed) must still come out
right. The events are stored between the two steps by apply's ``between`` hook, by the real
writer on another connection. Real PostgreSQL, a database per test."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import URL

from auditor.config import libpq_conninfo
from auditor.retention import holds
from auditor.retention.plan import Decision, make_plan
from auditor.retention.purge import apply
from auditor.retention.settings import RetentionSettings
from auditor.store import integrity, projection_rebuild
from auditor.store.receipts import Receipt, new_receipt_id
from auditor.store.writer import store_batch
from tests.helpers import om_message
from tests.retention.support import NOW, partitions

Conn = psycopg.Connection[Any]
JAN = datetime(2023, 1, 10, 9, 0, tzinfo=UTC)
NOV = datetime(2026, 11, 5, 9, 0, tzinfo=UTC)


def _store(url: URL, at: datetime, *interactions: str) -> None:
    """One writer batch (a batch never spans two months: one month per call)."""
    with psycopg.connect(libpq_conninfo(url)) as conn:
        store_batch(
            conn,
            [
                Receipt(
                    new_receipt_id(),
                    at.replace(minute=i),
                    "agent001",
                    "/v2/me/openmedia",
                    om_message(name, "Invited", user_data={"Case": name}),
                )
                for i, name in enumerate(interactions)
            ],
        )
        conn.commit()


@pytest.fixture(params=["format 2", "format 1"])
def db(request: pytest.FixtureRequest, fresh_db: URL) -> URL:
    if request.param == "format 1":
        request.getfixturevalue("record_format_1")
    _store(fresh_db, JAN, "GONE", "GOES-ON", "STAYS")
    _store(fresh_db, NOV, "STAYS")
    return fresh_db


def _apply(url: URL, between: Callable[[Decision], None]) -> dict[str, Any]:
    with psycopg.connect(libpq_conninfo(url), autocommit=True) as conn:
        plan = make_plan(conn, RetentionSettings(24), NOW)
        assert [d.partition for d in plan.to_drop] == ["events_2023_01"]
        result = apply(conn, plan, "tester", dry_run=False, between=between)
    return {e["partition"]: e for e in result.dropped + result.kept}


def test_events_stored_between_the_unlocked_and_the_locked_step_are_purged_and_counted(
    db: URL,
) -> None:
    def late(decision: Decision) -> None:
        # The spool drains: two more January events (one of a new interaction), and
        # GOES-ON, so far only in January, gets an event in November.
        _store(db, JAN, "GONE", "LATE")
        _store(db, NOV, "GOES-ON")
        with psycopg.connect(libpq_conninfo(db)) as conn:
            seen["january"] = conn.execute(
                "SELECT coalesce(range_agg(int8range(id, id + 1))::text, '{}'), count(*)"
                " FROM events WHERE received_at < '2023-02-01'"
            ).fetchone()
            seen["projection"] = {
                r[0]: r[1:]
                for r in conn.execute(
                    "SELECT interaction_id, event_count, first_event_id, user_data"
                    " FROM interactions"
                ).fetchall()
            }

    seen: dict[str, Any] = {}
    entry = _apply(db, late)["events_2023_01"]
    assert entry["late_events"] == 2  # the locked step noticed them
    assert entry["rows"] == 3  # what the plan saw; the receipt says what was dropped

    with psycopg.connect(libpq_conninfo(db), autocommit=True) as conn:
        assert "events_2023_01" not in partitions(conn)
        receipt = conn.execute(
            "SELECT event_ids, row_count FROM purges WHERE id = %s", (entry["receipt"],)
        ).fetchone()
        assert receipt == seen["january"]  # exactly the rows dropped, the late ones included
        with conn.transaction():
            report = integrity.verify(conn)
        assert report.ok, report.problem
        left = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT interaction_id, event_count, first_event_id, user_data FROM interactions"
            ).fetchall()
        }
        # GONE and LATE had every event in January: forgotten. GOES-ON and STAYS go on, and
        # their rows still count the dropped events.
        assert set(left) == {"GOES-ON", "STAYS"}
        assert left == {k: seen["projection"][k] for k in left}
        baseline = conn.execute(
            "SELECT interaction_id, event_count FROM projection_baseline ORDER BY 1"
        ).fetchall()
        assert baseline == [("GOES-ON", 1), ("STAYS", 1)]
        values = conn.execute("SELECT DISTINCT interaction_id FROM user_data_values ORDER BY 1")
        assert values.fetchall() == [("GOES-ON",), ("STAYS",)]
        assert conn.execute("SELECT to_regclass('pg_temp.auditor_purged_fold')").fetchone() == (
            None,
        )

    with psycopg.connect(libpq_conninfo(db)) as conn:
        checked = projection_rebuild.check(conn)
        conn.rollback()
    assert checked.differences == []
    assert (checked.events, checked.interactions, checked.baseline) == (2, 2, 2)


def test_a_hold_placed_between_the_steps_still_keeps_the_partition(db: URL) -> None:
    def hold(decision: Decision) -> None:
        with psycopg.connect(libpq_conninfo(db)) as conn:
            holds.place(conn, holds.HoldSpec("case 4711", interaction_ids=["GONE"]), "legal")
            conn.commit()

    entry = _apply(db, hold)["events_2023_01"]
    assert not entry["drop"]
    assert "legal hold" in entry["reason"]
    with psycopg.connect(libpq_conninfo(db), autocommit=True) as conn:
        assert "events_2023_01" in partitions(conn)
        assert conn.execute("SELECT count(*) FROM purges").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM interactions").fetchone() == (3,)
        assert conn.execute("SELECT count(*) FROM projection_baseline").fetchone() == (0,)
