"""A pack's event rows in record order without sorting whole rows, read ahead on a thread.

Sorting the matching events by record position with their leaf pieces made PostgreSQL carry
about 1.3 KB a row through the sort (127 MB spilled to disk for 100,000 events, EXPLAIN
(ANALYZE, BUFFERS)), and the client waited for all of it before the first row came. Instead:

1. the order: (position, leaf hash, id, received_at) of the matching rows, sorted by
   PostgreSQL (about 60 bytes a row), read from a server-side cursor a chunk at a time;
2. per chunk, the rows' leaf pieces by id (the primary key, within the chunk's time bounds so
   that only the partitions it touches are read), put back in the chunk's order here;
3. per chunk, the `leaves` of the format-2 batch rows it touches that the chunk before did
   not (a batch's 2,000 slot hashes in one read): an event's leaf hash is its slot there.
   Reading it as a substring of `leaves` in step 1 cost a TOAST index probe and chunk read
   per event (EXTERNAL storage reads only the slice, but one slice per event).

A thread reads the next chunk (both steps) while the caller encodes the current one, so
PostgreSQL formats rows while this process hashes and writes. The rows are the tuples the
single query gave: (position, leaf hash, received_at as the leaf writes it, account, id,
*leaf pieces), then the slot in its format-2 batch and the batch's size (-1 and 0 for an
event with a record row of its own); in record order, in the caller's (REPEATABLE READ)
snapshot.

``encoded()`` (the pack's read) goes further where _leafcopy is built (not with
AUDITOR_NATIVE=0, and on a UTF-8 connection): step 2 is a binary COPY of the chunk's raw
columns (auditor.store.leaf_copy's plan: no to_char, to_json or concat_ws for PostgreSQL
to run; the payload's jsonb text is all it still formats), read by C without the GIL,
and C (_leafcopy.export_copy, also without the GIL) writes each row's leaf bytes and
events.csv line from the binary values, on the reading thread. A row C leaves to Python (a
float in the payload, an odd escape, a year outside 1..9999) is read and written the way
above, that row alone. The chunks are then ``Encoded``: no row tuples at all.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC
from typing import Any, NamedTuple, TypeVar

import psycopg
from psycopg import sql

from auditor.evidence import batches
from auditor.evidence.leaves import SOURCES
from auditor.evidence.pack_csv import CsvRows
from auditor.store import leaf_copy
from auditor.store.leaf_sql import LeafQuery

_AT = """to_char(e.received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""

Row = tuple[Any, ...]
T = TypeVar("T")


def _order(where: sql.Composable) -> sql.Composed:
    """(position, leaf hash, id, received_at, slot, batch size) of the matching events: an
    event sealed in a format-2 batch row (docs/evidence.md) has the batch's position, no
    leaf hash here (EventRows takes it from the batch's `leaves`), its slot and the batch's
    size; one sealed in its own row has its leaf hash, slot -1 and size 0. The batch is
    found by one backward probe of (source, source_id) per event."""
    return sql.SQL(
        f"SELECT {batches.EVENT_POSITION}, r.leaf_hash, e.id, e.received_at,"
        " coalesce(e.id - b.source_id, -1), coalesce(b.leaf_count, 0)"
        f" FROM events AS e{batches.EVENT_PLACE_JOIN} WHERE {{}} ORDER BY 1 NULLS LAST, e.id"
    ).format(where)


# The order query finds each event's batch row among the batch rows of the events' id range,
# passed in as arrays (width_bucket: a binary search per event, in the executor), instead of
# one backward index probe per event (~5.8 of the order query's ~7.7 us a row, 580 of 726 ms
# for 100,000 events). Only while those batch rows are few beside the events: a sparse pack
# (one interaction over a year) spans many small batches, and there the probe is cheaper.
BATCHES_PER_EVENT = 2
MIN_BATCHES = 10_000


def _order_by_ranges(where: sql.Composable) -> sql.Composed:
    """_order's rows with the batch rows given as three arrays sorted by first id: their first
    ids, positions and sizes. The candidates for "the last batch row starting at or before
    e.id" are every batch row starting in the events' id range and the last one before it,
    so width_bucket (the number of first ids <= e.id) picks the same row as the probe."""
    inside = "w.k > 0 AND e.id < bt.s[w.k] + bt.n[w.k]"
    batched = f"r.position IS NULL AND {inside}"
    return sql.SQL(
        "WITH bt AS (SELECT %s::int8[] AS s, %s::int8[] AS p, %s::int4[] AS n)"
        f" SELECT coalesce(r.position, CASE WHEN {inside} THEN bt.p[w.k] END), r.leaf_hash,"
        f" e.id, e.received_at, CASE WHEN {batched} THEN e.id - bt.s[w.k] ELSE -1 END,"
        f" CASE WHEN {batched} THEN bt.n[w.k] ELSE 0 END"
        " FROM events AS e CROSS JOIN bt"
        " CROSS JOIN LATERAL (SELECT width_bucket(e.id, bt.s) AS k) AS w"
        " LEFT JOIN record AS r ON r.source = 'event' AND r.source_id = e.id"
        " WHERE {} ORDER BY 1 NULLS LAST, e.id"
    ).format(where)


def order_statement(
    conn: psycopg.Connection[Any], where: sql.Composable, params: list[Any]
) -> tuple[sql.Composed, list[Any]]:
    """The order query and its parameters for the events matching ``where``: by the batch
    rows as arrays where they are few enough (_order_by_ranges), else by a probe per event
    (_order). Run in the caller's transaction (its snapshot)."""
    span = sql.SQL("SELECT min(e.id), max(e.id), count(*) FROM events AS e WHERE {}").format(where)
    low, high, count = conn.execute(span, params).fetchone() or (None, None, 0)
    if low is None or high is None:
        return _order(where), params
    limit = max(MIN_BATCHES, BATCHES_PER_EVENT * count)
    rows = conn.execute(
        "SELECT source_id, position, leaf_count FROM record WHERE source = 'batch'"
        " AND source_id <= %s AND source_id >= coalesce((SELECT max(source_id) FROM record"
        " WHERE source = 'batch' AND source_id <= %s), %s) ORDER BY source_id LIMIT %s",
        (high, low, low, limit + 1),
    ).fetchall()
    if len(rows) > limit:
        return _order(where), params
    starts = [row[0] for row in rows]
    positions = [row[1] for row in rows]
    sizes = [row[2] for row in rows]
    return _order_by_ranges(where), [starts, positions, sizes, *params]


def _pieces() -> sql.Composed:
    return sql.SQL(
        "SELECT {}, e.account, {} FROM events AS e"
        " WHERE e.id = ANY(%b::int8[]) AND e.received_at >= %s AND e.received_at <= %s"
    ).format(sql.SQL(_AT), LeafQuery("event", alias="e").columns)


# Columns of a row (as _pieces and the pack's _select give them): the position, the leaf
# hash, received_at, account, then the id and the leaf pieces.
_ID = 4


class Encoded(NamedTuple):
    """A chunk written by C from a binary COPY (see the module's note): per event in record
    order its key (position, its own record row's leaf hash or None, id, received_at, slot,
    batch size: the order query's row); its events.ndjson lines (each ending in a newline)
    and their end offsets (native int64); the indexes of the events whose line is not their
    leaf hash (to be encoded again the careful way before anyone calls them altered); the
    chunk's events.csv lines; the accounts of its events."""

    keys: list[Row]
    ndjson: bytes
    ends: bytes
    mismatched: list[int]
    csv: bytes
    accounts: set[str | None]
    extra: Any = None  # what EventRows' prefetch answered for the keys


def splice(data: bytes, ends: bytes, pieces: dict[int, bytes]) -> tuple[bytes, bytes]:
    """``data``'s lines (ending at ``ends``, native int64) with the lines ``pieces`` names
    put in their place, and the new ends: for the few rows Python writes or rewrites."""
    old = array("q")
    old.frombytes(ends)
    view = memoryview(data)
    out: list[bytes | memoryview] = []
    new = array("q")
    start = total = 0
    for index, end in enumerate(old):
        piece = pieces.get(index)
        out.append(view[start:end] if piece is None else piece)
        total += end - start if piece is None else len(piece)
        new.append(total)
        start = end
    return b"".join(out), new.tobytes()


class _Read(NamedTuple):
    """A chunk as read: its keys (as Encoded has them), their leaf hashes and ids, and the
    binary COPY."""

    keys: list[Row]
    hashes: list[bytes | None]
    ids: list[int]
    data: bytes
    extra: Any


def _slot(leaves: bytes | None, at: int) -> bytes | None:
    return None if leaves is None else leaves[at : at + 32]


class _CopyPlan:
    """The events' binary COPY and what export_copy needs to read it."""

    def __init__(self) -> None:
        plan = leaf_copy.CopyPlan("event")
        self.fields = plan.fields
        self.columns = plan.columns
        # the COPY's columns after the id, by name: the plan's fields less the constants
        names = [prefix.decode()[1:-2] for prefix, kind in plan.fields if kind != leaf_copy.K_CONST]
        self.csv_columns = tuple(names.index(name) for name in SOURCES["event"].fields)
        self.account = names.index("account")

    def statement(self, ids: list[int], low: Any, high: Any) -> sql.Composed:
        """The COPY of the events with these ids within these times. COPY takes no
        parameters: the bounds as UTC literals (see pack.Query.where); the ids as a range
        where they are one (a chunk of one account's batches: PostgreSQL plans a
        5,000-element array in ~3.6 ms, measured), else as an array literal (integers:
        nothing to escape)."""
        first, last = min(ids), max(ids)
        if last - first + 1 == len(ids) == len(set(ids)):  # every id between, each once
            which = sql.SQL("id >= {} AND id <= {}").format(first, last)
        else:
            which = sql.SQL("id = ANY({}::int8[])").format(
                sql.Literal("{" + ",".join(map(str, ids)) + "}")
            )
        return sql.SQL(
            "COPY (SELECT {} FROM events WHERE {} AND received_at >= {}"
            " AND received_at <= {}) TO STDOUT (FORMAT binary)"
        ).format(
            self.columns, which, sql.Literal(low.astimezone(UTC)), sql.Literal(high.astimezone(UTC))
        )


class EventRows:
    """Iterate to get lists of rows (at most ``chunk_rows`` each) in record order."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        where: sql.Composable,
        params: list[Any],
        chunk_rows: int,
        prefetch: Callable[[list[Row], dict[int, bytes | None]], Any] | None = None,
    ) -> None:
        # prefetch: called with each chunk's keys and its batch rows' `leaves` (by position,
        # as read for the leaf hashes) on the encoded read's reading thread (the pack's proof
        # data, read there while that thread holds the connection anyway); its answer is
        # handed on as Encoded.extra
        self.conn = conn
        self.prefetch = prefetch
        self.where = where
        self.params = params
        self.chunk_rows = chunk_rows
        self._pieces = _pieces()
        self._leaves: dict[int, bytes | None] = {}  # batch position -> its `leaves`
        self._plan: _CopyPlan | None = None

    def __iter__(self) -> Iterator[list[Row]]:
        return self._read(self._next)

    def encoded(self) -> Iterator[list[Row] | Encoded]:
        """The chunks as ``Encoded`` where C reads the binary COPY (see the module's note),
        else as __iter__ gives them."""
        if leaf_copy.export_copy is None or self.conn.info.encoding != "utf-8":
            return self._read(self._next)
        return self._read_encoded()

    def _read_encoded(self) -> Iterator[Encoded]:
        """Two stages on two threads, a chunk apart: one reads (the order's keys and the
        COPY: mostly waiting for PostgreSQL), one writes (C without the GIL), so that
        PostgreSQL formats the next chunk while C writes this one and the caller hashes
        and writes the one before."""
        with (
            ThreadPoolExecutor(1, thread_name_prefix="pack-rows") as ahead,
            ThreadPoolExecutor(1, thread_name_prefix="pack-write") as writer,
            self.conn.cursor(name="pack_event_order", binary=True) as order,
        ):
            order.itersize = self.chunk_rows
            order.execute(*order_statement(self.conn, self.where, self.params))
            read: Future[_Read | None] = ahead.submit(self._fetch, order)
            written: Future[Encoded] | None = None
            while True:
                raw = read.result()
                if raw is not None:
                    read = ahead.submit(self._fetch, order)
                    after = writer.submit(self._write, raw)
                if written is not None:
                    yield written.result()
                if raw is None:
                    return
                written = after

    def _read(self, step: Callable[[psycopg.Cursor[Any]], T | None]) -> Iterator[T]:
        with (
            ThreadPoolExecutor(1, thread_name_prefix="pack-rows") as ahead,
            self.conn.cursor(name="pack_event_order", binary=True) as order,
        ):
            order.itersize = self.chunk_rows
            order.execute(*order_statement(self.conn, self.where, self.params))
            pending: Future[T | None] = ahead.submit(step, order)
            while True:
                chunk = pending.result()
                if chunk is None:
                    return
                pending = ahead.submit(step, order)
                yield chunk

    def _next(self, order: psycopg.Cursor[Any]) -> list[Row] | None:
        """The next chunk, complete (runs on the read-ahead thread); None after the last."""
        keys, hashes = self._keys(order)
        if not keys:
            return None
        by_id = self._piece_rows(keys, [key[2] for key in keys])
        return [
            (key[0], leaf_hash) + by_id[key[2]] + key[4:]
            for key, leaf_hash in zip(keys, hashes, strict=True)
        ]

    def _fetch(self, order: psycopg.Cursor[Any]) -> _Read | None:
        """The next chunk's keys and binary COPY (runs on the reading thread); None after
        the last."""
        keys, hashes = self._keys(order)
        if not keys:
            return None
        if self._plan is None:
            self._plan = _CopyPlan()
        ids = [key[2] for key in keys]
        times = [key[3] for key in keys]
        statement = self._plan.statement(ids, min(times), max(times))
        data = leaf_copy.copy_bytes(self.conn, statement)
        extra = self.prefetch(keys, self._leaves) if self.prefetch is not None else None
        return _Read(keys, hashes, ids, data, extra)

    def _write(self, raw: _Read) -> Encoded:
        """The chunk written by C (runs on the writing thread)."""
        export_copy = leaf_copy.export_copy
        assert export_copy is not None
        assert self._plan is not None
        plan, keys, ids, hashes = self._plan, raw.keys, raw.ids, raw.hashes
        ndjson, ends, csv, csv_ends, left, mismatched, accounts = export_copy(
            plan.fields,
            raw.data,
            array("q", ids).tobytes(),
            array("q", [key[0] or 0 for key in keys]).tobytes(),
            hashes,
            plan.csv_columns,
            plan.account,
        )
        if left:  # the rows C left to Python, read and written the leaf_sql way
            by_id = self._piece_rows([keys[i] for i in left], [ids[i] for i in left])
            query, csv_rows = LeafQuery("event", alias="e"), CsvRows(_ID)
            leaves: dict[int, bytes] = {}
            lines: dict[int, bytes] = {}
            for index in left:
                key = keys[index]
                row: Row = (key[0], hashes[index]) + by_id[key[2]] + key[4:]
                leaves[index] = query.join(row, _ID + 1)
                lines[index] = csv_rows.lines([row])
                accounts.add(row[3])
            wrong = leaf_copy.leaf_mismatches(
                list(leaves.values()), [hashes[index] for index in leaves]
            )
            mismatched = sorted(mismatched + [left[at] for at in wrong])
            ndjson, ends = splice(
                ndjson, ends, {index: leaf[1:] + b"\n" for index, leaf in leaves.items()}
            )
            csv, _ = splice(csv, csv_ends, lines)
        return Encoded(keys, ndjson, ends, mismatched, csv, accounts, raw.extra)

    def _piece_rows(self, keys: list[Row], ids: list[int]) -> dict[int, Row]:
        """The leaf pieces (_pieces) of the events ``keys`` name, by id."""
        times = [key[3] for key in keys]
        with self.conn.cursor(binary=True) as cur:
            cur.execute(self._pieces, (ids, min(times), max(times)))
            return {row[2]: row for row in cur.fetchall()}

    def _keys(self, order: psycopg.Cursor[Any]) -> tuple[list[Row], list[bytes | None]]:
        """The next chunk's keys (the order query's rows) and their leaf hashes: taken from
        its format-2 batch's `leaves` where an event is batched."""
        keys = order.fetchmany(self.chunk_rows)
        if not keys:
            return [], []
        batched = {key[0] for key in keys if key[4] >= 0}
        kept = {position: self._leaves[position] for position in batched & self._leaves.keys()}
        if wanted := sorted(batched - kept.keys()):
            kept.update(
                (position, None if leaves is None else bytes(leaves))
                for position, leaves in self.conn.execute(
                    "SELECT position, leaves FROM record WHERE position = ANY(%s)", (wanted,)
                )
            )
        self._leaves = kept  # a batch spans a few chunks at most: keep this chunk's
        # as substring() gave it: NULL for NULL leaves, short past the end (a comprehension,
        # no tuple per key: this thread's Python is on the export's critical path)
        get = kept.get
        hashes = [key[1] if key[4] < 0 else _slot(get(key[0]), key[4] * 32) for key in keys]
        return keys, hashes
