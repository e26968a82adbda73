"""Signed checkpoints: the Merkle root over positions 1..N, signed with Ed25519.

The signed message is the RFC 8785 canonical bytes of the checkpoint's *body*:

    {"chain_head": b64, "counts": {source: rows}, "format": "auditor-checkpoint/1",
     "key_id": hex16, "made_at": "YYYY-MM-DDTHH:MM:SS.ffffffZ", "root": b64, "tree_size": N}

(standard padded base64 of the 32-byte hashes). The checkpoint's JSON form adds "id" and
"signature" (base64 of the 64-byte Ed25519 signature) to the body; a verifier drops those two,
re-encodes and checks. Each checkpoint is stored in `checkpoints` and entered into the record
(source 'checkpoint') right after position N, so it is itself covered by the next one.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from auditor.evidence import keys, leaves, merkle, tiles
from auditor.evidence.canonical import canonical_bytes, leaf_hash
from auditor.evidence.pgtiles import PgTileStore
from auditor.store import record

FORMAT = "auditor-checkpoint/1"
# pg_advisory_xact_lock key: 'ckpt'. One checkpoint maker at a time extends the tiles,
# outside the writer's lock, so the writer waits only for the last few rows.
CHECKPOINT_LOCK_KEY = 0x636B7074

_COLUMNS = "id, tree_size, root, chain_head, counts, made_at, key_id, signature"


@dataclass(frozen=True)
class Checkpoint:
    id: int
    tree_size: int
    root: bytes
    chain_head: bytes
    counts: dict[str, int]
    made_at: datetime
    key_id: str
    signature: bytes

    def body(self) -> dict[str, Any]:
        return body(
            self.tree_size, self.root, self.chain_head, self.counts, self.made_at, self.key_id
        )

    def to_json(self) -> dict[str, Any]:
        return {
            **self.body(),
            "id": self.id,
            "signature": base64.b64encode(self.signature).decode("ascii"),
        }

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Checkpoint:
        id_, size, root, head, counts, made_at, key_id, signature = row
        if isinstance(counts, str):
            counts = json.loads(counts)
        return cls(
            int(id_),
            int(size),
            bytes(root),
            bytes(head),
            dict(counts),
            made_at,
            key_id,
            bytes(signature),
        )


def body(
    tree_size: int,
    root: bytes,
    chain_head: bytes,
    counts: Mapping[str, int],
    made_at: datetime,
    key_id: str,
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "tree_size": tree_size,
        "root": _b64(root),
        "chain_head": _b64(chain_head),
        "counts": dict(sorted(counts.items())),
        "made_at": leaves.timestamp(made_at),
        "key_id": key_id,
    }


def signed_message(checkpoint_json: Mapping[str, Any]) -> bytes:
    """The bytes a checkpoint's signature covers, from its JSON form."""
    return canonical_bytes(
        {k: v for k, v in checkpoint_json.items() if k not in ("id", "signature")}
    )


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def latest(conn: psycopg.Connection[Any]) -> Checkpoint | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM checkpoints ORDER BY tree_size DESC LIMIT 1"
    ).fetchone()
    return Checkpoint.from_row(row) if row else None


def covering(conn: psycopg.Connection[Any], position: int) -> Checkpoint | None:
    """The oldest checkpoint whose tree holds position."""
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM checkpoints WHERE tree_size >= %s ORDER BY tree_size LIMIT 1",
        (position,),
    ).fetchone()
    return Checkpoint.from_row(row) if row else None


def listing(
    conn: psycopg.Connection[Any], *, before: int | None = None, limit: int = 100
) -> list[Checkpoint]:
    """Newest first; before = a tree_size to page from."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM checkpoints WHERE tree_size < %s ORDER BY tree_size DESC LIMIT %s",
        (before if before is not None else 2**62, limit),
    ).fetchall()
    return [Checkpoint.from_row(row) for row in rows]


def make(
    conn: psycopg.Connection[Any], signer: keys.Signer, *, now: datetime | None = None
) -> Checkpoint | None:
    """Sign the record as it stands and enter the checkpoint into it, in the caller's
    transaction. None when nothing but the previous checkpoint was appended since it."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (CHECKPOINT_LOCK_KEY,))
    store = PgTileStore(conn)
    # Positions up to the head never change: extend the tiles before taking the writer's
    # lock, then again for what was appended meanwhile.
    tiles.extend(store, record.head(conn).position)
    record.lock(conn)
    head = record.head(conn)
    previous = latest(conn)
    if head.position == 0 or (previous and _only_itself_since(conn, previous, head.position)):
        return None
    size = head.position
    tiles.extend(store, size)
    root = tiles.TreeView(store, size).root()
    counts = dict(previous.counts) if previous else {}
    for source, rows in conn.execute(
        "SELECT source, count(*) FROM record WHERE position > %s AND position <= %s"
        " GROUP BY source",
        (previous.tree_size if previous else 0, size),
    ):
        counts[source] = counts.get(source, 0) + int(rows)
    made_at = now or datetime.now(UTC)
    message = canonical_bytes(body(size, root, head.chain_hash, counts, made_at, signer.key_id))
    signature = signer.sign(message)
    row = conn.execute(
        "INSERT INTO checkpoints (tree_size, root, chain_head, counts, made_at, key_id,"
        " signature) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING " + _COLUMNS,
        (size, root, head.chain_hash, json.dumps(counts), made_at, signer.key_id, signature),
    ).fetchone()
    assert row is not None
    checkpoint = Checkpoint.from_row(row)
    leaf = leaves.leaf_bytes("checkpoint", _row_mapping(row))
    record.append(conn, [("checkpoint", checkpoint.id, leaf_hash(leaf))], at=head)
    return checkpoint


