"""verify's fast path: the leaf hashes of one source's rows in an id range from one binary
COPY, written and hashed by C (auditor/evidence/_leafcopy.c) with the GIL released.

PostgreSQL sends each column in its binary form (no to_char, no to_json, no concat: the
payload's jsonb text is all it still formats); C writes the leaf bytes (docs/evidence.md)
and their SHA-256, and answers with compact tables: ids sorted, their hashes concatenated,
the ids met twice, the ids it left to Python. Those few rows (a float in a payload, a key
beyond U+FFFF...) are read and hashed the leaf_sql way (auditor.store.leaf_sql), which the
C path only replaces: like leaf_sql these hashes are only ever *compared* with the record,
and a row that differs is asked again of the careful encoder before it is called altered.

Off when the module is not built, with ``AUDITOR_NATIVE=0``, for sources with a column kind
C does not write (arrays, inet) and on a connection whose client encoding is not UTF-8:
then ``pieces`` returns None and the caller takes the leaf_sql path.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import psycopg
from psycopg import sql

from auditor.evidence import native
from auditor.evidence.leaves import SOURCES
from auditor.store.leaf_sql import LeafQuery

HashCopy = Callable[[tuple[tuple[bytes, int], ...], bytes], tuple[bytes, bytes, bytes, bytes]]


def _load() -> HashCopy | None:
    if native.SWITCHED_OFF:
        return None
    try:
        from auditor.evidence import _leafcopy
    except ImportError:
        return None
    return _leafcopy.hash_copy


# None: not built or switched off (benchmarks set it to None to compare in one run).
hash_copy: HashCopy | None = _load()

# The field kinds of _leafcopy.c.
K_CONST, K_TEXT, K_INT8, K_UUID, K_TIMESTAMPTZ, K_JSONB, K_BYTEA = 0, 1, 2, 4, 5, 6, 7
_KINDS = {
    "text": K_TEXT,
    "integer": K_INT8,  # cast to bigint in the query: one binary form for int and bigint
    "uuid": K_UUID,
    "timestamp": K_TIMESTAMPTZ,
    "json": K_JSONB,
    "bytes": K_BYTEA,
}
# What a table holds for an id that more than one stored row carries. events is partitioned
# with primary key (id, received_at): its owner can store a second row with a sealed event's
# id, and a lookup by id would keep whichever row came last. Not 32 bytes, so it never equals
# a leaf hash; the checker reports the id as inserted (auditor.store.integrity).
DUPLICATE = b"duplicate"


class Pieces(NamedTuple):
    """What one read hands back (picklable: worker processes send it): ``ids`` native int64,
    sorted, each once, with ``hashes`` (32 bytes each); ``twice``: ids held by more than one
    row; ``extra_ids`` / ``extra_hashes``: the rows hashed the Python way, in any order."""

    ids: bytes
    hashes: bytes
    twice: bytes
    extra_ids: bytes
    extra_hashes: bytes


class CopyPlan:
    """One source's COPY statement and the field plan _leafcopy.c writes its rows by."""

    def __init__(self, source: str) -> None:
        spec = SOURCES[source]
        kinds = spec.kinds
        fields: list[tuple[bytes, int]] = []
        columns: list[sql.Composable] = [sql.Identifier("id")]
        for name in sorted([*spec.fields, "source"]):
            if name == "source":
                fields.append((f'"source":"{source}"'.encode(), K_CONST))
                continue
            kind = _KINDS[kinds[name]]
            fields.append((f'"{name}":'.encode(), kind))
            column: sql.Composable = sql.Identifier(name)
            if kind == K_INT8:
                column = sql.SQL("{}::int8").format(column)
            columns.append(column)
        self.fields = tuple(fields)
        self.columns = sql.SQL(", ").join(columns)
        self.table = spec.table.name
        self.query = LeafQuery(source)

    @staticmethod
    def covers(source: str) -> bool:
        return all(kind in _KINDS for kind in SOURCES[source].kinds.values())

    def statement(self, lo: int, hi: int) -> sql.Composed:
        return sql.SQL(
            "COPY (SELECT {} FROM {} WHERE id >= {} AND id <= {}) TO STDOUT (FORMAT binary)"
        ).format(self.columns, sql.Identifier(self.table), sql.Literal(lo), sql.Literal(hi))


_PLANS: dict[str, CopyPlan | None] = {}


def _plan(source: str) -> CopyPlan | None:
    if source not in _PLANS:
        _PLANS[source] = CopyPlan(source) if CopyPlan.covers(source) else None
    return _PLANS[source]


def pieces(conn: psycopg.Connection[Any], source: str, lo: int, hi: int) -> Pieces | None:
    """The leaf hashes of ``source``'s rows with lo <= id <= hi, or None when the fast path
    is off for it (see the module's note)."""
    encode = hash_copy
    plan = _plan(source)
    if encode is None or plan is None or conn.info.encoding != "utf-8":
        return None
    with conn.cursor() as cur, cur.copy(plan.statement(lo, hi)) as copy:
        data = b"".join(copy)
    ids, hashes, twice, left = encode(plan.fields, data)
    del data
    extra_ids, extra_hashes = b"", b""
    if left:
        wanted = array("q")
        wanted.frombytes(left)
        with conn.cursor(binary=True) as cur:
            rows = cur.execute(
                sql.SQL("SELECT {} FROM {} WHERE id = ANY(%s)").format(
                    plan.query.columns, sql.Identifier(plan.table)
                ),
                (list(wanted),),
            ).fetchall()
        extra_ids = array("q", [row[0] for row in rows]).tobytes()
        extra_hashes = b"".join(plan.query.hashes(rows))
    return Pieces(ids, hashes, twice, extra_ids, extra_hashes)


class Table:
    """One source's leaf hashes from one or more Pieces of ascending, disjoint id ranges."""

    def __init__(self, parts: Iterable[Pieces]) -> None:
        self.ids = array("q")
        hashes: list[bytes] = []
        self.twice: set[int] = set()
        self.extra: dict[int, bytes] = {}
        for part in parts:
            self.ids.frombytes(part.ids)
            hashes.append(part.hashes)
            twice = array("q")
            twice.frombytes(part.twice)
            self.twice.update(twice)
            extra = array("q")
            extra.frombytes(part.extra_ids)
            for at, source_id in enumerate(extra):
                if source_id in self.extra:
                    self.twice.add(source_id)
                self.extra[source_id] = part.extra_hashes[at * 32 : at * 32 + 32]
        self.hashes = b"".join(hashes)

    def get(self, source_id: int) -> bytes | None:
        if source_id in self.twice:
            return DUPLICATE
        at = bisect_left(self.ids, source_id)
        if at < len(self.ids) and self.ids[at] == source_id:
            return self.hashes[at * 32 : at * 32 + 32]
        return self.extra.get(source_id)

    def span(self, first: int, count: int) -> bytes | None:
        """The hashes of ids first .. first + count - 1 joined, when C hashed every one of
        them and each once; None otherwise (then ask id by id)."""
        last = first + count - 1
        for odd in (self.twice, self.extra):
            if odd and any(first <= source_id <= last for source_id in odd):
                return None
        at = bisect_left(self.ids, first)
        end = at + count - 1
        # ids are sorted and unique: first at ``at`` and last at ``end`` means every id
        # between them is there
        if end < len(self.ids) and self.ids[at] == first and self.ids[end] == last:
            return self.hashes[at * 32 : (end + 1) * 32]
        return None
