"""Applying a plan: per partition, a purge receipt entered into the record, then the drop.

Each partition goes in a transaction of its own, under the writer's lock (so no batch adds a
row or a position meanwhile): read the rows' ids and record positions and the leaf hashes at
those positions, write the receipt, seal it, and call auditor_purge_event_partition(), which
checks all of it again under an ACCESS EXCLUSIVE lock and only then drops the partition.
The record rows of purged events stay: the chain and the Merkle tree keep every position,
and `verify` skips exactly the positions a sealed receipt names (docs/retention.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from auditor.retention.plan import Decision, Plan
from auditor.store import event_references, projection, projection_rebuild
from auditor.store import record as ledger
from auditor.store.sources import Hasher, rows_by_id

log = logging.getLogger("auditor.retention")

_IDS = """
SELECT count(*), coalesce(range_agg(int8range(id, id + 1))::text, '{}')
FROM events WHERE received_at >= %s AND received_at < %s
"""
# Format-1 rows (one per event) and format-2 batch rows (one per writer batch, named by its
# first event id; a batch never spans two months), with how many events each seals.
_POSITIONS = """
SELECT r.position, r.leaf_hash, coalesce(r.leaf_count, 1) FROM record AS r
WHERE r.source IN ('event', 'batch') AND r.source_id IN (
    SELECT id FROM events WHERE received_at >= %s AND received_at < %s)
ORDER BY r.position
"""
_RECEIPT = """
INSERT INTO purges (partition, range_from, range_to, row_count, event_ids, positions,
                    leaves_sha256, head_position, head_chain, purged_by, reason)
VALUES (%s, %s, %s, %s, %s,
        (SELECT coalesce(range_agg(int8range(p, p + 1))::text, '{}') FROM unnest(%s::int8[]) AS p),
        %s, %s, %s, %s, %s)
RETURNING id
"""


# What the month's events contribute to the projection, per interaction (the fold of
# `auditor projection check`), kept aside before the drop: nothing can compute it afterwards.
_FOLD = "auditor_purged_fold"
_FOLD_MONTH = (
    f"CREATE TEMP TABLE {_FOLD} ON COMMIT DROP AS SELECT {projection.FOLDED_COLUMNS}"
    f" FROM ({projection_rebuild.DELTA_OF_MONTH}) AS d"
)

# The projection of an interaction whose every event is gone goes too (its user data is what
# privacy law asks to forget), and so do the user-data values it held (user_data_values) and
# what earlier purges kept of it (projection_baseline); one with events left keeps its rows.
_FORGET_INTERACTIONS = f"""
WITH gone AS (
    DELETE FROM interactions AS i
    WHERE i.first_seen_at < %s
      AND NOT EXISTS (SELECT FROM events AS e WHERE e.interaction_id = i.interaction_id)
    RETURNING i.interaction_id
), values_gone AS (
    DELETE FROM user_data_values AS v USING gone WHERE v.interaction_id = gone.interaction_id
), baseline_gone AS (
    DELETE FROM projection_baseline AS b USING gone WHERE b.interaction_id = gone.interaction_id
), fold_gone AS (
    DELETE FROM pg_temp.{_FOLD} AS f USING gone WHERE f.interaction_id = gone.interaction_id
)
SELECT count(*) FROM gone
"""

# The month's contribution of every interaction with events left, merged into the baseline
# that `auditor projection check` and `rebuild` start from (migration 2026_12_03_ops): the
# projection keeps counting the dropped events, and so must they.
_KEEP_BASELINE = f"""
INSERT INTO projection_baseline AS t ({projection.FOLDED_COLUMNS}, purge_id)
SELECT {projection.FOLDED_COLUMNS}, %s FROM pg_temp.{_FOLD}
{projection.MERGE_ON_CONFLICT}, purge_id = excluded.purge_id
"""


class NotSealed(Exception):
    """Rows of the partition have no place in the record: seal them before purging."""


@dataclass(frozen=True)
class Receipt:
    id: int
    position: int
    partition: str
    rows: int
    interactions_forgotten: int = 0


@dataclass
class RunResult:
    dropped: list[dict[str, Any]] = field(default_factory=list)
    kept: list[dict[str, Any]] = field(default_factory=list)
    run_id: int | None = None


def purge_partition(conn: psycopg.Connection[Any], decision: Decision, purged_by: str) -> Receipt:
    """Receipt, seal, drop: in the caller's transaction (commit it right after)."""
    ledger.lock(conn)
    row = conn.execute(_IDS, (decision.start, decision.end)).fetchone()
    assert row is not None
    count, event_ids = int(row[0]), str(row[1])
    positions: list[int] = []
    events = 0
    digest = hashlib.sha256()
    for position, leaf, sealed in conn.execute(
        _POSITIONS, (decision.start, decision.end)
    ).fetchall():
        positions.append(int(position))
        events += int(sealed)
        digest.update(bytes(leaf))
    if events != count:
        raise NotSealed(
            f"{decision.partition}: {count - events} of its {count} rows are not in the"
            " record yet; run `auditor seal --backfill` first"
        )
    head = ledger.head(conn)
    found = conn.execute(
        _RECEIPT,
        (
            decision.partition,
            decision.start,
            decision.end,
            count,
            event_ids,
            positions,
            digest.digest(),
            head.position,
            head.chain_hash,
            purged_by,
            decision.reason,
        ),
    ).fetchone()
    assert found is not None
    receipt_id = int(found[0])
    leaf = Hasher("purge").leaf(rows_by_id(conn, "purge", receipt_id, receipt_id)[receipt_id])
    sealed = ledger.append(conn, [("purge", receipt_id, leaf)], head)
    conn.execute(_FOLD_MONTH, {"start": decision.start, "end": decision.end})
    dropped = conn.execute("SELECT auditor_purge_event_partition(%s)", (receipt_id,)).fetchone()
    assert dropped is not None
    row = conn.execute(_FORGET_INTERACTIONS, (decision.end,)).fetchone()
    forgotten = int(row[0]) if row else 0
    conn.execute(_KEEP_BASELINE, (receipt_id,))
    conn.execute(f"DROP TABLE pg_temp.{_FOLD}")
    return Receipt(receipt_id, sealed.position, decision.partition, count, forgotten)


