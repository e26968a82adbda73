"""Coverage as data: coverage_intervals (one per subscribed session) and session_log.

Sessions record what happens in memory (never waiting on PostgreSQL); a task flushes the
queued operations in order, in one transaction, every heartbeat interval. If PostgreSQL is
down, the operations wait and are applied when it is back, in the same order.

With leases, every row carries the fence of the account's lease as it was when the row was
made; PostgreSQL skips the rows of a fence that is no longer current (a worker that stalled
past its lease: migration 2026_12_02_fencing), so an interval whose opening was skipped gets
no heartbeats or close either.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

log = logging.getLogger("auditor.ingest.coverage")
WORKER_LOST = "worker lost (heartbeat stopped)"


@dataclass
class _Open:
    key: int
    account: str
    client_id: str | None
    channels: list[str]
    started_at: datetime
    fence: int | None


@dataclass
class _Close:
    key: int
    ended_at: datetime
    reason: str


@dataclass
class _Log:
    at: datetime
    account: str
    event: str
    detail: str | None
    fence: int | None


@dataclass
class _CloseStale:
    account: str


Op = _Open | _Close | _Log | _CloseStale


class Coverage:
    def __init__(self, worker_id: str) -> None:
        self.worker_id = worker_id
        self._ops: list[Op] = []
        self._heartbeats: dict[int, datetime] = {}
        self._ids: dict[int, int] = {}  # our key -> coverage_intervals.id
        self._closed: set[int] = set()
        self._next = 0
        # account -> the fence of the lease this worker holds on it (kept by Leases)
        self.fences: dict[str, int] = {}
        self.fenced = 0  # rows PostgreSQL skipped because their fence was stale

    # -- called by sessions (event loop, never blocks) ----------------------------------------

    def open(self, account: str, client_id: str | None, channels: list[str], at: datetime) -> int:
        self._next += 1
        fence = self.fences.get(account)
        self._ops.append(_Open(self._next, account, client_id, channels, at, fence))
        return self._next

    def heartbeat(self, key: int, at: datetime) -> None:
        if key not in self._closed:
            self._heartbeats[key] = at

    def close(self, key: int, at: datetime, reason: str) -> None:
        if key in self._closed:
            return
        self._closed.add(key)
        self._heartbeats.pop(key, None)
        self._ops.append(_Close(key, at, reason))

    def log(self, at: datetime, account: str, event: str, detail: str | None = None) -> None:
        self._ops.append(_Log(at, account, event, detail, self.fences.get(account)))

    def close_stale(self, account: str) -> None:
        """Close open intervals of an account that this worker did not open (a dead worker's,
        or our own predecessor's after a kill): they end at their last heartbeat."""
        self._ops.append(_CloseStale(account))

    @property
    def pending(self) -> int:
        return len(self._ops) + len(self._heartbeats)

    # -- the flush task (a worker thread with its own connection) -------------------------------

    def flush(self, conn: psycopg.Connection[Any]) -> None:
        ops, beats = list(self._ops), dict(self._heartbeats)
        if not ops and not beats:
            return
        new_ids: dict[int, int] = {}
        logs: list[tuple[Any, ...]] = []
        fenced = 0
        with conn.transaction(), conn.cursor() as cur:
            for op in ops:
                if logs and not isinstance(op, _Log):
                    self._insert_logs(cur, logs)
                if isinstance(op, _Open):
                    cur.execute(
                        "INSERT INTO coverage_intervals (account, worker_id, client_id, channels,"
                        " started_at, heartbeat_at, fence) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                        " RETURNING id",
                        (
                            op.account,
                            self.worker_id,
                            op.client_id,
                            op.channels,
                            op.started_at,
                            op.started_at,
                            op.fence,
                        ),
                    )
                    row = cur.fetchone()
                    if row is None:  # skipped: the fence is stale (the lease passed on)
                        fenced += 1
                        log.warning(
                            "coverage interval refused: the lease passed to another worker",
                            extra={"account": op.account, "fence": op.fence},
                        )
                    else:
                        new_ids[op.key] = int(row[0])
                elif isinstance(op, _Close):
                    db_id = new_ids.get(op.key, self._ids.get(op.key))
                    if db_id is not None:
                        cur.execute(
                            "UPDATE coverage_intervals SET"
                            " ended_at = greatest(started_at, %s),"
                            " heartbeat_at = greatest(started_at, %s), end_reason = %s"
                            " WHERE id = %s AND ended_at IS NULL",
                            (op.ended_at, op.ended_at, op.reason, db_id),
                        )
                elif isinstance(op, _Log):
                    logs.append((op.at, op.account, self.worker_id, op.event, op.detail, op.fence))
                    continue
                else:
                    mine = list(new_ids.values()) + list(self._ids.values())
                    cur.execute(
                        "UPDATE coverage_intervals SET ended_at = heartbeat_at, end_reason = %s"
                        " WHERE account = %s AND ended_at IS NULL AND NOT id = ANY(%s)",
                        (WORKER_LOST, op.account, mine),
                    )
            self._insert_logs(cur, logs)
            ids, times = [], []
            for key, at in beats.items():
                db_id = new_ids.get(key, self._ids.get(key))
                if db_id is not None:
                    ids.append(db_id)
                    times.append(at)
            if ids:
                # One statement for every heartbeat: with thousands of sessions a statement
                # each cost more than the sessions' long-polls themselves.
                cur.execute(
                    "UPDATE coverage_intervals c SET heartbeat_at = greatest(c.heartbeat_at, b.at)"
                    " FROM unnest(%s::bigint[], %s::timestamptz[]) AS b(id, at)"
                    " WHERE c.id = b.id AND c.ended_at IS NULL",
                    (ids, times),
                )
        self._ids.update(new_ids)
        self.fenced += fenced
        # An interval whose opening was skipped has no row: its key is done with.
        self._closed.update(op.key for op in ops if isinstance(op, _Open) and op.key not in new_ids)
        del self._ops[: len(ops)]
        for key, at in beats.items():
            if self._heartbeats.get(key) == at:
                self._heartbeats.pop(key, None)
        for key in [k for k in self._ids if k in self._closed]:
            if not any(isinstance(o, _Close) and o.key == key for o in self._ops):
                del self._ids[key]

    @staticmethod
    def _insert_logs(cur: psycopg.Cursor[Any], logs: list[tuple[Any, ...]]) -> None:
        """Consecutive log rows in one executemany (pipelined): thousands at a mass login."""
        if logs:
            cur.executemany(
                "INSERT INTO session_log (at, account, worker_id, event, detail, fence)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                logs,
            )
            logs.clear()
