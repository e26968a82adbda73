"""verify's fast path: the leaf hashes of one source's rows in an id range from one binary
COPY, written and hashed by C (auditor/evidence/_leafcopy.c) with the GIL released.

PostgreSQL sends each column in its binary form (no to_char, no to_json, no concat: the
payload's jsonb text is all it still formats); C writes the leaf bytes (docs/evidence.md)
and their SHA-256, and answers with compact tables: ids sorted, their hashes concatenated,
the ids met twice, the ids it left to Python. Those few rows (a float in a payload, a key
beyond U+FFFF...) are read again and hashed by the careful encoder (auditor.store.sources,
the writer's), so their hashes are the reference's. Like leaf_sql's, these hashes are only
ever *compared* with the record, and a row that differs is asked again of the careful
encoder before it is called altered.

Off when the module is not built, with ``AUDITOR_NATIVE=0``, for sources with a column kind
C does not write (arrays, inet) and on a connection whose client encoding is not UTF-8:
then ``pieces`` returns None and the caller takes the leaf_sql path.
"""

from __future__ import annotations

import contextlib
import hashlib
import select
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import psycopg
from psycopg import pq, sql

from auditor.evidence import batches, native
from auditor.evidence.leaves import SOURCES
from auditor.store.sources import Hasher, select_ids

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

# _leafcopy.export_copy (an evidence export's rows: auditor/evidence/pack_rows.py).
ExportCopy = Callable[
    [
        tuple[tuple[bytes, int], ...],
        bytes,
        bytes,
        bytes,
        list[bytes | None],
        tuple[int, ...],
        int,
    ],
    tuple[bytes, bytes, bytes, bytes, list[int], list[int], set[str | None]],
]


def _load_export() -> ExportCopy | None:
    if hash_copy is None:
        return None
    from auditor.evidence import _leafcopy

    return getattr(_leafcopy, "export_copy", None)  # None: a build older than the source


# None: not built or switched off (benchmarks set it to None to compare in one run).
export_copy: ExportCopy | None = _load_export()


def batch_leaf_hash(joined: bytes) -> bytes:
    """A format-2 batch row's leaf hash over its joined leaves: by C (_leafcopy, 5.6 times
    less CPU, measured) while the fast path is on, else auditor.evidence.batches' (the
    reference, which tests/unit/test_leaf_copy.py compares it with)."""
    if hash_copy is not None:
        from auditor.evidence import _leafcopy

        return _leafcopy.batch_leaf_hash(joined)
    return batches.leaf_hash_of_joined(joined)


def batch_joined_paths(joined: bytes) -> list[bytes]:
    """Every leaf's audit path in a format-2 batch's tree (joined, bottom up): by C
    (_leafcopy) while the fast path is on, else auditor.evidence.batches' (the reference,
    which tests/unit/test_leaf_copy.py compares it with)."""
    if hash_copy is not None:
        from auditor.evidence import _leafcopy

        return _leafcopy.batch_paths(joined)
    return batches.joined_paths(batches.split(joined))


def leaf_mismatches(
    leaves: list[bytes | memoryview], hashes: list[bytes | memoryview | None]
) -> list[int]:
    """The indexes whose leaf's SHA-256 is not the hash given (None never matches): by C
    without the GIL while the fast path is on (an evidence export's reading thread runs
    meanwhile), else with hashlib."""
    if hash_copy is not None:
        from auditor.evidence import _leafcopy

        return _leafcopy.leaf_mismatches(leaves, hashes)
    return [
        index
        for index, (leaf, hash_) in enumerate(zip(leaves, hashes, strict=True))
        if hash_ is None or hashlib.sha256(leaf).digest() != hash_
    ]


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
    statement = plan.statement(lo, hi)
    if conn.info.transaction_status == pq.TransactionStatus.INTRANS:
        data = _copy_out(conn, statement.as_bytes(conn))
    else:  # psycopg begins the transaction (the snapshot): its own COPY, a call per row
        with conn.cursor() as cur, cur.copy(statement) as copy:
            data = b"".join(copy)
    ids, hashes, twice, left = encode(plan.fields, data)
    del data
    extra_ids, extra_hashes = b"", b""
    if left:
        wanted = array("q")
        wanted.frombytes(left)
        with conn.cursor() as cur:
            rows = cur.execute(select_ids(source), (list(wanted),)).fetchall()
        hasher = Hasher(source)
        done = list(hasher.leaves(rows))
        extra_ids = array("q", [source_id for source_id, _ in done]).tobytes()
        extra_hashes = b"".join(leaf for _, leaf in done)
    return Pieces(ids, hashes, twice, extra_ids, extra_hashes)