def _who(conn: psycopg.Connection[Any], operator: str) -> str:
    row = conn.execute("SELECT current_user").fetchone()
    return f"{operator} (database login {row[0] if row else '?'})"


def apply(conn: psycopg.Connection[Any], plan: Plan, operator: str, *, dry_run: bool) -> RunResult:
    """Drop what the plan says, one committed transaction per partition; log the run.

    ``conn`` must not be inside a transaction (each partition commits on its own, so a
    failure keeps what was done before it)."""
    result = RunResult()
    who = _who(conn, operator)
    for decision in plan.decisions:
        entry = decision.as_json()
        if not decision.drop:
            result.kept.append(entry)
            log.info(
                "retention keeps %s (%d rows): %s",
                decision.partition,
                decision.rows,
                decision.reason,
            )
            continue
        if dry_run:
            entry["reason"] = f"dry run: would drop, {decision.reason}"
            result.kept.append(entry)
            continue
        try:
            with conn.transaction():
                receipt = purge_partition(conn, decision, who)
        except (NotSealed, psycopg.errors.ObjectNotInPrerequisiteState) as exc:
            text = str(exc) if isinstance(exc, NotSealed) else exc.diag.message_primary
            entry.update(drop=False, reason=f"not dropped: {text}")
            result.kept.append(entry)
            log.warning("retention keeps %s: %s", decision.partition, text)
            continue
        # The referenceId side table's rows of the dropped events: after the drop commits,
        # outside the writer's lock (a month's rows are many; until then the lookup's join to
        # events skips them).
        with conn.transaction():
            references_forgotten = event_references.forget_purged(conn, receipt.id)
        entry.update(
            references_forgotten=references_forgotten,
            receipt=receipt.id,
            receipt_position=receipt.position,
            interactions_forgotten=receipt.interactions_forgotten,
        )
        result.dropped.append(entry)
        log.info(
            "retention dropped %s (%d rows): %s; purge receipt %d at position %d",
            decision.partition,
            receipt.rows,
            decision.reason,
            receipt.id,
            receipt.position,
        )
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO retention_runs (run_by, dry_run, settings, dropped, kept)"
            " VALUES (%s, %s, %s, %s, %s) RETURNING id",
            (
                who,
                dry_run,
                json.dumps({**plan.settings.as_json(), "now": _iso(plan.now)}),
                json.dumps(result.dropped),
                json.dumps(result.kept),
            ),
        ).fetchone()
    result.run_id = int(row[0]) if row else None
    return result


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")
