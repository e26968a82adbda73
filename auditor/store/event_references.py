"""The referenceId side table (event_references): where each referenceId's events are.

`events` is partitioned by received_at, and PostgreSQL has no index across partitions: a
lookup by referenceId alone probed the reference_id index of every monthly partition (at a
year of data, 24 probes of cold pages; docs/scale.md). This table is the global index: one
B-tree on (reference_id, event_id) INCLUDE (received_at). A lookup reads it, then joins events
on (id, received_at), and run-time partition pruning sends each row to the one partition that
holds it (tests/integration/test_event_references.py checks the plan).

Derived data, not part of the record (like user_data_values): what an auditor relies on is the
events row; the join to it is what a lookup answers, so a row here whose event is gone (a purged
month, before its rows are deleted) is never shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

# The writer's rows, from the events it has just stored: under its advisory lock every event
# whose id lies between the batch's first and last is the batch's (ids come from the identity
# in commit order), whichever path stored them (the one COPY, or the replay and bisection).
# Read back from the partitions the batch touched, in buffers: nothing travels from Python.
_ADD = """
INSERT INTO event_references (event_id, received_at, reference_id)
SELECT id, received_at, reference_id FROM events
WHERE id BETWEEN %s AND %s AND received_at BETWEEN %s AND %s AND reference_id IS NOT NULL
"""


def write(conn: psycopg.Connection[Any], first_id: int, last_id: int,
          earliest: datetime, latest: datetime) -> None:  # fmt: skip
    """Add the rows of the events with ids first_id..last_id, received between earliest and
    latest, stored in this transaction under the writer's lock. Pipeline-safe (no result)."""
    conn.execute(_ADD, (first_id, last_id, earliest, latest))


def write_stored(conn: psycopg.Connection[Any], stored: Sequence[tuple[int, Any, Any]]) -> None:
    """The rows of the writer's stored events ((id, receipt, record), in id order)."""
    if not stored:
        return
    times = [receipt.received_at for _, receipt, _ in stored]
    write(conn, stored[0][0], stored[-1][0], min(times), max(times))


# The rows of events stored without the writer (a bulk load; the migration has its own copy).
BACKFILL = """
INSERT INTO event_references (event_id, received_at, reference_id)
SELECT id, received_at, reference_id FROM events WHERE reference_id IS NOT NULL
"""


# Retention: the rows of the events a purge dropped, named by its sealed receipt (the month's
# time range and the exact ids, a multirange): an event of that month stored after the drop (a
# late spool recreating the partition) has another id and keeps its row. The BRIN index on
# received_at finds the month's block ranges; the rest of the table is not read.
_FORGET_PURGED = """
DELETE FROM event_references AS r USING purges AS p
WHERE p.id = %s AND r.received_at >= p.range_from AND r.received_at < p.range_to
  AND r.event_id <@ p.event_ids::int8multirange
"""


def forget_purged(conn: psycopg.Connection[Any], purge_id: int) -> int:
    """Delete the rows of the events purge receipt ``purge_id`` dropped; how many went.
    Idempotent. Until it runs, those rows point at a partition that is gone: a lookup joins
    them to no event (and prunes every partition), so they are never shown."""
    return conn.execute(_FORGET_PURGED, (purge_id,)).rowcount


def source(reference_id: str) -> tuple[sql.Composable, list[Any]]:
    """A FROM item named ``events`` holding exactly the events whose reference_id is the
    given one, found through this table: the B-tree gives (event_id, received_at) in id order,
    each joined to its one partition by the primary key (id, received_at). Equal to ``events``
    filtered by reference_id: the writer and the migration add a row for every event with a
    referenceId, from the event itself, in the event's transaction; events are never altered,
    and a purged event's row joins to nothing."""
    return (
        sql.SQL(
            "(SELECT e.* FROM event_references AS r"
            " JOIN events AS e ON e.id = r.event_id AND e.received_at = r.received_at"
            " WHERE r.reference_id = %s) AS events"
        ),
        [reference_id],
    )
