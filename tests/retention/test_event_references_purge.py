"""A purge removes the dropped month's rows from the referenceId side table (event_references),
and only those: lookups answer from the months left, a row pointing at a dropped partition is
never shown, and an event of that month stored after the drop keeps its row. Real PostgreSQL;
each test in a database of its own (retention commits per partition)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import URL

from auditor.config import libpq_conninfo
from auditor.retention.plan import make_plan
from auditor.retention.purge import purge_partition
from auditor.retention.settings import RetentionSettings
from auditor.store import event_references, queries
from auditor.store.receipts import Receipt, new_receipt_id
from auditor.store.writer import store_batch
from tests.helpers import om_message
from tests.logins import LOGINS
from tests.retention.support import NOW, partitions, run

Conn = psycopg.Connection[Any]

_ROWS = "SELECT received_at, reference_id FROM event_references ORDER BY event_id"


def _event(at: datetime, interaction: str, reference: int) -> Receipt:
    return Receipt(
        new_receipt_id(),
        at,
        "agent001",
        "/v2/me/openmedia",
        om_message(interaction, "Handling", reference_id=reference),
    )


JAN = datetime(2023, 1, 10, 9, tzinfo=UTC)
FEB = datetime(2023, 2, 10, 9, tzinfo=UTC)
NOV = datetime(2026, 11, 10, 9, tzinfo=UTC)


def _store(conn: Conn) -> None:
    """referenceId 1 in January 2023 and November 2026, 2 in January and February 2023."""
    with conn.transaction():
        store_batch(conn, [_event(JAN, "A", 1), _event(JAN.replace(minute=1), "A", 2)])
        store_batch(conn, [_event(FEB, "B", 2)])
        store_batch(conn, [_event(NOV, "C", 1)])


@pytest.fixture
def db(fresh_db: URL) -> Iterator[Conn]:
    with psycopg.connect(libpq_conninfo(fresh_db), autocommit=True) as conn:
        _store(conn)
        yield conn


def _lookup(conn: Conn, reference: str) -> list[datetime]:
    with conn.transaction():
        rows = queries.search_events(
            conn, queries.EventFilter({"referenceId": reference}), newest_first=False, limit=10
        )
    return [r.received_at for r in rows]


def test_a_purge_deletes_the_dropped_months_rows_and_lookups_answer_from_the_rest(
    db: Conn,
) -> None:
    assert _lookup(db, "1") == [JAN, NOV]
    result = run(db, 24)
    assert [d["partition"] for d in result.dropped] == ["events_2023_01", "events_2023_02"]
    assert [d["references_forgotten"] for d in result.dropped] == [2, 1]
    assert db.execute(_ROWS).fetchall() == [(NOV, "1")]
    assert _lookup(db, "1") == [NOV]
    assert _lookup(db, "2") == []


def test_the_retention_login_may_delete_the_rows_it_purged(db: Conn) -> None:
    plan = make_plan(db, RetentionSettings(24), NOW)
    decision = next(d for d in plan.decisions if d.partition == "events_2023_01")
    with db.transaction():
        db.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(LOGINS["retention"])))
        receipt = purge_partition(db, decision, "tester")
    with db.transaction():
        db.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(LOGINS["retention"])))
        assert event_references.forget_purged(db, receipt.id) == 2
    assert db.execute(_ROWS).fetchall() == [(FEB, "2"), (NOV, "1")]


def test_a_row_left_pointing_at_a_dropped_partition_is_never_shown(db: Conn) -> None:
    """Between the drop's commit and the delete (or if the delete never ran), the rows point at
    a partition that is gone: the join to events finds nothing there."""
    plan = make_plan(db, RetentionSettings(24), NOW)
    decision = next(d for d in plan.decisions if d.partition == "events_2023_01")
    with db.transaction():
        purge_partition(db, decision, "tester")
    assert "events_2023_01" not in partitions(db)
    assert len(db.execute(_ROWS).fetchall()) == 4  # not deleted yet
    assert _lookup(db, "1") == [NOV]
    assert _lookup(db, "2") == [FEB]


def test_an_event_of_a_purged_month_stored_after_the_drop_keeps_its_row(db: Conn) -> None:
    result = run(db, 24)
    receipt = int(result.dropped[0]["receipt"])
    late = JAN.replace(day=20)
    with db.transaction():
        store_batch(db, [_event(late, "D", 1)])  # a late spool: the partition is made again
    with db.transaction():
        assert event_references.forget_purged(db, receipt) == 0  # run again: idempotent
    assert db.execute(_ROWS).fetchall() == [(NOV, "1"), (late, "1")]
    assert _lookup(db, "1") == [NOV, late]  # in id order: stored after November's
