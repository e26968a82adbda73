"""The sealer: enters covered rows that were written without a place in the record.

The batch writer seals events and quarantine entries itself, in the transaction that stores
them. Closed coverage intervals and access-log rows are written by many processes (every
worker, every API process), so they are sealed in batches shortly after, by the worker every
`seal_interval` seconds and by `auditor seal`. `auditor seal --backfill` also seals the
events and quarantine entries stored before the record existed (migration
2026_12_01_evidence), oldest first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from auditor.store import record as ledger
from auditor.store.sources import Hasher, count_unsealed, select_unsealed

# hold, release: placed through the API (which cannot write the record); purge receipts are
# sealed by the retention command itself, before their partition goes.
PERIODIC_SOURCES = ("coverage", "access", "hold", "release")
BACKFILL_SOURCES = ("event", "quarantine", "coverage", "access")
# What `verify` counts as not sealed yet.
UNSEALED_SOURCES = (*BACKFILL_SOURCES, "hold", "release")
_CHUNK = 5_000

Progress = Callable[[str, int], None]  # (source, rows sealed since the last call)


@dataclass
class SealResult:
    sealed: dict[str, int] = field(default_factory=dict)
    head: int = 0

    @property
    def total(self) -> int:
        return sum(self.sealed.values())


def unsealed_counts(
    conn: psycopg.Connection[Any], sources: tuple[str, ...] = BACKFILL_SOURCES
) -> dict[str, int]:
    counts = {}
    for source in sources:
        row = conn.execute(count_unsealed(source)).fetchone()
        counts[source] = int(row[0]) if row else 0
    return counts


def seal(
    conn: psycopg.Connection[Any],
    sources: tuple[str, ...] = PERIODIC_SOURCES,
    progress: Progress | None = None,
) -> SealResult:
    """Give every unsealed row of ``sources`` its position, in id order per source, in the
    caller's transaction (under the writer lock, so positions follow commit order)."""
    ledger.lock(conn)
    at = ledger.head(conn)
    result = SealResult()
    for source in sources:
        hasher = Hasher(source)
        count = 0
        # A client-side cursor would hold every row at once; a named one streams them.
        with conn.cursor(name=f"seal_{source}") as cur:
            cur.itersize = _CHUNK
            cur.execute(select_unsealed(source))
            while rows := cur.fetchmany(_CHUNK):
                leaves = [(source, i, leaf) for i, leaf in hasher.leaves(rows)]
                at = ledger.append(conn, leaves, at)
                count += len(leaves)
                if progress is not None:
                    progress(source, len(leaves))
        result.sealed[source] = count
    result.head = at.position
    return result
