"""Leaf hashes recomputed from the stored rows, by id range: what `verify` compares with the
record, by the fast encoding of auditor.store.leaf_sql. Read on the caller's connection
(``LocalLeaves``), by a thread on a second connection in the caller's snapshot while this
process hashes (``PrefetchedLeaves``: PostgreSQL formats the next batch meanwhile), or by
worker processes that read and hash in the caller's snapshot (``PooledLeaves``). Each
offers ``careful``: the reference leaf of one row, asked for before a row is called altered.

A batch is asked for before the previous one is checked (``submit`` returns at once; the
result is waited for when needed), so the next batch is read (and, in the pool, hashed)
while the caller checks the chain of this one.
"""

from __future__ import annotations

import logging
import multiprocessing
from array import array
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import psycopg
from psycopg import sql

from auditor.store.leaf_sql import LeafQuery
from auditor.store.sources import Hasher, rows_by_id

Wanted = dict[str, tuple[int, int]]  # source -> (lowest id, highest id) of a batch
Leaves = dict[tuple[str, int], bytes]  # (source, id) -> leaf hash of the stored row
Pending = Callable[[], Leaves]

# What Leaves holds for an id that more than one stored row carries. events is partitioned
# with primary key (id, received_at): its owner can store a second row with a sealed event's
# id, and a lookup by id would keep whichever row came last. Not 32 bytes, so it never equals
# a leaf hash; the checker reports the id as inserted (auditor.store.integrity).
DUPLICATE = b"duplicate"

log = logging.getLogger(__name__)


def wanted(refs: Iterable[tuple[str, int]]) -> Wanted:
    """The id range per source that holds the rows named by (source, source_id) pairs."""
    found: Wanted = {}
    for source, source_id in refs:
        span = found.get(source)
        if span is None:
            found[source] = (source_id, source_id)
        elif source_id < span[0]:
            found[source] = (source_id, span[1])
        elif source_id > span[1]:
            found[source] = (span[0], source_id)
    return found


class LocalLeaves:
    """Rows read and hashed here, on the caller's connection, when the result is asked for."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.hashers: dict[str, Hasher] = {}

    def submit(self, want: Wanted) -> Pending:
        def result() -> Leaves:
            found: Leaves = {}
            for source, (lo, hi) in want.items():
                _hashed(source, _read_range(self.conn, source, lo, hi), found)
            return found

        return result

    def careful(self, source: str, source_id: int) -> bytes | None:
        """The leaf hash of one row by the careful encoder (what the writer and the sealer
        use), or None when the row is gone: the second opinion before a row is called
        altered (auditor.store.leaf_sql says why the fast one can differ)."""
        hasher = self.hashers.get(source)
        if hasher is None:
            hasher = self.hashers[source] = Hasher(source)
        row = rows_by_id(self.conn, source, source_id, source_id).get(source_id)
        return None if row is None else hasher.leaf(row)

    def close(self) -> None:
        pass


_QUERIES: dict[str, LeafQuery] = {}


def _query(source: str) -> LeafQuery:
    query = _QUERIES.get(source)
    if query is None:
        query = _QUERIES[source] = LeafQuery(source)
    return query


def _read_range(conn: psycopg.Connection[Any], source: str, lo: int, hi: int) -> list[Any]:
    """The leaf pieces (auditor.store.leaf_sql) of the rows of a source, lo <= id <= hi."""
    # binary: ids as ints and the pieces as bytes, with no text decoding on either side
    with conn.cursor(binary=True) as cur:
        cur.execute(_query(source).select_range(), (lo, hi))
        return cur.fetchall()


def _hash_range(
    conn: psycopg.Connection[Any], source: str, lo: int, hi: int
) -> tuple[list[int], list[bytes]]:
    """Ids and leaf hashes (auditor.store.leaf_sql: fast, compared only) of the rows of a
    source with lo <= id <= hi."""
    rows = _read_range(conn, source, lo, hi)
    return [row[0] for row in rows], _query(source).hashes(rows)


def _hashed(source: str, rows: list[Any], into: Leaves) -> None:
    _put(into, source, [row[0] for row in rows], _query(source).hashes(rows))


def _put(into: Leaves, source: str, ids: Sequence[int], hashes: Iterable[bytes]) -> None:
    """Each id's leaf hash into ``into``; DUPLICATE for an id met twice."""
    before = len(into)
    count = 0
    for source_id, leaf in zip(ids, hashes, strict=True):
        into[(source, source_id)] = leaf
        count += 1
    if len(into) - before == count:  # the usual case: every id new, no second pass
        return
    seen: set[int] = set()
    for source_id in ids:
        if source_id in seen:
            into[(source, source_id)] = DUPLICATE
        seen.add(source_id)


