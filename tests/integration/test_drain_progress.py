"""Completeness claims mean stored: while the drain is paused and notifications wait in the
spool, coverage does not call their time complete; once drained, it does."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import URL

from auditor.config import libpq_conninfo
from auditor.ingest.drain import to_receipt
from auditor.ingest.evidence_task import EvidenceTask, stored_through
from auditor.ingest.spool import Row, Spool
from auditor.store import coverage_queries, drain_progress
from auditor.store.writer import store_batch
from tests.helpers import om_message

Conn = psycopg.Connection[Any]
WORKER = "w-drain"


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    spool = Spool(tmp_path / "spool.sqlite3")
    yield spool
    spool.close()


def _receive(spool: Spool, at: datetime, count: int) -> None:
    """What the receive loop does: stamp, queue; then wait for the group commit."""
    for i in range(count):
        spool.put(
            Row(
                str(uuid.uuid4()),
                (at + timedelta(milliseconds=i)).isoformat(timespec="microseconds"),
                "agent001",
                "/v2/me/openmedia",
                "notification",
                om_message(f"D-{i}", "Invited"),
            )
        )
    deadline = time.monotonic() + 10
    while spool.committed_count < spool.put_count:
        assert time.monotonic() < deadline, "the spool did not commit"
        time.sleep(0.01)


def _drain(conn: Conn, spool: Spool) -> None:
    items = spool.oldest(10_000)
    store_batch(conn, [to_receipt(i) for i in items])
    spool.delete_through(items[0].seq, items[-1].seq)


def _cover(conn: Conn, start: datetime) -> None:
    """A live interval of this worker (heartbeat fresh, not ended)."""
    conn.execute(
        "INSERT INTO coverage_intervals (account, worker_id, channels, started_at, heartbeat_at)"
        " VALUES ('agent001', %s, '{/v2/me/openmedia}', %s, now())",
        (WORKER, start),
    )


def test_a_paused_drain_is_not_complete_coverage_until_drained(conn: Conn, spool: Spool) -> None:
    now = datetime.now(UTC)
    _cover(conn, now - timedelta(minutes=2))
    _receive(spool, now - timedelta(seconds=30), 5)  # waiting in the spool: drain paused
    drain_progress.record(conn, WORKER, stored_through(spool))
    window = (now - timedelta(minutes=1), now - timedelta(seconds=10))

    paused = coverage_queries.coverage(conn, *window, ["agent001"])
    assert not paused.complete
    (gap,) = paused.gaps
    assert gap.start <= now - timedelta(seconds=30) < gap.end == window[1]

    _drain(conn, spool)
    drain_progress.record(conn, WORKER, stored_through(spool))
    assert coverage_queries.coverage(conn, *window, ["agent001"]).complete


def test_without_progress_recorded_a_worker_s_coverage_is_not_clipped(conn: Conn) -> None:
    """Intervals of workers from before drain progress existed keep their old meaning."""
    now = datetime.now(UTC)
    _cover(conn, now - timedelta(minutes=2))
    window = (now - timedelta(minutes=1), now - timedelta(seconds=10))
    assert coverage_queries.coverage(conn, *window, ["agent001"]).complete


def test_the_worker_task_records_progress_and_seals_closed_intervals(
    fresh_db: URL, spool: Spool
) -> None:
    conninfo = libpq_conninfo(fresh_db)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO coverage_intervals (account, worker_id, channels, started_at,"
            " heartbeat_at, ended_at, end_reason)"
            " VALUES ('agent001', %s, '{c}', now(), now(), now(), 'stop')",
            (WORKER,),
        )
    _receive(spool, datetime.now(UTC) - timedelta(seconds=5), 2)
    task = EvidenceTask(conninfo, WORKER, spool, progress_seconds=1.0, seal_seconds=30.0)
    try:
        task.tick(seal=True)
    finally:
        task.close()
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "SELECT stored_through FROM drain_progress WHERE worker_id = %s", (WORKER,)
        ).fetchone()
        assert row is not None
        assert row[0] == datetime.fromisoformat(spool.oldest_received_at() or "")
        sealed = conn.execute("SELECT count(*) FROM record WHERE source = 'coverage'").fetchone()
        assert sealed == (1,)
