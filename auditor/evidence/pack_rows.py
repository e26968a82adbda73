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
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import psycopg
from psycopg import sql

from auditor.evidence import batches
from auditor.store.leaf_sql import LeafQuery

_AT = """to_char(e.received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""

Row = tuple[Any, ...]


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


def _pieces() -> sql.Composed:
    return sql.SQL(
        "SELECT {}, e.account, {} FROM events AS e"
        " WHERE e.id = ANY(%b::int8[]) AND e.received_at >= %s AND e.received_at <= %s"
    ).format(sql.SQL(_AT), LeafQuery("event", alias="e").columns)


class EventRows:
    """Iterate to get lists of rows (at most ``chunk_rows`` each) in record order."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        where: sql.Composable,
        params: list[Any],
        chunk_rows: int,
    ) -> None:
        self.conn = conn
        self.where = where
        self.params = params
        self.chunk_rows = chunk_rows
        self._pieces = _pieces()
        self._leaves: dict[int, bytes | None] = {}  # batch position -> its `leaves`

    def __iter__(self) -> Iterator[list[Row]]:
        with (
            ThreadPoolExecutor(1, thread_name_prefix="pack-rows") as ahead,
            self.conn.cursor(name="pack_event_order", binary=True) as order,
        ):
            order.itersize = self.chunk_rows
            order.execute(_order(self.where), self.params)
            pending: Future[list[Row]] = ahead.submit(self._next, order)
            while True:
                rows = pending.result()
                if not rows:
                    return
                pending = ahead.submit(self._next, order)
                yield rows

    def _next(self, order: psycopg.Cursor[Any]) -> list[Row]:
        """The next chunk, complete (runs on the read-ahead thread)."""
        keys = order.fetchmany(self.chunk_rows)
        if not keys:
            return []
        ids = [key[2] for key in keys]
        times = [key[3] for key in keys]
        with self.conn.cursor(binary=True) as cur:
            cur.execute(self._pieces, (ids, min(times), max(times)))
            by_id = {row[2]: row for row in cur.fetchall()}
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
        out = []
        for position, leaf_hash, event_id, _, slot, size in keys:
            if slot >= 0:  # as substring() gave it: NULL for NULL leaves, short past the end
                leaves = kept.get(position)
                leaf_hash = None if leaves is None else leaves[slot * 32 : slot * 32 + 32]
            out.append((position, leaf_hash) + by_id[event_id] + (slot, size))
        return out
