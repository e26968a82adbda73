"""The durable local spool: a SQLite journal in WAL mode, written by one thread with group
commit, so the receive loop never waits on disk.

`put()` only appends to an in-memory list (thread-safe, microseconds). The writer thread
takes everything queued, inserts it in one transaction and commits; a commit therefore costs
one fsync per group, not per message. synchronous=FULL by default: in WAL mode NORMAL already
survives a process kill (the WAL is in the OS page cache), but only FULL survives power loss,
and the worker acknowledges messages to the server once they are committed here, after which
the server forgets them. Rows carry an AUTOINCREMENT seq so that a range read by the drain
can be deleted by range without ever touching a row inserted later.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    receipt_id  TEXT NOT NULL,
    received_at TEXT NOT NULL,
    account     TEXT NOT NULL,
    channel     TEXT,
    kind        TEXT NOT NULL,
    raw         TEXT NOT NULL
)
"""
_INSERT = (
    "INSERT INTO spool (receipt_id, received_at, account, channel, kind, raw)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)


class Row(NamedTuple):
    """One spooled message. A NamedTuple, not a frozen dataclass: the receive loop makes one
    per notification, and a frozen dataclass's __init__ sets each field through
    object.__setattr__ (five times the cost)."""

    receipt_id: str
    received_at: str  # ISO 8601 with offset and microseconds
    account: str
    channel: str | None
    kind: str
    raw: str


@dataclass(frozen=True, slots=True)
class Stored:
    seq: int
    row: Row


def _connect(path: Path, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    return conn


class Spool:
    def __init__(self, path: Path, synchronous: str = "FULL", interval: float = 0.0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._synchronous = synchronous
        self._interval = interval
        self._writer = _connect(path, synchronous)
        self._writer.execute(_SCHEMA)
        self.reader = SpoolReader(path)
        self._pending: list[Row] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self.put_count = 0  # rows handed to put() since start
        self.committed_count = 0  # of those, rows committed to disk
        # Every row put before this wall-clock time is on disk.
        self.durable_through = time.time()
        self.last_commit_seconds = 0.0
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._thread = threading.Thread(target=self._run, name="spool-writer", daemon=True)
        self._thread.start()

    # -- writing (any thread; the event loop calls put) -------------------------------------

    def put(self, row: Row) -> int:
        """Queue a row; returns its put number (wait_committed(n) waits for it)."""
        with self._lock:
            self._pending.append(row)
            self.put_count += 1
            number = self.put_count
        # Waking the writer takes a lock and a notify: once per group, not per row (the writer
        # clears the flag under self._lock when it takes the group, so none is missed).
        if not self._wake.is_set():
            self._wake.set()
        return number

    def put_many(self, rows: list[Row]) -> int:
        with self._lock:
            self._pending.extend(rows)
            self.put_count += len(rows)
            number = self.put_count
        self._wake.set()
        return number

    @property
    def writer_alive(self) -> bool:
        return self._thread.is_alive()

    async def wait_committed(self, number: int) -> None:
        if self.committed_count >= number:
            return
        loop = asyncio.get_running_loop()
        self._loop = loop
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            self._waiters.append((number, future))
        if self.committed_count >= number:  # committed meanwhile
            self._release()
        await future

    def _release(self) -> None:
        with self._lock:
            done = [w for w in self._waiters if w[0] <= self.committed_count]
            self._waiters = [w for w in self._waiters if w[0] > self.committed_count]
        for _, future in done:
            if not future.done():
                future.set_result(None)

    def _run(self) -> None:
        while True:
            self._wake.wait(0.05)
            if self._interval > 0:
                time.sleep(self._interval)  # let a group form
            with self._lock:
                self._wake.clear()
                batch, self._pending = self._pending, []
                taken_at, number = time.time(), self.put_count
            if batch:
                started = time.perf_counter()
                try:
                    self._writer.execute("BEGIN")
                    self._writer.executemany(
                        _INSERT,
                        [
                            (r.receipt_id, r.received_at, r.account, r.channel, r.kind, r.raw)
                            for r in batch
                        ],
                    )
                    self._writer.execute("COMMIT")
                except BaseException as exc:  # a full disk must stop the worker, loudly
                    self.error = exc
                    return
                self.last_commit_seconds = time.perf_counter() - started
            self.committed_count = number
            self.durable_through = taken_at
            if self._loop is not None and self._waiters:
                with contextlib.suppress(RuntimeError):  # the loop is closed
                    self._loop.call_soon_threadsafe(self._release)
            if self._closing and not self._pending:
                return

    def close(self) -> None:
        """Commit what is queued, stop the writer thread, close the files."""
        self._closing = True
        self._wake.set()
        self._thread.join()
        self._writer.close()
        self.reader.close()

    # -- draining ---------------------------------------------------------------------------

    def depth(self) -> int:
        return self.reader.depth()

    def oldest(self, limit: int) -> list[Stored]:
        return self.reader.oldest(limit)

    def delete_through(self, first: int, last: int) -> int:
        return self.reader.delete_through(first, last)

    def oldest_received_at(self) -> str | None:
        return self.reader.oldest_received_at()


class SpoolReader:
    """The drain's side of the spool: read the oldest rows, delete a committed range. It opens
    its own connection, so the drain can run in another process than the receive loop."""

    def __init__(self, path: Path) -> None:
        # It only deletes what PostgreSQL already committed; a delete lost in a crash just
        # replays rows the writer ignores, so it needs no fsync.
        self._conn = _connect(path, "NORMAL")
        self._conn.execute(_SCHEMA)
        self._lock = threading.Lock()

    def depth(self) -> int:
        """Rows waiting. Whoever drains (this process, the drain process, or one left over
        from a killed worker) deletes the oldest rows, and seqs are handed out without gaps,
        so the rows left are one run of seqs: two index lookups, where count(*) would read
        the whole file."""
        with self._lock:
            row = self._conn.execute(
                "SELECT coalesce(max(seq) - min(seq) + 1, 0) FROM spool"
            ).fetchone()
        return int(row[0])

    def oldest(self, limit: int) -> list[Stored]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, receipt_id, received_at, account, channel, kind, raw"
                " FROM spool ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [Stored(r[0], Row(r[1], r[2], r[3], r[4], r[5], r[6])) for r in rows]

    def delete_through(self, first: int, last: int) -> int:
        """Delete seq first..last; returns how many rows that removed."""
        with self._lock:
            return self._conn.execute(
                "DELETE FROM spool WHERE seq BETWEEN ? AND ?", (first, last)
            ).rowcount

    def oldest_received_at(self) -> str | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT received_at FROM spool ORDER BY seq LIMIT 1"
            ).fetchone()
        return None if row is None else str(row[0])

    def close(self) -> None:
        self._conn.close()
