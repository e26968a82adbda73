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
import queue
from array import array
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import psycopg
from psycopg import sql

from auditor.store import leaf_copy
from auditor.store.leaf_copy import Pieces, Table
from auditor.store.leaf_sql import LeafQuery
from auditor.store.sources import Hasher, rows_by_id

Wanted = dict[str, tuple[int, int]]  # source -> (lowest id, highest id) of a batch

# What Leaves holds for an id that more than one stored row carries (defined with the fast
# path's tables, which hold it too): see auditor.store.leaf_copy.
DUPLICATE = leaf_copy.DUPLICATE


class Leaves:
    """(source, id) -> leaf hash of the stored row: per source a compact Table from the fast
    path (auditor.store.leaf_copy) or, for the rest, a dict."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, int], bytes] = {}
        self.tables: dict[str, Table] = {}

    def get(self, key: tuple[str, int]) -> bytes | None:
        table = self.tables.get(key[0])
        if table is not None:
            found = table.get(key[1])
            if found is not None:
                return found
        return self.rows.get(key)

    def __contains__(self, key: tuple[str, int]) -> bool:
        return self.get(key) is not None

    def __setitem__(self, key: tuple[str, int], leaf: bytes) -> None:
        self.rows[key] = leaf

    def __len__(self) -> int:
        return len(self.rows)

    def span(self, source: str, first: int, count: int) -> bytes | None:
        """Leaf hashes of ids first .. first + count - 1 of ``source`` joined, when the fast
        path has each of them once; else None (then ask with get, id by id)."""
        table = self.tables.get(source)
        return None if table is None else table.span(first, count)


Pending = Callable[[], Leaves]

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
            return _leaves(_read(self.conn, want))

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


Read = dict[str, Pieces | list[Any]]  # per source: the fast path's answer, or leaf_sql's rows


def _read(conn: psycopg.Connection[Any], want: Wanted) -> Read:
    """Each source's rows in its range: by the fast path (auditor.store.leaf_copy) where it
    is on, else leaf_sql's pieces to hash."""
    read: Read = {}
    for source, (lo, hi) in want.items():
        fast = leaf_copy.pieces(conn, source, lo, hi)
        read[source] = fast if fast is not None else _read_range(conn, source, lo, hi)
    return read


def _leaves(read: Read) -> Leaves:
    found = Leaves()
    for source, got in read.items():
        if isinstance(got, Pieces):
            found.tables[source] = Table([got])
        else:
            _hashed(source, got, found)
    return found


def _hashed(source: str, rows: list[Any], into: Leaves) -> None:
    _put(into, source, [row[0] for row in rows], _query(source).hashes(rows))


def _put(into: Leaves, source: str, ids: Sequence[int], hashes: Iterable[bytes]) -> None:
    """Each id's leaf hash into ``into`` (whose rows hold no id of ``source`` in the range
    of ``ids`` yet); DUPLICATE for an id met twice."""
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
    """Rows read by threads on connections of their own in the caller's snapshot
    (``snapshot`` from pg_export_snapshot() of ``conn``'s open transaction): PostgreSQL and
    the socket work on the next batch while this process checks the current one. The fast
    path (auditor.store.leaf_copy) hashes in the reading thread with the GIL released, and
    PostgreSQL is then the slower side: two threads, so that two backends format rows (one
    batch each) on two cores. Otherwise one thread reads (holding the GIL only to build the
    rows; libpq waits without it) and this thread hashes. Should a reading connection fail,
    rows are read on ``conn``."""

    def __init__(self, conn: psycopg.Connection[Any], conninfo: str, snapshot: str) -> None:
        self.local = LocalLeaves(conn)
        readers = 2 if leaf_copy.hash_copy is not None else 1
        self.reader = ThreadPoolExecutor(readers, thread_name_prefix="verify-reader")
        self.twins: list[Future[psycopg.Connection[Any]]] = [
            self.reader.submit(_snapshot_connection, conninfo, snapshot) for _ in range(readers)
        ]
        self.idle: queue.SimpleQueue[int] = queue.SimpleQueue()
        for index in range(readers):
            self.idle.put(index)

    def _read(self, want: Wanted) -> Read:
        index = self.idle.get()  # a connection no other reading thread uses now
        try:
            return _read(self.twins[index].result(), want)
        finally:
            self.idle.put(index)

    def submit(self, want: Wanted) -> Pending:
        rows = self.reader.submit(self._read, want)

        def result() -> Leaves:
            try:
                read = rows.result()
            except psycopg.Error as exc:
                log.warning("verify: the reading connection failed (%s); reading here", exc)
                return self.local.submit(want)()
            return _leaves(read)

        return result

    def careful(self, source: str, source_id: int) -> bytes | None:
        return self.local.careful(source, source_id)

    def close(self) -> None:
        self.reader.shutdown(wait=True, cancel_futures=True)
        for twin in self.twins:
            if twin.done() and twin.exception() is None:
                twin.result().close()
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


def _worker_hash(source: str, lo: int, hi: int) -> Pieces:
    """The leaf hashes of rows lo <= id <= hi as compact Pieces (a few byte strings cross
    the pipe instead of an object per row): the fast path's, or leaf_sql's as extras."""
    assert _worker_conn is not None
    fast = leaf_copy.pieces(_worker_conn, source, lo, hi)
    if fast is not None:
        return fast
    ids, hashes = _hash_range(_worker_conn, source, lo, hi)
    return Pieces(b"", b"", b"", array("q", ids).tobytes(), b"".join(hashes))


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
        jobs: list[tuple[str, Future[Pieces]]] = []
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
    def _collect(jobs: list[tuple[str, Future[Pieces]]]) -> Leaves:
        parts: dict[str, list[Pieces]] = {}
        for source, job in jobs:  # per source in ascending id ranges (_split's order)
            parts.setdefault(source, []).append(job.result())
        found = Leaves()
        for source, pieces in parts.items():
            found.tables[source] = Table(pieces)
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
