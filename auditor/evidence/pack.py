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
import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from auditor.evidence import checkpoints, keys, leaves, tiles
from auditor.evidence.canonical import canonical_bytes
from auditor.evidence.pgtiles import PgTileStore
from auditor.retention.receipts import mark_purged
from auditor.store import coverage_queries
from auditor.store.sources import _FORMATTED as PG_FORMATTED

FORMAT = "auditor-evidence-pack/1"
FILES = ("events.ndjson", "events.csv", "coverage.ndjson", "proofs.ndjson", "checkpoint.json")


class TooLarge(ValueError):
    """More events match than one pack may hold here."""


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
        return (
            sql.SQL("e.account = %s AND e.received_at >= %s AND e.received_at < %s"),
            [self.account, self.start, self.end],
        )


@dataclass
class Pack:
    """What was written: the files' bytes, the manifest, and the counts."""

    files: dict[str, bytes] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)

    def write(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for name, data in self.files.items():
            (directory / name).write_bytes(data)

    def zip_bytes(self) -> bytes:
        import zipfile

        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in self.files.items():
                archive.writestr(name, data)
        return buffer.getvalue()


def _columns(source: str, alias: str) -> sql.Composable:
    """The audited columns as the leaf writes them, formatted by PostgreSQL (the same
    formats as verify reads them with: auditor.store.sources)."""
    kinds = leaves.SOURCES[source].kinds
    return sql.SQL(", ").join(
        sql.SQL(PG_FORMATTED.get(kind, "{}")).format(
            sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(name))
        )
        for name, kind in kinds.items()
    )


def _rows(
    conn: psycopg.Connection[Any],
    source: str,
    table: str,
    where: sql.Composable,
    params: list[Any],
    limit: int | None = None,
) -> list[tuple[Any, ...]]:
    """(position or None, *fields) of the matching rows, in record order (unsealed last)."""
    query = sql.SQL(
        "SELECT r.position, {} FROM {} AS e"
        " LEFT JOIN record AS r ON r.source = {} AND r.source_id = e.id"
        " WHERE {} ORDER BY r.position NULLS LAST, e.id{}"
    ).format(
        _columns(source, "e"),
        sql.Identifier(table),
        sql.Literal(source),
        where,
        sql.SQL("") if limit is None else sql.SQL(" LIMIT {}").format(sql.Literal(limit)),
    )
    with conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall()