def _row_mapping(row: tuple[Any, ...]) -> dict[str, Any]:
    names = [name.strip() for name in _COLUMNS.split(",")]
    mapping = dict(zip(names, row, strict=True))
    if isinstance(mapping["counts"], str):
        mapping["counts"] = json.loads(mapping["counts"])
    return mapping


def _only_itself_since(conn: psycopg.Connection[Any], previous: Checkpoint, head: int) -> bool:
    if head == previous.tree_size:
        return True
    if head != previous.tree_size + 1:
        return False
    row = conn.execute(
        "SELECT source, source_id FROM record WHERE position = %s", (head,)
    ).fetchone()
    return row is not None and row[0] == "checkpoint" and int(row[1]) == previous.id


def write_witness(directory: Path, checkpoint: Checkpoint) -> Path:
    """A copy outside PostgreSQL: <directory>/checkpoint-<tree_size>.json."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"checkpoint-{checkpoint.tree_size:012d}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(checkpoint.to_json(), indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


# Verification ----------------------------------------------------------------------------


def check_signature(checkpoint_json: Mapping[str, Any], public: Ed25519PublicKey) -> None:
    if checkpoint_json.get("format") != FORMAT:
        raise keys.BadSignature(f"not an {FORMAT} checkpoint")
    if checkpoint_json.get("key_id") != keys.key_id(public):
        raise keys.BadSignature("the checkpoint was signed with another key")
    try:
        signature = base64.b64decode(str(checkpoint_json["signature"]), validate=True)
    except (KeyError, ValueError):
        raise keys.BadSignature("the checkpoint has no readable signature") from None
    keys.verify(public, signature, signed_message(checkpoint_json))


def verify_against(
    conn: psycopg.Connection[Any],
    checkpoint_json: Mapping[str, Any],
    public: Ed25519PublicKey | None,
    *,
    batch: int = 50_000,
) -> list[str]:
    """Problems (empty: none) between a kept checkpoint and the stored record: the signature
    (when a public key is given), the Merkle root over the stored leaf hashes 1..N and the
    chain hash at N. That the leaf hashes match the rows is what row-level verify proves."""
    problems: list[str] = []
    if public is not None:
        try:
            check_signature(checkpoint_json, public)
        except keys.BadSignature as exc:
            problems.append(f"signature: {exc}")
    try:
        size = int(checkpoint_json["tree_size"])
        root = base64.b64decode(str(checkpoint_json["root"]), validate=True)
        chain_head = base64.b64decode(str(checkpoint_json["chain_head"]), validate=True)
    except (KeyError, ValueError, TypeError):
        return [*problems, "the checkpoint lacks a readable tree_size, root or chain_head"]
    frontier = merkle.Frontier()
    last_chain = b""
    with conn.cursor(name="checkpoint_verify") as cur:
        cur.itersize = batch
        cur.execute(
            "SELECT position, leaf_hash, chain_hash FROM record WHERE position <= %s"
            " ORDER BY position",
            (size,),
        )
        for position, leaf, chain in cur:
            if position != frontier.size + 1:
                problems.append(f"position {frontier.size + 1} is missing from the record")
                return problems
            frontier.append(bytes(leaf))
            last_chain = bytes(chain)
    if frontier.size < size:
        problems.append(f"the record holds {frontier.size} positions, the checkpoint {size}")
        return problems
    if frontier.root() != root:
        problems.append(
            f"the Merkle root over positions 1..{size} differs from the checkpoint's:"
            " the record was rewritten"
        )
    if last_chain != chain_head:
        problems.append(f"the chain hash at position {size} differs from the checkpoint's")
    return problems
