"""Evidence packs: the events a query matches, provably in the signed record.

A pack is a directory (or the same files in a zip):

- ``events.ndjson``: one line per event, the line being the event's *leaf bytes* (RFC 8785
  JSON of its audited fields, exactly what the record hashed), in record order;
- ``events.csv``: the same rows as CSV, for people (position first, payload as JSON text);
- ``coverage.ndjson``: the closed coverage intervals of the accounts over the range, also as
  leaf bytes;
- ``proofs.ndjson``: per line of the two NDJSON files, in order, ``{"file", "line",
  "position", "path"}`` with path the RFC 6962 audit path (base64 of the concatenated 32-byte
  hashes, bottom up) of leaf ``position - 1`` in the tree of ``checkpoint.tree_size``;
- ``checkpoint.json``: the signed checkpoint the proofs lead to;
- ``manifest.json``: query, filters, schema version, who and when, counts, SHA-256 of every
  other file, coverage status (complete, or every gap with its reason), rows not proven (not
  yet sealed, or newer than every checkpoint), signed like a checkpoint (the signature covers
  the RFC 8785 bytes of the manifest without its "signature" member).

auditor/evidence_verify.py checks all of it with the public key alone.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import json
import tempfile
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, BinaryIO

import psycopg
from psycopg import sql

from auditor.evidence import batches, checkpoints, keys, leaves, tiles
from auditor.evidence.canonical import canonical_bytes
from auditor.evidence.native import leafc
from auditor.evidence.pack_csv import HEADER, CsvRows
from auditor.evidence.pack_rows import Encoded, EventRows, splice
from auditor.evidence.pack_zip import zip_chunks
from auditor.evidence.pgtiles import PgTileStore
from auditor.retention.receipts import mark_purged
from auditor.store import coverage_queries, leaf_copy
from auditor.store.leaf_sql import LeafQuery
from auditor.store.sources import Hasher, rows_by_id

FORMAT = "auditor-evidence-pack/1"
CHUNK_ROWS = 5000  # rows read, encoded and handed on at a time
CSV_PIECE = 1 << 16  # events.csv is handed on from its spool file in pieces of this size
FILES = ("events.ndjson", "events.csv", "coverage.ndjson", "proofs.ndjson", "checkpoint.json")
# audit paths by position in the checkpoint's tree; every slot's path by format-2 batch
ProofData = tuple[dict[int, bytes], dict[int, list[bytes]]]


class NothingToProve(LookupError):
    """No checkpoint covers any of the rows and none could be made."""


@dataclass(frozen=True)
class Query:
    """Exactly one of: interaction, reference_id, or account with start and end."""

    interaction: str | None = None
    reference_id: str | None = None
    account: str | None = None
    start: datetime | None = None
    end: datetime | None = None

    def __post_init__(self) -> None:
        chosen = [self.interaction is not None, self.reference_id is not None]
        chosen.append(self.account is not None)
        if sum(chosen) != 1:
            raise ValueError("choose one of --interaction, --reference-id or --account")
        if self.account is not None and (self.start is None or self.end is None):
            raise ValueError("--account needs --from and --to")
        if self.start and self.end and self.start >= self.end:
            raise ValueError("--from must be before --to")

    def filters(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.interaction is not None:
            out["interaction_id"] = self.interaction
        if self.reference_id is not None:
            out["reference_id"] = self.reference_id
        if self.account is not None:
            out["account"] = self.account
        if self.start is not None:
            out["from"] = leaves.timestamp(self.start)
        if self.end is not None:
            out["to"] = leaves.timestamp(self.end)
        return out

    def where(self) -> tuple[sql.Composable, list[Any]]:
        if self.interaction is not None:
            return sql.SQL("e.interaction_id = %s"), [self.interaction]
        if self.reference_id is not None:
            return sql.SQL("e.reference_id = %s"), [self.reference_id]
        # In UTC: COPY takes no parameters, so psycopg writes them into the statement, and
        # PostgreSQL refuses an offset beyond 15:59 there (+16:00 is valid ISO 8601).
        start = self.start.astimezone(UTC) if self.start else None
        end = self.end.astimezone(UTC) if self.end else None
        return (
            sql.SQL("e.account = %s AND e.received_at >= %s AND e.received_at < %s"),
            [self.account, start, end],
        )


@dataclass
class Pack:
    """A pack held in memory: the files' bytes and the manifest (tests, small packs)."""

    files: dict[str, bytes] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)

    def write(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for name, data in self.files.items():
            (directory / name).write_bytes(data)

    def zip_bytes(self) -> bytes:
        return b"".join(zip_chunks(iter(self.files.items())))


_AT = """to_char(e.received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""
# Columns of _select before the leaf pieces: the record's position and leaf hash, then what
# _Seen keeps of an event (its time as the leaf writes it, its account).
_POSITION, _LEAF_HASH, _RECEIVED_AT, _ACCOUNT, _PIECES = 0, 1, 2, 3, 4


def _select(source: str, table: str, where: sql.Composable) -> sql.Composed:
    """(position or None, leaf hash or None, received_at, account, id, *leaf pieces) of the
    matching rows, in record order (unsealed last); the pieces as auditor.store.leaf_sql
    writes them (the same as verify reads them with)."""
    events = source == "event"
    if events:  # as auditor.evidence.pack_rows gives them, in one query (tests compare)
        return sql.SQL(
            f"SELECT {batches.EVENT_POSITION}, {batches.EVENT_LEAF_HASH},"
            " {}, e.account, {}, coalesce(e.id - b.source_id, -1),"
            f" coalesce(b.leaf_count, 0) FROM events AS e{batches.EVENT_PLACE_JOIN}"
            " WHERE {} ORDER BY 1 NULLS LAST, e.id"
        ).format(sql.SQL(_AT), LeafQuery(source, alias="e").columns, where)
    return sql.SQL(
        "SELECT r.position, r.leaf_hash, {}, {}, {} FROM {} AS e"
        " LEFT JOIN record AS r ON r.source = {} AND r.source_id = e.id"
        " WHERE {} ORDER BY r.position NULLS LAST, e.id"
    ).format(
        sql.SQL(_AT if events else "NULL"),
        sql.SQL("e.account" if events else "NULL"),
        LeafQuery(source, alias="e").columns,
        sql.Identifier(table),
        sql.Literal(source),
        where,
    )


@dataclass
class Plan:
    """What is settled before the first byte: the query, the checkpoint the proofs lead to,
    who and when. ``prepare`` raises what would otherwise fail half-way."""

    query: Query
    checkpoint: checkpoints.Checkpoint
    signer: keys.Signer
    made_by: str
    made_at: datetime


def prepare(
    conn: psycopg.Connection[Any],
    query: Query,
    signer: keys.Signer,
    *,
    made_by: str,
    checkpoint: checkpoints.Checkpoint | None = None,
    now: datetime | None = None,
) -> Plan:
    """Settle the checkpoint (default: the latest) in the caller's transaction, which should
    be REPEATABLE READ: the pack reads the events, then the coverage and the tree."""
    if checkpoint is None:
        checkpoint = checkpoints.latest(conn)
    if checkpoint is None:
        raise NothingToProve("no checkpoint exists yet: make one with `auditor checkpoint make`")
    return Plan(query, checkpoint, signer, made_by, now or datetime.now(UTC))


class PackStream:
    """The pack's files as (name, bytes) pieces, every file's pieces in a row, in FILES order
    and manifest.json last; read from server-side cursors ``chunk_rows`` (CHUNK_ROWS) rows
    at a time, so memory stays flat but for 8 bytes per event (its position, for the
    proofs) and the list of rows not proven; events.csv, written from the same rows as
    events.ndjson, and the events' lines of proofs.ndjson, made as their chunks go by, wait
    in spool files (memory up to CSV_SPOOL_MEMORY each, then disk) until their turn.
    ``manifest`` is set once the last piece is out. Run it in a REPEATABLE READ transaction
    (see prepare)."""

    CSV_SPOOL_MEMORY = 8 << 20

    def __init__(
        self, conn: psycopg.Connection[Any], plan: Plan, chunk_rows: int | None = None
    ) -> None:
        self.conn = conn
        self.plan = plan
        self.chunk_rows = chunk_rows or CHUNK_ROWS
        self.manifest: dict[str, Any] = {}
        self.rows_out = 0  # events written to events.ndjson so far
        self.proven = 0

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        conn, plan = self.conn, self.plan
        where, params = plan.query.where()
        # times in UTC, in the CSV as in the leaves
        conn.execute("SET LOCAL timezone = 'UTC'")
        digests = {name: hashlib.sha256() for name in FILES}

        def file(name: str, chunks: Iterable[bytes]) -> Iterator[tuple[str, bytes]]:
            yield name, b""  # the file exists even when empty
            for chunk in chunks:
                digests[name].update(chunk)
                yield name, chunk

        events = _Seen(events=True)
        # the events' proof lines are made as their chunks go by, while the reading threads
        # fetch and write the next chunks (at the end they waited alone: ~a quarter of an
        # export's time, measured), and wait in a spool file like events.csv
        with tempfile.SpooledTemporaryFile(max_size=self.CSV_SPOOL_MEMORY) as event_proofs:
            with tempfile.SpooledTemporaryFile(max_size=self.CSV_SPOOL_MEMORY) as csv:
                csv.write(HEADER)
                yield from file(
                    "events.ndjson",
                    self._lines("event", "events", where, params, events, csv, event_proofs),
                )
                csv.seek(0)
                yield from file("events.csv", iter(lambda: csv.read(CSV_PIECE), b""))
            start, end, accounts = _range(plan.query, events)
            cov = coverage_queries.coverage(conn, start, end, accounts) if accounts else None
            intervals = _Seen(events=False)
            cov_where = sql.SQL(
                "e.account = ANY(%s) AND e.ended_at IS NOT NULL"
                " AND e.started_at < %s AND e.ended_at > %s"
            )
            cov_lines = self._lines(
                "coverage", "coverage_intervals", cov_where, [accounts, end, start], intervals
            )
            yield from file("coverage.ndjson", cov_lines if accounts else ())
            size = plan.checkpoint.tree_size
            event_proofs.seek(0)
            proofs = itertools.chain(
                iter(lambda: event_proofs.read(CSV_PIECE), b""),
                self._proofs((("coverage.ndjson", intervals),)),
            )
            yield from file("proofs.ndjson", proofs)
        checkpoint_file = json.dumps(plan.checkpoint.to_json(), indent=2).encode() + b"\n"
        yield from file("checkpoint.json", (checkpoint_file,))
        unproven = events.unproven("events.ndjson", size)
        unproven += intervals.unproven("coverage.ndjson", size)
        manifest = {
            "format": FORMAT,
            "query": plan.query.filters(),
            "schema_version": _schema_version(conn),
            "made_at": leaves.timestamp(plan.made_at),
            "made_by": plan.made_by,
            "counts": {
                "events": events.count,
                "coverage_intervals": intervals.count,
                "proven": self.proven,
                "unproven": len(unproven),
            },
            "files": {name: digest.hexdigest() for name, digest in digests.items()},
            "checkpoint": {"tree_size": size, "root": plan.checkpoint.to_json()["root"]},
            # retention (docs/retention.md): months of the range whose rows were purged
            "coverage": mark_purged(conn, _coverage_status(cov, start, end), start, end),
            "unproven": unproven,
            "key_id": plan.signer.key_id,
        }
        signature = plan.signer.sign(canonical_bytes(manifest))
        manifest["signature"] = base64.b64encode(signature).decode("ascii")
        self.manifest = manifest
        yield "manifest.json", json.dumps(manifest, indent=2).encode() + b"\n"

    def _lines(
        self,
        source: str,
        table: str,
        where: sql.Composable,
        params: list[Any],
        seen: _Seen,
        csv: IO[bytes] | None = None,
        proofs: IO[bytes] | None = None,
    ) -> Iterator[bytes]:
        """The leaf lines of the matching rows, a chunk of rows at a time; for events, their
        CSV lines from the same rows into ``csv``.

        A line is the fast leaf (auditor.store.leaf_sql; for the one-jsonb-column events
        the C helper ``leaf_lines`` where built, the same bytes) when its hash is the one
        sealed, which proves it the canonical bytes; otherwise (not sealed yet, a float in
        the payload, or an altered row) the row is read again and encoded the careful way."""
        query = LeafQuery(source, alias="e")
        careful = Hasher(source)
        at = _PIECES + 1
        native = leafc.leaf_lines if leafc is not None and len(query.json_keys) == 1 else None
        key = query.json_keys[0] if query.json_keys else b""
        csv_rows = CsvRows(_PIECES) if csv is not None else None
        prefetch = self._key_proof_data if proofs is not None else None
        for chunk in self._chunks(source, table, where, params, prefetch):
            if isinstance(chunk, Encoded):  # written and checked by C (pack_rows)
                seen.add_keys(chunk.keys, chunk.accounts)
                self.rows_out += len(chunk.keys)
                careful_lines = {
                    index: self._careful(source, careful, chunk.keys[index][2]) + b"\n"
                    for index in chunk.mismatched
                }
                if careful_lines:
                    yield splice(chunk.ndjson, chunk.ends, careful_lines)[0]
                else:
                    yield chunk.ndjson
                if csv is not None:
                    csv.write(chunk.csv)
                if proofs is not None:
                    name = f"{table}.ndjson"
                    proofs.write(self._chunk_proofs(name, seen, len(chunk.keys), chunk.extra))
                continue
            rows = chunk
            seen.add(rows)
            if source == "event":
                self.rows_out += len(rows)
            fast = native(list(rows), at, key) if native is not None else None
            encoded: list[bytes | memoryview] = [
                query.join(row, at) if leaf is None else leaf  # None: left to the Python join
                for row, leaf in zip(rows, fast or [None] * len(rows), strict=True)
            ]
            # hashed without the GIL (where C is built): the reading thread runs meanwhile
            for index in leaf_copy.leaf_mismatches(encoded, [row[_LEAF_HASH] for row in rows]):
                encoded[index] = b"\x00" + self._careful(source, careful, rows[index][_PIECES])
            lines: list[bytes | memoryview] = [memoryview(leaf)[1:] for leaf in encoded]
            lines.append(b"")
            yield b"\n".join(lines)
            if csv is not None and csv_rows is not None:
                csv.write(csv_rows.lines(rows))
            if proofs is not None:
                proofs.write(self._chunk_proofs(f"{table}.ndjson", seen, len(rows)))

    def _careful(self, source: str, careful: Hasher, source_id: int) -> bytes:
        """A row's canonical JSON by the careful encoder, read again by id: for a line that
        is not its sealed leaf (not sealed yet, a float in the payload, an altered row)."""
        full = rows_by_id(self.conn, source, source_id, source_id)[source_id]
        return careful.encoder.encode(full)

    def _chunks(
        self,
        source: str,
        table: str,
        where: sql.Composable,
        params: list[Any],
        prefetch: Callable[[list[tuple[Any, ...]], dict[int, bytes | None]], Any] | None = None,
    ) -> Iterator[Sequence[tuple[Any, ...]] | Encoded]:
        """Rows as _select gives them, a chunk at a time. Events (many, wide) come through
        pack_rows: sorted by a narrow key and read ahead on a thread, and where C reads
        their binary COPY, already written (Encoded)."""
        if source == "event":
            yield from EventRows(self.conn, where, params, self.chunk_rows, prefetch).encoded()
            return
        with self.conn.cursor(name=f"pack_{source}", binary=True) as cur:
            cur.itersize = self.chunk_rows
            cur.execute(_select(source, table, where), params)
            while rows := cur.fetchmany(self.chunk_rows):
                yield rows

    def _proofs(self, files: Sequence[tuple[str, _Seen]]) -> Iterator[bytes]:
        """proofs.ndjson, a chunk of proven lines at a time; each chunk reads the tiles it
        needs afresh (a few queries), so no cache grows with the pack."""
        size = self.plan.checkpoint.tree_size
        for name, seen in files:
            part: list[tuple[int, int, int]] = []
            for line, (position, slot) in enumerate(
                zip(seen.positions, seen.slots, strict=True), start=1
            ):
                if 0 < position <= size:
                    part.append((line, position, slot))
                    if len(part) == self.chunk_rows:
                        yield self._proof_lines(name, part)
                        part = []
            if part:
                yield self._proof_lines(name, part)

    def _chunk_proofs(
        self, name: str, seen: _Seen, count: int, data: ProofData | None = None
    ) -> bytes:
        """The proof lines of the last ``count`` lines ``seen`` holds: what _proofs writes
        for them (each line's proof stands alone, whatever part it is made in); ``data``:
        what _proof_data read for them, if it was read already."""
        size = self.plan.checkpoint.tree_size
        first = seen.count - count
        part = [
            (first + offset + 1, position, slot)
            for offset, (position, slot) in enumerate(
                zip(seen.positions[first:], seen.slots[first:], strict=True)
            )
            if 0 < position <= size
        ]
        return self._proof_lines(name, part, data) if part else b""

    def _proof_data(
        self,
        positions: Iterable[int],
        batched: Iterable[int],
        known: Mapping[int, bytes | None] | None = None,
    ) -> ProofData:
        """The audit paths of ``positions`` (proven ones) in the checkpoint's tree and of
        every slot of the format-2 batches among them (``batched``): a few queries (the
        tiles these positions need, the batches' `leaves` not ``known`` already)."""
        unique = sorted(set(positions))
        if not unique:
            return {}, {}
        view = tiles.TreeView(PgTileStore(self.conn), self.plan.checkpoint.tree_size)
        paths = dict(zip(unique, view.joined_paths([p - 1 for p in unique]), strict=True))
        inside: dict[int, list[bytes]] = {}
        wanted = sorted(set(batched))
        if known is not None:
            inside = {
                position: leaf_copy.batch_joined_paths(leaves)
                for position in wanted
                if (leaves := known.get(position)) is not None
            }
            wanted = [position for position in wanted if position not in known]
        if wanted:
            for position, leaves in self.conn.execute(
                "SELECT position, leaves FROM record WHERE position = ANY(%s) AND format = 2",
                (wanted,),
            ):
                inside[position] = leaf_copy.batch_joined_paths(bytes(leaves))
        return paths, inside

    def _key_proof_data(
        self, keys: Sequence[tuple[Any, ...]], batch_leaves: Mapping[int, bytes | None]
    ) -> ProofData:
        """_proof_data for the events of pack_rows' keys, read on its reading thread: the
        thread that holds the connection for the chunk's COPY anyway, so the thread that
        writes the files does not wait for it (measured: ~0.9 s of 3.5 for 100,000 events
        waiting behind the COPYs). ``batch_leaves``: the chunk's batch rows' `leaves` as
        pack_rows read them for the leaf hashes, not read a second time here."""
        size = self.plan.checkpoint.tree_size
        proven = [key for key in keys if key[0] is not None and 0 < key[0] <= size]
        return self._proof_data(
            (key[0] for key in proven), (key[0] for key in proven if key[4] >= 0), batch_leaves
        )

    def _proof_lines(
        self, name: str, part: list[tuple[int, int, int]], data: ProofData | None = None
    ) -> bytes:
        """Proof lines; an event sealed in a format-2 batch row also gets its path inside
        the batch (``batch_index``, ``batch_size``, ``batch_path``: docs/evidence.md)."""
        if data is None:
            data = self._proof_data(
                (position for _, position, _ in part),
                (position for _, position, slot in part if slot >= 0),
            )
        paths, inside = data
        self.proven += len(part)
        # Each position's line head once: every event of a format-2 batch shares its
        # position and path. File names are fixed ASCII and the rest numbers and base64: no
        # escaping needed.
        file_name = name.encode()
        encode = binascii.b2a_base64
        heads = {
            position: b',"position":%d,"path":"%s"' % (position, encode(path, newline=False))
            for position, path in paths.items()
        }
        sizes = {position: len(slots) for position, slots in inside.items()}
        out = []
        for line, position, slot in part:
            text = b'{"file":"%s","line":%d%s' % (file_name, line, heads[position])
            if slot >= 0:
                text += b',"batch_index":%d,"batch_size":%d,"batch_path":"%s"}\n' % (
                    slot,
                    sizes[position],
                    encode(inside[position][slot], newline=False),
                )
            else:
                text += b"}\n"
            out.append(text)
        return b"".join(out)


class _Seen:
    """What the pack remembers of the rows it wrote: positions (0: not sealed), and for
    events the times and accounts (the coverage needs them)."""

    def __init__(self, *, events: bool) -> None:
        self.events = events
        self.positions = array("q")
        self.slots = array("q")  # in its format-2 batch; -1: a record row of its own
        self.count = 0
        self.first_at: str | None = None
        self.last_at: str | None = None
        self.accounts: set[str] = set()

    def add(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Rows as _select gives them."""
        self.count += len(rows)
        self.positions.extend(0 if row[_POSITION] is None else row[_POSITION] for row in rows)
        if not self.events:
            self.slots.extend([-1] * len(rows))
            return
        self.slots.extend(row[-2] for row in rows)  # pack_rows: (..., slot, batch size)
        at, acc = _RECEIVED_AT, _ACCOUNT
        times = [row[at] for row in rows]  # fixed-width UTC text: text order is time order
        self._widen(min(times), max(times))
        self.accounts.update(row[acc] for row in rows)

    def add_keys(self, keys: Sequence[tuple[Any, ...]], accounts: set[str | None]) -> None:
        """Events as pack_rows.Encoded gives them: the order's keys (position, leaf hash,
        id, received_at, slot, batch size) and the chunk's accounts."""
        self.count += len(keys)
        self.positions.extend(0 if key[0] is None else key[0] for key in keys)
        self.slots.extend(key[4] for key in keys)
        times = [key[3] for key in keys]
        self._widen(leaves.timestamp(min(times)), leaves.timestamp(max(times)))
        self.accounts.update(accounts)  # type: ignore[arg-type]  # as add(): None if NULL

    def _widen(self, low: str, high: str) -> None:
        self.first_at = low if self.first_at is None else min(self.first_at, low)
        self.last_at = high if self.last_at is None else max(self.last_at, high)

    def unproven(self, name: str, size: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for line, position in enumerate(self.positions, start=1):
            if position == 0:
                out.append({"file": name, "line": line, "reason": "not yet sealed"})
            elif position > size:
                out.append(
                    {
                        "file": name,
                        "line": line,
                        "position": position,
                        "reason": f"newer than checkpoint {size}",
                    }
                )
        return out


def export(
    conn: psycopg.Connection[Any],
    query: Query,
    signer: keys.Signer,
    *,
    made_by: str,
    checkpoint: checkpoints.Checkpoint | None = None,
    now: datetime | None = None,
) -> Pack:
    """The whole pack in memory (about 3 KB of files a GWS event); PackStream for large
    ones."""
    plan = prepare(conn, query, signer, made_by=made_by, checkpoint=checkpoint, now=now)
    stream = PackStream(conn, plan)
    files: dict[str, bytearray] = {}
    for name, data in stream:
        files.setdefault(name, bytearray()).extend(data)
    return Pack({name: bytes(data) for name, data in files.items()}, stream.manifest)


def write_directory(stream: Iterable[tuple[str, bytes]], directory: Path) -> None:
    """The pieces written to files of a new directory as they come."""
    directory.mkdir(parents=True, exist_ok=True)
    current: str | None = None
    out: BinaryIO | None = None
    try:
        for name, data in stream:
            if name != current:
                if out is not None:
                    out.close()
                out = (directory / name).open("xb")
                current = name
            assert out is not None
            out.write(data)
    finally:
        if out is not None:
            out.close()


def _range(query: Query, events: _Seen) -> tuple[datetime, datetime, list[str]]:
    if query.account is not None and query.start and query.end:
        return query.start, query.end, [query.account]
    if events.first_at is None or events.last_at is None:
        now = datetime.now(UTC)
        return now, now, []
    first, last = datetime.fromisoformat(events.first_at), datetime.fromisoformat(events.last_at)
    return first, last, sorted(events.accounts)


def _coverage_status(
    cov: coverage_queries.Coverage | None, start: datetime, end: datetime
) -> dict[str, Any]:
    status: dict[str, Any] = {"from": leaves.timestamp(start), "to": leaves.timestamp(end)}
    if cov is None:
        status["status"] = "empty"
        status["gaps"] = []
        return status
    gaps = []
    for account in cov.accounts:
        for gap in account.gaps:
            before = [i for i in account.intervals if i.end_at <= gap.start]
            reason = (
                f"not listening: the interval before ended ({before[-1].end_reason})"
                if before and before[-1].end_reason
                else "not listening: no coverage interval"
            )
            gaps.append(
                {
                    "account": gap.account,
                    "from": leaves.timestamp(gap.start),
                    "to": leaves.timestamp(gap.end),
                    "reason": reason,
                }
            )
    status["status"] = "complete" if not gaps else "gaps"
    status["gaps"] = gaps
    return status


def _schema_version(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return str(row[0]) if row else "unknown"
