"""Write side of coverage: coverage_intervals and session_log rows as the worker records them
(auditor/ingest/coverage.py queues them, its flush task hands them here in order).

Functions take a connection inside the caller's transaction and never commit. With leases,
each row carries its lease's fencing token, and PostgreSQL skips rows whose token is no
longer current (migration 2026_12_02_fencing): open_interval then returns None.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg

_OPEN = (
    "INSERT INTO coverage_intervals (account, worker_id, client_id, channels,"
    " started_at, heartbeat_at, fence) VALUES (%s, %s, %s, %s, %s, %s, %s)"
    " RETURNING id"
)
_CLOSE = (
    "UPDATE coverage_intervals SET"
    " ended_at = greatest(started_at, %s),"
    " heartbeat_at = greatest(started_at, %s), end_reason = %s"
    " WHERE id = %s AND ended_at IS NULL"
)
_CLOSE_STALE = (
    "UPDATE coverage_intervals SET ended_at = heartbeat_at, end_reason = %s"
    " WHERE account = %s AND ended_at IS NULL AND NOT id = ANY(%s)"
)
_LOGS = (
    "INSERT INTO session_log (at, account, worker_id, event, detail, fence)"
    " VALUES (%s, %s, %s, %s, %s, %s)"
)
# One statement for every heartbeat: with thousands of sessions a statement each cost more
# than the sessions' long-polls themselves.
_HEARTBEATS = (
    "UPDATE coverage_intervals c SET heartbeat_at = greatest(c.heartbeat_at, b.at)"
    " FROM unnest(%s::bigint[], %s::timestamptz[]) AS b(id, at)"
    " WHERE c.id = b.id AND c.ended_at IS NULL"
)

LogRow = tuple[datetime, str, str, str, str | None, int | None]


def open_interval(
    conn: psycopg.Connection[Any],
    account: str,
    worker_id: str,
    client_id: str | None,
    channels: list[str],
    started_at: datetime,
    fence: int | None,
) -> int | None:
    """The new interval's id; None when PostgreSQL skipped it (its fence is stale)."""
    row = conn.execute(
        _OPEN, (account, worker_id, client_id, channels, started_at, started_at, fence)
    ).fetchone()
    return None if row is None else int(row[0])


def close_interval(
    conn: psycopg.Connection[Any], interval_id: int, ended_at: datetime, reason: str
) -> None:
    conn.execute(_CLOSE, (ended_at, ended_at, reason, interval_id))


def close_stale(conn: psycopg.Connection[Any], account: str, reason: str, mine: list[int]) -> None:
    """Close the account's open intervals except `mine`: they end at their last heartbeat."""
    conn.execute(_CLOSE_STALE, (reason, account, mine))


def insert_logs(conn: psycopg.Connection[Any], rows: Sequence[LogRow]) -> None:
    """Session-log rows in one executemany (pipelined): thousands at a mass login."""
    if rows:
        with conn.cursor() as cur:
            cur.executemany(_LOGS, rows)


def heartbeats(conn: psycopg.Connection[Any], ids: list[int], times: list[datetime]) -> None:
    if ids:
        conn.execute(_HEARTBEATS, (ids, times))
