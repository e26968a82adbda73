"""`verify` with worker processes, or with a reading thread on a second connection: the
same verdict as reading on the caller's connection, in the caller's snapshot, and the same
answer when the workers (or the thread) cannot connect.

The workers read through connections of their own, so these tests commit (fresh_db).
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import URL

from auditor.config import libpq_conninfo
from auditor.store import integrity, writer
from auditor.store.writer import store_batch
from tests.helpers import om_message, receipt

Conn = psycopg.Connection[Any]


@pytest.fixture(autouse=True)
def _format(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Positions counted one per event (record format 1), but in the tests of format 2."""
    if "format_2" not in request.node.name:
        monkeypatch.setattr(writer, "RECORD_FORMAT", 1)


@pytest.fixture
def stored(fresh_db: URL) -> str:
    """A committed record of 120 events in six batches; yields the conninfo."""
    conninfo = libpq_conninfo(fresh_db)
    with psycopg.connect(conninfo) as conn:
        for batch in range(6):
            with conn.transaction():
                store_batch(
                    conn,
                    [
                        receipt(om_message(f"P-{batch}", "Processing", reference_id=i), at=i)
                        for i in range(20)
                    ],
                )
    return conninfo


def _verify(conninfo: str, workers: int, pool_conninfo: str | None = None) -> integrity.Report:
    with psycopg.connect(conninfo) as conn:
        report = integrity.verify(
            conn, workers=workers, conninfo=pool_conninfo or conninfo, pool_from=0
        )
        conn.rollback()
    return report


def _tamper(conninfo: str, event_id: int) -> None:
    """A superuser's committed change of one payload, every protection off (left off: the
    database is the test's own)."""
    with psycopg.connect(conninfo) as conn:
        conn.execute("ALTER EVENT TRIGGER auditor_guard_alter DISABLE")
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute("ALTER TABLE events DISABLE TRIGGER USER")
        conn.execute(
            "UPDATE events SET payload = jsonb_set(payload, '{data,referenceId}', '999')"
            " WHERE id = %s",
            (event_id,),
        )


def _position_of(conninfo: str, nth: int) -> tuple[int, int]:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "SELECT position, source_id FROM record WHERE source = 'event'"
            " ORDER BY position OFFSET %s LIMIT 1",
            (nth,),
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_workers_check_every_position_of_an_intact_record(stored: str) -> None:
    report = _verify(stored, workers=3)
    assert report.ok, report.problem
    assert report.checked == 120


def test_workers_find_the_altered_row_where_one_process_does(stored: str) -> None:
    position, event_id = _position_of(stored, 77)
    _tamper(stored, event_id)
    with psycopg.connect(stored) as conn:
        alone = integrity.verify(conn)  # no conninfo: read on the caller's connection
        conn.rollback()
    threaded, pooled = _verify(stored, workers=1), _verify(stored, workers=2)
    assert alone.problem is not None
    assert (alone.problem.position, alone.problem.kind) == (position, "altered")
    assert pooled.problem == threaded.problem == alone.problem
    assert pooled.checked == threaded.checked == alone.checked == position - 1


@pytest.mark.parametrize("workers", [1, 2])
def test_readers_see_the_callers_snapshot_not_rows_committed_later(
    stored: str, workers: int
) -> None:
    position, event_id = _position_of(stored, 10)
    with psycopg.connect(stored) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        first, stop = integrity.resolve_range(conn, None, None)  # the snapshot starts here
        _tamper(stored, event_id)  # committed after the caller's snapshot was taken
        report = integrity.verify(conn, workers=workers, conninfo=stored, pool_from=0)
        conn.rollback()
    assert report.ok, report.problem
    assert (first, stop, report.checked) == (1, 120, 120)
    assert _verify(stored, workers=workers).problem == integrity.Problem(
        position, "altered", f"event {event_id} differs from what was sealed"
    )


@pytest.mark.parametrize(
    ("workers", "warning"), [(1, "reading here"), (2, "hashing in this process")]
)
def test_readers_that_cannot_connect_leave_the_work_to_this_connection(
    stored: str, caplog: pytest.LogCaptureFixture, workers: int, warning: str
) -> None:
    unreachable = stored.rsplit("/", 1)[0] + "/no_such_database"
    with caplog.at_level(logging.WARNING, logger="auditor.store.leaf_reader"):
        report = _verify(stored, workers=workers, pool_conninfo=unreachable)
    assert report.ok, report.problem
    assert report.checked == 120
    assert warning in caplog.text


def test_format_2_workers_and_the_reading_thread_find_what_one_process_does(stored: str) -> None:
    """Six batch rows of 20 events each: the workers hash the events of each batch's id range."""
    intact = _verify(stored, workers=3)
    assert intact.ok, intact.problem
    assert intact.checked == 6
    with psycopg.connect(stored) as conn:
        row = conn.execute(
            "SELECT position, source_id FROM record WHERE source = 'batch' ORDER BY position"
            " OFFSET 3 LIMIT 1"
        ).fetchone()
    assert row is not None
    _tamper(stored, int(row[1]) + 7)
    with psycopg.connect(stored) as conn:
        alone = integrity.verify(conn)
        conn.rollback()
    threaded, pooled = _verify(stored, workers=1), _verify(stored, workers=2)
    assert alone.problem is not None
    assert (alone.problem.position, alone.problem.kind) == (int(row[0]), "altered")
    assert f"event {int(row[1]) + 7}" in alone.problem.detail
    assert pooled.problem == threaded.problem == alone.problem