def copy_bytes(conn: psycopg.Connection[Any], statement: sql.Composed) -> bytes:
    """The whole output of a COPY ... TO STDOUT: read by C without the GIL (_copy_out) in
    the caller's open transaction, else by psycopg (which begins the transaction)."""
    if conn.info.transaction_status == pq.TransactionStatus.INTRANS:
        return _copy_out(conn, statement.as_bytes(conn))
    with conn.cursor() as cur, cur.copy(statement) as copy:
        return b"".join(copy)


def _copy_out(conn: psycopg.Connection[Any], statement: bytes) -> bytes:
    """The whole output of a COPY ... TO STDOUT, read from libpq directly: psycopg's Copy
    costs ~14 us of Python per row (a generator and a wait per CopyData message), this ~3
    (measured, 20,000 sample events). The caller's transaction is open (INTRANS), so no BEGIN
    is owed; the connection's lock keeps other threads off it meanwhile. libpq is only asked
    what it has buffered (non-blocking calls); the waits for the socket are select()s, which
    release the GIL."""
    pg = conn.pgconn
    chunks: list[Any] = []
    with conn.lock:
        pg.send_query(statement)
        while pg.flush():
            select.select([], [pg.socket], [])
        result = _result(pg)
        if result is None or result.status != pq.ExecStatus.COPY_OUT:
            _drain(pg)
            raise psycopg.DatabaseError(_message(pg, result))
        reader = _reader()
        address = getattr(pg, "pgconn_ptr", None)  # not in psycopg's abstract PGconn
        if reader is not None and isinstance(address, int):
            try:
                chunks.append(reader[0](address, reader[1]))
            except OSError as exc:
                _drain(pg)
                raise psycopg.OperationalError(f"{exc}: {_message(pg, None)}") from exc
        else:
            _read_messages(pg, chunks)
        result = _result(pg)
        ok = result is not None and result.status == pq.ExecStatus.COMMAND_OK
        message = "" if ok else _message(pg, result)
        _drain(pg)
        if not ok:
            raise psycopg.DatabaseError(message)
    return b"".join(chunks)


def _read_messages(pg: pq.abc.PGconn, chunks: list[Any]) -> None:
    """The CopyData messages by psycopg's libpq wrapper, a Python call per row."""
    while True:
        size, buffer = pg.get_copy_data(1)
        if size > 0:
            chunks.append(buffer)
        elif size == 0:  # nothing whole buffered yet
            select.select([pg.socket], [], [])
            pg.consume_input()
        elif size == -1:
            return
        else:
            _drain(pg)
            raise psycopg.OperationalError(_message(pg, None))


ReadCopy = Callable[[int, str], bytes]
_READER: list[tuple[ReadCopy, str] | None] = []


def _reader() -> tuple[ReadCopy, str] | None:
    """_leafcopy.read_copy and the path of the one libpq loaded in this process (psycopg's),
    or None: then the messages are read in Python (_read_messages)."""
    if not _READER:
        _READER.append(None)
        if hash_copy is not None:
            from auditor.evidence import _leafcopy

            paths = set()
            with contextlib.suppress(OSError), open("/proc/self/maps") as maps:
                for line in maps:
                    path = line.split(None, 5)[-1].strip()
                    if "/libpq" in path and ".so" in path:
                        paths.add(path)
            if len(paths) == 1:
                _READER[0] = (_leafcopy.read_copy, paths.pop())
    return _READER[0] if hash_copy is not None else None


def _result(pg: pq.abc.PGconn) -> pq.abc.PGresult | None:
    while pg.is_busy():
        select.select([pg.socket], [], [])
        pg.consume_input()
    return pg.get_result()


def _drain(pg: pq.abc.PGconn) -> None:
    while _result(pg) is not None:
        pass


def _message(pg: pq.abc.PGconn, result: pq.abc.PGresult | None) -> str:
    raw = result.error_message if result is not None else b""
    return (raw or pg.error_message or b"COPY failed").decode("utf-8", "replace").strip()


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
