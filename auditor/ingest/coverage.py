"""Coverage as data: coverage_intervals (one per subscribed session) and session_log.

Sessions record what happens in memory (never waiting on PostgreSQL); a task flushes the
queued operations in order, in one transaction, every heartbeat interval. If PostgreSQL is
down, the operations wait and are applied when it is back, in the same order. The SQL is in
auditor/store/coverage_writes.py, behind ports.CoverageStorage; the flush task owns the
connection and the transaction (flush() below).

With leases, every row carries the fence of the account's lease as it was when the row was
made; PostgreSQL skips the rows of a fence that is no longer current (a worker that stalled
past its lease: migration 2026_12_02_fencing), so an interval whose opening was skipped gets
no heartbeats or close either.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg

from auditor.store import coverage_writes
from auditor.store.coverage_writes import LogRow

if TYPE_CHECKING:
    from auditor.ingest.ports import CoverageStorage

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

    def take(self) -> Flush | None:
        """What is queued now, for one flush; None when there is nothing to write."""
        if not self._ops and not self._heartbeats:
            return None
        return Flush(list(self._ops), dict(self._heartbeats))

    def write(self, flush: Flush, storage: CoverageStorage) -> None:
        """Apply a flush's operations in order, inside the caller's transaction. Nothing of
        this object changes until flushed() is called after the commit."""
        logs: list[LogRow] = []
        for op in flush.ops:
            if logs and not isinstance(op, _Log):
                storage.insert_logs(logs)
                logs = []
            if isinstance(op, _Open):
                db_id = storage.open_interval(
                    op.account, self.worker_id, op.client_id, op.channels, op.started_at, op.fence
                )
                if db_id is None:  # skipped: the fence is stale (the lease passed on)
                    flush.fenced += 1
                    log.warning(
                        "coverage interval refused: the lease passed to another worker",
                        extra={"account": op.account, "fence": op.fence},
                    )
                else:
                    flush.new_ids[op.key] = db_id
            elif isinstance(op, _Close):
                db_id = flush.new_ids.get(op.key, self._ids.get(op.key))
                if db_id is not None:
                    storage.close_interval(db_id, op.ended_at, op.reason)
            elif isinstance(op, _Log):
                logs.append((op.at, op.account, self.worker_id, op.event, op.detail, op.fence))
            else:
                mine = list(flush.new_ids.values()) + list(self._ids.values())
                storage.close_stale(op.account, WORKER_LOST, mine)
        storage.insert_logs(logs)
        ids, times = [], []
        for key, at in flush.beats.items():
            db_id = flush.new_ids.get(key, self._ids.get(key))
            if db_id is not None:
                ids.append(db_id)
                times.append(at)
        storage.heartbeats(ids, times)

    def flushed(self, flush: Flush) -> None:
        """The transaction that wrote `flush` committed: forget what it wrote."""
        ops, beats, new_ids = flush.ops, flush.beats, flush.new_ids
        self._ids.update(new_ids)
        self.fenced += flush.fenced
        # An interval whose opening was skipped has no row: its key is done with.
        self._closed.update(op.key for op in ops if isinstance(op, _Open) and op.key not in new_ids)
        del self._ops[: len(ops)]
        for key, at in beats.items():
            if self._heartbeats.get(key) == at:
                self._heartbeats.pop(key, None)
        for key in [k for k in self._ids if k in self._closed]:
            if not any(isinstance(o, _Close) and o.key == key for o in self._ops):
                del self._ids[key]


@dataclass
class Flush:
    """One flush: the operations and heartbeats taken, and what writing them found."""

    ops: list[Op]
    beats: dict[int, datetime]
    new_ids: dict[int, int] = field(default_factory=dict)  # our key -> coverage_intervals.id
    fenced: int = 0


def flush(coverage: Coverage, conn: psycopg.Connection[Any]) -> int:
    """The flush task's transaction: everything queued, in order, in one transaction on the
    caller's connection; returns the rows PostgreSQL skipped as fenced off."""
    taken = coverage.take()
    if taken is None:
        return 0
    with conn.transaction():
        coverage.write(taken, PgCoverageStorage(conn))
    coverage.flushed(taken)
    return taken.fenced


@dataclass(frozen=True)
class PgCoverageStorage:
    """ports.CoverageStorage on a PostgreSQL connection (auditor/store/coverage_writes.py)."""

    conn: psycopg.Connection[Any]

    def open_interval(
        self,
        account: str,
        worker_id: str,
        client_id: str | None,
        channels: list[str],
        started_at: datetime,
        fence: int | None,
    ) -> int | None:
        return coverage_writes.open_interval(
            self.conn, account, worker_id, client_id, channels, started_at, fence
        )

    def close_interval(self, interval_id: int, ended_at: datetime, reason: str) -> None:
        coverage_writes.close_interval(self.conn, interval_id, ended_at, reason)

    def close_stale(self, account: str, reason: str, mine: list[int]) -> None:
        coverage_writes.close_stale(self.conn, account, reason, mine)

    def insert_logs(self, rows: Sequence[LogRow]) -> None:
        coverage_writes.insert_logs(self.conn, rows)

    def heartbeats(self, ids: list[int], times: list[datetime]) -> None:
        coverage_writes.heartbeats(self.conn, ids, times)
