"""Appending to the hash-chained record (table `record`; docs/evidence.md).

Every append happens under the writer's advisory lock (the batch writer holds it already;
the sealer and checkpoints take it), so positions follow commit order: a transaction that
appends commits before the next one can read the head. The database checks that positions
stay gapless (trigger record_gapless); the hashes are computed here, never by a trigger.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from auditor.evidence.canonical import ZERO_HASH

# pg_advisory_xact_lock key: 'audit' in ASCII. The batch writer, the sealer and the
# record_gapless trigger take it.
WRITER_LOCK_KEY = 0x6175646974

_HEAD = "SELECT position, chain_hash FROM record ORDER BY position DESC LIMIT 1"
# The hashes travel as two concatenated byte strings, cut in 32-byte pieces by PostgreSQL:
# one parameter each instead of a Python object per row and column.
_INSERT = """
INSERT INTO record (position, source, source_id, leaf_hash, chain_hash)
SELECT %(at)s + n, source, source_id,
       substring(%(leaves)s::bytea FROM ((n - 1) * 32 + 1)::int FOR 32),
       substring(%(chains)s::bytea FROM ((n - 1) * 32 + 1)::int FOR 32)
FROM unnest(%(sources)s::text[], %(ids)s::int8[]) WITH ORDINALITY AS t(source, source_id, n)
"""
# Format 2 (auditor.evidence.batches): a batch row carries its events' leaf hashes.
_INSERT_BATCHES = """
INSERT INTO record (position, source, source_id, leaf_hash, chain_hash, format, leaf_count,
                    leaves)
SELECT %(at)s + n, 'batch', source_id,
       substring(%(leaves)s::bytea FROM ((n - 1) * 32 + 1)::int FOR 32),
       substring(%(chains)s::bytea FROM ((n - 1) * 32 + 1)::int FOR 32),
       2, octet_length(batch) / 32, batch
FROM unnest(%(ids)s::int8[], %(batches)s::bytea[]) WITH ORDINALITY AS t(source_id, batch, n)
"""


@dataclass(frozen=True, slots=True)
class Head:
    position: int  # 0 for an empty record
    chain_hash: bytes


Leaf = tuple[str, int, bytes]  # (source, source_id, leaf_hash)
# ("batch", first event id, batch leaf hash, the events' leaf hashes joined): format 2
BatchLeaf = tuple[str, int, bytes, bytes]


def lock(conn: psycopg.Connection[Any]) -> None:
    """Take the writer lock for the rest of the caller's transaction."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITER_LOCK_KEY,))


def head(conn: psycopg.Connection[Any]) -> Head:
    """The last position and its chain hash; call it under the lock."""
    row = conn.execute(_HEAD).fetchone()
    if row is None:
        return Head(0, ZERO_HASH)
    return Head(int(row[0]), bytes(row[1]))


def append_batches(
    conn: psycopg.Connection[Any], batches: Sequence[BatchLeaf], at: Head | None = None
) -> Head:
    """Append format-2 batch rows after ``at`` (default: the current head), as ``append``."""
    if at is None:
        at = head(conn)
    if not batches:
        return at
    chain = at.chain_hash
    chains = []
    for _, _, leaf, _ in batches:
        chain = hashlib.sha256(chain + leaf).digest()
        chains.append(chain)
    with conn.cursor(binary=True) as cur:
        cur.execute(
            _INSERT_BATCHES,
            {
                "at": at.position,
                "leaves": b"".join(batch[2] for batch in batches),
                "chains": b"".join(chains),
                "ids": [batch[1] for batch in batches],
                "batches": [batch[3] for batch in batches],
            },
        )
    return Head(at.position + len(batches), chain)


def append(conn: psycopg.Connection[Any], leaves: Sequence[Leaf], at: Head | None = None) -> Head:
    """Append leaves after ``at`` (default: the current head) in the caller's transaction,
    which must hold the lock; returns the new head."""
    if at is None:
        at = head(conn)
    if not leaves:
        return at
    chain = at.chain_hash
    chains = []
    sha256 = hashlib.sha256  # chain_next without its length checks: a leaf of another
    for _, _, leaf in leaves:  # length fails the record's CHECK constraint anyway
        chain = sha256(chain + leaf).digest()
        chains.append(chain)
    with conn.cursor(binary=True) as cur:
        cur.execute(
            _INSERT,
            {
                "at": at.position,
                "leaves": b"".join(leaf for _, _, leaf in leaves),
                "chains": b"".join(chains),
                "sources": [source for source, _, _ in leaves],
                "ids": [source_id for _, source_id, _ in leaves],
            },
        )
    return Head(at.position + len(leaves), chain)