class PrefetchedLeaves:
    """Rows read by a thread on a second connection in the caller's snapshot (``snapshot``
    from pg_export_snapshot() of ``conn``'s open transaction) and hashed here: PostgreSQL
    and the socket work on the next batch while this process hashes the current one. The
    thread holds the GIL only to build the rows (a few byte strings each); libpq waits
    without it. Should the second connection fail, rows are read on ``conn``."""

    def __init__(self, conn: psycopg.Connection[Any], conninfo: str, snapshot: str) -> None:
        self.local = LocalLeaves(conn)
        self.reader = ThreadPoolExecutor(1, thread_name_prefix="verify-reader")
        self.twin: Future[psycopg.Connection[Any]] = self.reader.submit(
            _snapshot_connection, conninfo, snapshot
        )

    def _read(self, want: Wanted) -> dict[str, list[Any]]:
        twin = self.twin.result()
        return {source: _read_range(twin, source, lo, hi) for source, (lo, hi) in want.items()}

    def submit(self, want: Wanted) -> Pending:
        rows = self.reader.submit(self._read, want)

        def result() -> Leaves:
            found: Leaves = {}
            try:
                read = rows.result()
            except psycopg.Error as exc:
                log.warning("verify: the reading connection failed (%s); reading here", exc)
                return self.local.submit(want)()
            for source, source_rows in read.items():
                _hashed(source, source_rows, found)
            return found

        return result

    def careful(self, source: str, source_id: int) -> bytes | None:
        return self.local.careful(source, source_id)

    def close(self) -> None:
        self.reader.shutdown(wait=True, cancel_futures=True)
        if self.twin.done() and self.twin.exception() is None:
            self.twin.result().close()
        self.local.close()


def _snapshot_connection(conninfo: str, snapshot: str) -> psycopg.Connection[Any]:
    """A read-only connection that sees exactly what the snapshot's transaction sees."""
    conn = psycopg.connect(conninfo)
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
    return conn


# --- worker processes ----------------------------------------------------------------------
_worker_conn: psycopg.Connection[Any] | None = None


def _worker_start(conninfo: str, snapshot: str) -> None:
    """Each worker reads in the caller's snapshot: the rows it sees are the caller's."""
    global _worker_conn
    _worker_conn = _snapshot_connection(conninfo, snapshot)


def _worker_hash(source: str, lo: int, hi: int) -> tuple[bytes, bytes]:
    """(ids as int64 array bytes, their leaf hashes concatenated) of rows lo <= id <= hi:
    two byte strings cross the pipe instead of an object per row."""
    assert _worker_conn is not None
    ids, hashes = _hash_range(_worker_conn, source, lo, hi)
    return array("q", ids).tobytes(), b"".join(hashes)


def _split(lo: int, hi: int, parts: int) -> list[tuple[int, int]]:
    step = max(1, -(-(hi - lo + 1) // parts))
    return [(start, min(hi, start + step - 1)) for start in range(lo, hi + 1, step)]


class PooledLeaves:
    """Rows read and hashed by ``workers`` processes, each on its own connection in the
    snapshot ``snapshot`` (pg_export_snapshot() of ``conn``'s transaction, which must stay
    open while the pool lives). Should the pool fail (no connection slot left, say), the
    rest is hashed here on ``conn``: slower, the same answer."""

    def __init__(
        self, conn: psycopg.Connection[Any], conninfo: str, snapshot: str, workers: int
    ) -> None:
        self.workers = workers
        self.local = LocalLeaves(conn)
        self.broken = False
        # forkserver: a clean process to fork from (the caller may hold threads and open
        # connections that a plain fork would copy); it imports this module once.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        self.pool = ProcessPoolExecutor(
            workers, mp_context=context, initializer=_worker_start, initargs=(conninfo, snapshot)
        )

    def submit(self, want: Wanted) -> Pending:
        if self.broken:
            return self.local.submit(want)
        jobs: list[tuple[str, Future[tuple[bytes, bytes]]]] = []
        try:
            for source, (lo, hi) in want.items():
                for part_lo, part_hi in _split(lo, hi, self.workers):
                    job = self.pool.submit(_worker_hash, source, part_lo, part_hi)
                    jobs.append((source, job))
        except (BrokenProcessPool, RuntimeError) as exc:
            return self._fall_back(want, exc)

        def result() -> Leaves:
            try:
                return self._collect(jobs)
            except (BrokenProcessPool, psycopg.Error) as exc:
                return self._fall_back(want, exc)()

        return result

    def _fall_back(self, want: Wanted, exc: BaseException) -> Pending:
        if not self.broken:
            log.warning("verify: worker processes failed (%s); hashing in this process", exc)
            self.broken = True
        return self.local.submit(want)

    @staticmethod
    def _collect(jobs: list[tuple[str, Future[tuple[bytes, bytes]]]]) -> Leaves:
        found: Leaves = {}
        for source, job in jobs:
            raw_ids, hashes = job.result()
            ids = array("q")
            ids.frombytes(raw_ids)
            _put(found, source, ids, (hashes[at : at + 32] for at in range(0, len(hashes), 32)))
        return found

    def careful(self, source: str, source_id: int) -> bytes | None:
        return self.local.careful(source, source_id)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.local.close()


LeafSource = LocalLeaves | PrefetchedLeaves | PooledLeaves


def refs(batch: Sequence[tuple[Any, ...]]) -> Iterable[tuple[str, int]]:
    """(source, source_id) of the rows record rows (position, source, source_id, leaf_hash,
    chain_hash, leaves) name: a format-2 batch row names the events of its id range."""
    for row in batch:
        if row[1] == "batch":
            yield "event", row[2]
            yield "event", row[2] + len(row[5]) // 32 - 1
        else:
            yield row[1], row[2]