def export(
    conn: psycopg.Connection[Any],
    query: Query,
    signer: keys.Signer,
    *,
    made_by: str,
    checkpoint: checkpoints.Checkpoint | None = None,
    now: datetime | None = None,
    max_events: int | None = None,
) -> Pack:
    """Build a pack in the caller's transaction, proven against checkpoint (default: the
    latest). Rows the checkpoint does not hold are exported and listed as not proven. The
    pack is built in memory (about 3 KB of files a GWS event): max_events refuses more."""
    where, params = query.where()
    # times in UTC, in the CSV as in the leaves
    conn.execute("SET LOCAL timezone = 'UTC'")
    limit = None if max_events is None else max_events + 1
    events = _rows(conn, "event", "events", where, params, limit)
    if max_events is not None and len(events) > max_events:
        raise TooLarge(f"more than {max_events:,} events match: narrow the query or use the CLI")
    start, end, accounts = _range(query, events)
    cov = coverage_queries.coverage(conn, start, end, accounts) if accounts else None
    cov_rows: list[tuple[Any, ...]] = []
    if accounts:
        cov_where = sql.SQL(
            "e.account = ANY(%s) AND e.ended_at IS NOT NULL"
            " AND e.started_at < %s AND e.ended_at > %s"
        )
        cov_rows = _rows(conn, "coverage", "coverage_intervals", cov_where, [accounts, end, start])
    if checkpoint is None:
        checkpoint = checkpoints.latest(conn)
    if checkpoint is None:
        raise NothingToProve("no checkpoint exists yet: make one with `auditor checkpoint make`")
    size = checkpoint.tree_size

    event_lines = _leaf_lines("event", events)
    coverage_lines = _leaf_lines("coverage", cov_rows)
    proven: list[tuple[str, int, int]] = []  # (file, line, position)
    unproven: list[dict[str, Any]] = []
    for name, rows in (("events.ndjson", events), ("coverage.ndjson", cov_rows)):
        for line, row in enumerate(rows, start=1):
            position = row[0]
            if position is None:
                unproven.append({"file": name, "line": line, "reason": "not yet sealed"})
            elif position > size:
                unproven.append(
                    {
                        "file": name,
                        "line": line,
                        "position": position,
                        "reason": f"newer than checkpoint {size}",
                    }
                )
            else:
                proven.append((name, line, position))
    view = tiles.TreeView(PgTileStore(conn), size)
    paths = view.joined_paths([position - 1 for _, _, position in proven])
    # file names are fixed ASCII and the rest numbers and base64: no escaping needed
    proof_lines = [
        b'{"file":"%s","line":%d,"position":%d,"path":"%s"}\n'
        % (name.encode(), line, position, base64.b64encode(path))
        for (name, line, position), path in zip(proven, paths, strict=True)
    ]
    files = {
        "events.ndjson": b"".join(event_lines),
        "events.csv": _csv(conn, events),
        "coverage.ndjson": b"".join(coverage_lines),
        "proofs.ndjson": b"".join(proof_lines),
        "checkpoint.json": json.dumps(checkpoint.to_json(), indent=2).encode() + b"\n",
    }
    manifest = {
        "format": FORMAT,
        "query": query.filters(),
        "schema_version": _schema_version(conn),
        "made_at": leaves.timestamp(now or datetime.now(UTC)),
        "made_by": made_by,
        "counts": {
            "events": len(events),
            "coverage_intervals": len(cov_rows),
            "proven": len(proven),
            "unproven": len(unproven),
        },
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
        "checkpoint": {"tree_size": size, "root": checkpoint.to_json()["root"]},
        # retention (docs/retention.md): months of the range whose rows were purged
        "coverage": mark_purged(conn, _coverage_status(cov, start, end), start, end),
        "unproven": unproven,
        "key_id": signer.key_id,
    }
    signature = signer.sign(canonical_bytes(manifest))
    manifest["signature"] = base64.b64encode(signature).decode("ascii")
    files["manifest.json"] = json.dumps(manifest, indent=2).encode() + b"\n"
    return Pack(files, manifest)


def _leaf_lines(source: str, rows: Sequence[tuple[Any, ...]]) -> list[bytes]:
    encoder = leaves.LeafEncoder(source, formatted=True)
    return [encoder.encode(row[1:]) + b"\n" for row in rows]


def _csv(conn: psycopg.Connection[Any], rows: Sequence[tuple[Any, ...]]) -> bytes:
    """The exported events as CSV, written by PostgreSQL (COPY, a quarter of the client CPU
    of Python's csv) for the very rows of events.ndjson, in the same order: their ids are
    given, so no newer row slips in. Times in UTC (set by export)."""
    fields = leaves.SOURCES["event"].fields
    at = fields.index("id") + 1
    columns = sql.SQL(", ").join(sql.SQL("e.{}").format(sql.Identifier(n)) for n in fields)
    statement = sql.SQL(
        "COPY (SELECT r.position, {} FROM events AS e"
        " LEFT JOIN record AS r ON r.source = 'event' AND r.source_id = e.id"
        " WHERE e.id = ANY({}) ORDER BY r.position NULLS LAST, e.id)"
        " TO STDOUT WITH (FORMAT csv, HEADER)"
    ).format(columns, sql.Literal([row[at] for row in rows]))
    out = bytearray()
    with conn.cursor() as cur, cur.copy(statement) as copy:
        for chunk in copy:
            out += chunk
    return bytes(out)


def _range(query: Query, events: Sequence[tuple[Any, ...]]) -> tuple[datetime, datetime, list[str]]:
    fields = leaves.SOURCES["event"].fields
    at = fields.index("received_at") + 1
    acc = fields.index("account") + 1
    if query.account is not None and query.start and query.end:
        return query.start, query.end, [query.account]
    if not events:
        now = datetime.now(UTC)
        return now, now, []
    # received_at as the leaf writes it: fixed-width UTC, so text order is time order
    times = [row[at] for row in events]
    first, last = datetime.fromisoformat(min(times)), datetime.fromisoformat(max(times))
    return first, last, sorted({row[acc] for row in events})


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
