"""A purge leaves a receipt in the record: verify still succeeds, names the purge, and still
finds tampering elsewhere; holds keep their partitions until released. Real PostgreSQL; each
test in a database of its own (retention commits per partition)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import URL

from auditor.config import libpq_conninfo
from auditor.evidence.canonical import ZERO_HASH, chain_next
from auditor.retention import holds
from auditor.store import integrity, sealer
from tests.retention.support import NOW, partitions, run, store_month

Conn = psycopg.Connection[Any]

# Positions counted per event: record format 1 (format 2 in test_purge_batches.py).
pytestmark = pytest.mark.usefixtures("record_format_1")


@pytest.fixture
def db(fresh_db: URL) -> Iterator[Conn]:
    with psycopg.connect(libpq_conninfo(fresh_db), autocommit=True) as conn:
        with conn.transaction():
            store_month(conn, 2023, 1, ["A-1", "A-2", "A-3"])
            store_month(conn, 2023, 2, ["B-1", "B-2"], account="agent002")
            store_month(conn, 2026, 11, ["C-1"])
        yield conn


def test_a_purge_drops_old_partitions_and_verify_succeeds_naming_it(db: Conn) -> None:
    result = run(db, 24)
    assert [d["partition"] for d in result.dropped] == ["events_2023_01", "events_2023_02"]
    assert "events_2023_01" not in partitions(db)
    assert "events_2026_11" in partitions(db)
    report = verify(db)
    assert report.ok, report.problem
    assert report.purged_positions == 5
    assert any("events_2023_01" in p and "3 rows" in p for p in report.purged)
    receipts = db.execute("SELECT count(*) FROM record WHERE source = 'purge'").fetchone()
    assert receipts == (2,)
    left = db.execute("SELECT interaction_id FROM interactions ORDER BY 1").fetchall()
    assert left == [("C-1",)]  # the purged interactions' projection rows went with them
    values = db.execute("SELECT interaction_id, changed FROM user_data_values").fetchall()
    assert values == [("C-1", {"Case": "C-1"})]  # and the user-data values they held


def verify(db: Conn) -> integrity.Report:
    with db.transaction():
        return integrity.verify(db)


def test_verify_after_a_purge_still_finds_a_row_deleted_elsewhere(db: Conn) -> None:
    run(db, 24)
    with db.transaction():
        db.execute("ALTER EVENT TRIGGER auditor_guard_alter DISABLE")
        db.execute("ALTER TABLE events_2026_11 DISABLE TRIGGER events_append_only")
        db.execute("DELETE FROM events WHERE interaction_id = 'C-1'")
        report = integrity.verify(db)
        assert report.problem is not None
        assert report.problem.kind == "missing"
        assert "event" in report.problem.detail
        raise psycopg.Rollback()


def test_a_changed_leaf_hash_at_a_purged_position_is_found(db: Conn) -> None:
    run(db, 24)
    with db.transaction():
        db.execute("SET LOCAL session_replication_role = replica")
        db.execute("ALTER EVENT TRIGGER auditor_guard_alter DISABLE")
        db.execute("ALTER TABLE record DISABLE TRIGGER record_append_only")
        db.execute(
            "UPDATE record SET leaf_hash = sha256(leaf_hash) WHERE position ="
            " (SELECT min(position) FROM record WHERE source = 'event')"
        )
        report = integrity.verify(db)
        assert report.problem is not None
        assert report.problem.kind == "altered"
        raise psycopg.Rollback()


def test_a_hold_by_interaction_keeps_its_partition_until_released(db: Conn) -> None:
    with db.transaction():
        hold = holds.place(db, holds.HoldSpec("case 17", interaction_ids=["A-2"]), "counsel")
        sealer.seal(db, ("hold",))
    result = run(db, 24)
    assert [d["partition"] for d in result.dropped] == ["events_2023_02"]
    kept = {d["partition"]: d["reason"] for d in result.kept}
    assert f"hold {hold} (1 rows)" in kept["events_2023_01"]
    assert "events_2023_01" in partitions(db)
    with db.transaction():
        holds.release(db, hold, "counsel", "case closed")
        sealer.seal(db, ("release",))
    result = run(db, 24)
    assert [d["partition"] for d in result.dropped] == ["events_2023_01"]
    report = verify(db)
    assert report.ok, report.problem
    sources = dict(db.execute("SELECT source, count(*) FROM record GROUP BY 1").fetchall())
    assert sources["hold"] == 1
    assert sources["release"] == 1
    assert sources["purge"] == 2


def test_a_hold_by_account_and_time_range_keeps_the_partition_of_its_rows(db: Conn) -> None:
    spec = holds.HoldSpec(
        "audit",
        account="agent002",
        received_from=NOW.replace(year=2023, month=2, day=1),
        received_to=NOW.replace(year=2023, month=3, day=1),
    )
    with db.transaction():
        holds.place(db, spec, "counsel")
    result = run(db, 24)
    assert [d["partition"] for d in result.dropped] == ["events_2023_01"]
    assert "events_2023_02" in partitions(db)


def test_a_dry_run_drops_nothing_and_is_logged(db: Conn) -> None:
    result = run(db, 24, dry_run=True)
    assert result.dropped == []
    assert "events_2023_01" in partitions(db)
    logged = db.execute("SELECT dry_run, kept FROM retention_runs").fetchall()
    assert logged[0][0] is True
    assert any("would drop" in entry["reason"] for entry in logged[0][1])


def test_a_consistent_rewrite_through_a_purged_position_is_caught_by_its_receipt(db: Conn) -> None:
    """The chain alone cannot see a purged leaf replaced and every later chain hash redone;
    the receipt sealed the leaf hashes of exactly the positions it purged."""
    run(db, 24)
    with db.transaction():
        db.execute("ALTER EVENT TRIGGER auditor_guard_alter DISABLE")
        db.execute("ALTER TABLE record DISABLE TRIGGER record_append_only")
        rows = db.execute(
            "SELECT position, leaf_hash, chain_hash FROM record ORDER BY position"
        ).fetchall()
        first_purged = int(rows[0][0])  # the first event, in events_2023_01
        chain = ZERO_HASH
        for position, leaf, _ in rows:
            if position == first_purged:
                leaf = hashlib.sha256(b"a row that was never there").digest()
            chain = chain_next(chain, bytes(leaf))
            db.execute(
                "UPDATE record SET leaf_hash = %s, chain_hash = %s WHERE position = %s",
                (bytes(leaf), chain, position),
            )
        report = integrity.verify(db)
        assert report.problem is not None
        assert report.problem.kind == "altered"
        assert "purge receipt" in report.problem.detail
        assert "events_2023_01" in report.problem.detail
        raise psycopg.Rollback()
