"""A second events row with the id of a sealed event: `verify` reports it inserted, always.

events is partitioned by received_at with primary key (id, received_at), so the table owner
or a superuser (not the worker role: ids are GENERATED ALWAYS) can store a row with the id of
an event already sealed and another received_at. Verify reads rows by id range; it must not
let either row stand for the id (which one a lookup by id keeps depends on the order rows
arrive in), whether the forgery arrives before or after the genuine row, on every reading
path: the caller's connection, the reading thread, the worker processes, with verify's fast
path (C over a binary COPY, auditor.store.leaf_copy) and without it.

The reading thread and the workers connect on their own, so the tampering is committed in a
database of the test's own (fresh_db).
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import URL

from auditor.config import libpq_conninfo
from auditor.store import integrity, leaf_copy, writer
from auditor.store.leaf_sql import LeafQuery
from auditor.store.writer import store_batch
from tests.helpers import om_message, receipt

Conn = psycopg.Connection[Any]

# Where the forged row goes: a month before the genuine rows' (its partition is scanned
# first) or far after it (the default partition, scanned last).
_EARLIER = "2026-10-15T00:00:00Z"
_LATER = "2099-01-01T00:00:00Z"


def _store(conninfo: str) -> None:
    with psycopg.connect(conninfo) as conn:
        for batch in range(3):
            with conn.transaction():
                store_batch(
                    conn,
                    [
                        receipt(om_message(f"D-{batch}", "Processing", reference_id=i), at=i)
                        for i in range(5)
                    ],
                )


def _forge_twin(conninfo: str, event_id: int, received_at: str) -> None:
    """A superuser's committed second row for ``event_id``, every protection off."""
    with psycopg.connect(conninfo) as conn:
        conn.execute("ALTER EVENT TRIGGER auditor_guard_alter DISABLE")
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute("ALTER TABLE events DISABLE TRIGGER USER")
        if received_at == _EARLIER:
            conn.execute("SELECT auditor_ensure_event_partition('2026-10-01')")
        conn.execute(
            "INSERT INTO events (id, receipt_id, received_at, account, payload)"
            " OVERRIDING SYSTEM VALUE"
            """ SELECT id, gen_random_uuid(), %s, account, '{"forged": true}'"""
            " FROM events WHERE id = %s",
            (received_at, event_id),
        )


def _verify(conninfo: str, path: str) -> integrity.Report:
    with psycopg.connect(conninfo) as conn:
        if path == "local":  # no conninfo: rows read on the caller's connection
            report = integrity.verify(conn)
        else:
            workers = 1 if path == "thread" else 2
            report = integrity.verify(conn, workers=workers, conninfo=conninfo, pool_from=0)
        conn.rollback()
    return report


@pytest.mark.parametrize("leaf_path", ["fast", "leaf_sql"])
@pytest.mark.parametrize("path", ["local", "thread", "pool"])
@pytest.mark.parametrize("forged_at", [_EARLIER, _LATER], ids=["forged_first", "forged_last"])
@pytest.mark.parametrize("record_format", [1, 2])
def test_a_second_row_with_a_sealed_events_id_is_found_inserted(
    fresh_db: URL,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
    forged_at: str,
    record_format: int,
    leaf_path: str,
) -> None:
    if leaf_path == "leaf_sql":
        if path == "pool" and leaf_copy.hash_copy is not None:
            # the workers import leaf_copy afresh: AUDITOR_NATIVE=0 runs them this way
            pytest.skip("the pool's workers take the fast path whenever it is built")
        monkeypatch.setattr(leaf_copy, "hash_copy", None)
    elif leaf_copy.hash_copy is None:
        pytest.skip("the fast path is not built")
    monkeypatch.setattr(writer, "RECORD_FORMAT", record_format)
    conninfo = libpq_conninfo(fresh_db)
    _store(conninfo)
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "SELECT position, source_id FROM record WHERE source IN ('event', 'batch')"
            " ORDER BY position OFFSET 1 LIMIT 1"
        ).fetchone()
    assert row is not None
    position, first_id = int(row[0]), int(row[1])
    event_id = first_id + (2 if record_format == 2 else 0)  # inside its batch in format 2
    assert _verify(conninfo, path).ok

    _forge_twin(conninfo, event_id, forged_at)
    # The premise: verify's range query yields both rows, the forged one where asked.
    with psycopg.connect(conninfo) as conn:
        arrived = conn.execute(LeafQuery("event").select_range(), (event_id, event_id)).fetchall()
    forged = [b"forged" in bytes(r[2]) for r in arrived]
    assert forged == ([True, False] if forged_at == _EARLIER else [False, True])

    report = _verify(conninfo, path)
    assert report.problem is not None, "verify missed the forged twin"
    assert (report.problem.position, report.problem.kind) == (position, "inserted")
    assert f"event {event_id}" in report.problem.detail
    assert "twice" in report.problem.detail
