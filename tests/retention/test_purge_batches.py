"""Purges of events sealed in record format 2 (one record row per writer batch): the
receipt names whole batch rows, verify skips them and still checks the receipt's leaves.
Real PostgreSQL; each test in a database of its own (retention commits per partition)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import URL

from auditor.config import libpq_conninfo
from auditor.evidence import batches
from auditor.evidence.canonical import ZERO_HASH, chain_next
from auditor.store import integrity
from tests.retention.support import partitions, run, store_month

Conn = psycopg.Connection[Any]


@pytest.fixture
def db(fresh_db: URL) -> Iterator[Conn]:
    with psycopg.connect(libpq_conninfo(fresh_db), autocommit=True) as conn:
        with conn.transaction():
            store_month(conn, 2023, 1, ["A-1", "A-2", "A-3"])
            store_month(conn, 2023, 2, ["B-1", "B-2"], account="agent002")
            store_month(conn, 2026, 11, ["C-1"])
        yield conn


def _verify(db: Conn) -> integrity.Report:
    with db.transaction():
        return integrity.verify(db)


def test_a_purge_of_batch_rows_names_their_positions_and_verify_skips_them(db: Conn) -> None:
    kinds = db.execute("SELECT source, leaf_count FROM record ORDER BY position").fetchall()
    assert kinds == [("batch", 3), ("batch", 2), ("batch", 1)]
    result = run(db, 24)
    assert [d["partition"] for d in result.dropped] == ["events_2023_01", "events_2023_02"]
    assert "events_2023_01" not in partitions(db)
    positions = db.execute("SELECT positions, row_count FROM purges ORDER BY id").fetchall()
    assert positions == [("{[1,2)}", 3), ("{[2,3)}", 2)]
    report = _verify(db)
    assert report.ok, report.problem
    assert report.purged_positions == 2
    assert report.rows == 1 + 2  # the event left and the two receipts
    assert any("events_2023_01" in p and "3 rows" in p for p in report.purged)


def test_a_consistent_rewrite_through_a_purged_batch_is_caught_by_its_receipt(db: Conn) -> None:
    """A purged batch row given other slots (and the leaf hash over them) and every later
    chain hash redone: the receipt sealed the batch's leaf hash."""
    run(db, 24)
    with db.transaction():
        db.execute("ALTER EVENT TRIGGER auditor_guard_alter DISABLE")
        db.execute("ALTER TABLE record DISABLE TRIGGER record_append_only")
        rows = db.execute(
            "SELECT position, leaf_hash, leaf_count FROM record ORDER BY position"
        ).fetchall()
        chain = ZERO_HASH
        for position, leaf, count in rows:
            if position == 1:
                slots = bytes(32 * count)
                leaf = batches.leaf_hash_of_joined(slots)
                db.execute("UPDATE record SET leaves = %s WHERE position = 1", (slots,))
            chain = chain_next(chain, bytes(leaf))
            db.execute(
                "UPDATE record SET leaf_hash = %s, chain_hash = %s WHERE position = %s",
                (bytes(leaf), chain, position),
            )
        report = integrity.verify(db)
        assert report.problem is not None
        assert report.problem.kind == "altered"
        assert "purge receipt" in report.problem.detail
        raise psycopg.Rollback()


def test_verify_after_a_purge_of_batches_still_finds_a_row_deleted_elsewhere(db: Conn) -> None:
    run(db, 24)
    with db.transaction():
        db.execute("ALTER EVENT TRIGGER auditor_guard_alter DISABLE")
        db.execute("ALTER TABLE events_2026_11 DISABLE TRIGGER events_append_only")
        db.execute("DELETE FROM events WHERE interaction_id = 'C-1'")
        report = integrity.verify(db)
        assert report.problem is not None
        assert report.problem.kind == "missing"
        raise psycopg.Rollback()
