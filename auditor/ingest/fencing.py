"""Snapshots of a fenced-off worker are left out before a batch is stored.

A snapshot carries the fencing token of the lease its worker held (payload.snapshot.fence).
PostgreSQL refuses a snapshot whose token is no longer current (trigger snapshot_fenced,
migration 2026_12_02_fencing), which would fail the whole batch; so the drain asks the same
function first, in the same transaction. The function's FOR KEY SHARE lock keeps the answer
true until the commit: a hand-over of the account waits for it.

Notifications are never left out: what GWS delivered to a session is stored whichever
worker held the lease (docs/worker.md, "Fenced leases").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import psycopg

from auditor.store.receipts import Receipt

_CHECK = """
SELECT s.i FROM unnest(%s::text[], %s::bigint[]) WITH ORDINALITY AS s(account, fence, i)
WHERE NOT auditor_lease_fence_ok(s.account, s.fence)
"""


def snapshot_fence(raw: str | bytes) -> int | None:
    """The token a snapshot receipt carries; None when it has none (a worker without leases)
    or is not a snapshot document at all (the writer quarantines those); 0 when it is not a
    valid token."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    meta = document.get("snapshot") if isinstance(document, dict) else None
    if not isinstance(meta, dict) or "fence" not in meta:
        return None
    fence = meta["fence"]
    if isinstance(fence, int) and not isinstance(fence, bool) and 0 < fence < 2**63:
        return fence
    return 0  # a token no lease has: left out (PostgreSQL would refuse it)


def without_stale_snapshots(
    conn: psycopg.Connection[Any], receipts: Sequence[Receipt]
) -> tuple[list[Receipt], int]:
    """The receipts to store, and how many snapshots were left out as fenced off."""
    snapshots = [(n, r) for n, r in enumerate(receipts) if r.kind == "snapshot"]
    if not snapshots:
        return list(receipts), 0
    accounts = [r.account for _, r in snapshots]
    fences = [snapshot_fence(r.raw) for _, r in snapshots]
    stale = {snapshots[int(row[0]) - 1][0] for row in conn.execute(_CHECK, (accounts, fences))}
    if not stale:
        return list(receipts), 0
    return [r for n, r in enumerate(receipts) if n not in stale], len(stale)
