"""Applying a plan: per partition, a purge receipt entered into the record, then the drop.

Each partition in two steps, so that the writer waits only for the second, short one:

1. ``prepare``, in a REPEATABLE READ snapshot and without the writer's lock: read the
   partition's rows' ids and their record positions and the leaf hashes at those positions,
   fold the month's events into a temporary table (what projection_baseline keeps), and find
   the interactions with no event outside the month (whose projection rows the drop leaves
   without events). This is the reading that grows with the month (docs/retention.md).
2. ``finish``, one transaction under the writer's lock (no batch adds a row or a position
   meanwhile): the events stored since the snapshot are those with an id above the highest
   id it saw (the writer hands out ids in commit order under that lock), so only they are
   read again: a late event for the month (a spool drained late) is folded in and its id
   and record position added to the receipt, and any interaction with a new event keeps
   its projection row. Then the receipt is written and sealed, and
   auditor_purge_event_partition() checks all of it again under an ACCESS EXCLUSIVE lock and
   only then drops the partition; then the derived tables are cleaned up.

``purge_partition`` does both in the caller's transaction, the lock taken first (the way it
was before; the guard tests use it). The record rows of purged events stay: the chain and
the Merkle tree keep every position, and `verify` skips exactly the positions a sealed
receipt names (docs/retention.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from auditor.retention.plan import Decision, Plan
from auditor.store import event_references, projection, projection_rebuild
from auditor.store import record as ledger
from auditor.store.sources import Hasher, rows_by_id

log = logging.getLogger("auditor.retention")

_MONTH = "received_at >= %(start)s AND received_at < %(end)s"
# The month's events with after < id <= upto (upto: NULL for no upper bound).
_SPAN = f"{_MONTH} AND id > %(after)s AND (%(upto)s::bigint IS NULL OR id <= %(upto)s)"
_IDS = f"""
SELECT count(*), coalesce(range_agg(int8range(id, id + 1))::text, '{{}}')
FROM events WHERE {_SPAN}
"""
# Format-1 rows (one per event) and format-2 batch rows (one per writer batch, named by its
# first event id; a batch never spans two months), with how many events each seals.
_POSITIONS = f"""
SELECT r.position, r.leaf_hash, coalesce(r.leaf_count, 1) FROM record AS r
WHERE r.source IN ('event', 'batch') AND r.source_id IN (SELECT id FROM events WHERE {_SPAN})
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
# ``gone``: the interaction has no event outside the month, so the drop leaves its
# projection row without events.
_FOLD = "auditor_purged_fold"
_CREATE_FOLD = (
    f"CREATE TEMP TABLE {_FOLD} (LIKE projection_baseline, gone boolean,"
    " PRIMARY KEY (interaction_id))",
    f"ALTER TABLE pg_temp.{_FOLD} DROP COLUMN purge_id",
)
_FOLDED_OF_SPAN = (
    f"SELECT {projection.FOLDED_COLUMNS} FROM ("
    + projection_rebuild.DELTA_OF_MONTH.replace(
        "e.received_at < %(end)s",
        "e.received_at < %(end)s AND e.id > %(after)s"
        " AND (%(upto)s::bigint IS NULL OR e.id <= %(upto)s)",
    )
    + ") AS d"
)
# Merged by the writer's rules: a late event's share merges into what the month had.
_FOLD_SPAN = (
    f"INSERT INTO pg_temp.{_FOLD} AS t ({projection.FOLDED_COLUMNS})\n"
    + _FOLDED_OF_SPAN
    + projection.MERGE_ON_CONFLICT
)
# Only rows marked (all, or those of interactions with an event after ``after``) are decided
# again: does any event outside the month still name the interaction?
_DECIDE_GONE = f"""
UPDATE pg_temp.{_FOLD} AS f
SET gone = NOT EXISTS (
    SELECT FROM events AS e
    WHERE e.interaction_id = f.interaction_id
      AND (e.received_at < %(start)s OR e.received_at >= %(end)s))
WHERE %(after)s::bigint IS NULL OR f.gone IS NULL OR f.interaction_id IN (
    SELECT interaction_id FROM events WHERE id > %(after)s AND interaction_id IS NOT NULL)
"""

# The projection of an interaction whose every event is gone goes too (its user data is what
# privacy law asks to forget), and so do the user-data values it held (user_data_values) and
# what earlier purges kept of it (projection_baseline); one with events left keeps its rows.
# Which ones: the fold's rows marked gone (decided in the snapshot, and again under the lock
# for every interaction with an event stored since).
_FORGET_INTERACTIONS = f"""
WITH gone AS (
    DELETE FROM interactions AS i USING pg_temp.{_FOLD} AS f
    WHERE f.gone AND i.interaction_id = f.interaction_id
    RETURNING i.interaction_id
), values_gone AS (
    DELETE FROM user_data_values AS v USING pg_temp.{_FOLD} AS f
    WHERE f.gone AND v.interaction_id = f.interaction_id
), baseline_gone AS (
    DELETE FROM projection_baseline AS b USING pg_temp.{_FOLD} AS f
    WHERE f.gone AND b.interaction_id = f.interaction_id
)
SELECT count(*) FROM gone
"""

# The month's contribution of every interaction with events left, merged into the baseline
# that `auditor projection check` and `rebuild` start from (migration 2026_12_03_ops): the
# projection keeps counting the dropped events, and so must they.
_KEEP_BASELINE = f"""
INSERT INTO projection_baseline AS t ({projection.FOLDED_COLUMNS}, purge_id)
SELECT {projection.FOLDED_COLUMNS}, %s FROM pg_temp.{_FOLD} WHERE NOT gone
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
    late: int = 0  # events of the month stored after the preparation's snapshot
    locked_seconds: float = 0.0  # from taking the writer's lock to the end of the work


@dataclass
class Prepared:
    """A partition read outside the writer's lock: its events up to ``upto`` (the highest
    event id of the whole table in the snapshot), their ids, record positions and leaf
    hashes, and their fold in the temporary table auditor_purged_fold."""

    decision: Decision
    upto: int
    rows: int
    event_ids: str  # int8multirange text
    positions: list[int]
    digest: Any  # hashlib sha256 over the leaf hashes at ``positions``, in position order
    seconds: float = 0.0


def _params(decision: Decision, after: int | None, upto: int | None) -> dict[str, Any]:
    return {"start": decision.start, "end": decision.end, "after": after, "upto": upto}


def _sealed(
    conn: psycopg.Connection[Any], params: dict[str, Any], positions: list[int], digest: Any
) -> int:
    """Add the record positions of the events in ``params``'s span; the events they seal."""
    events = 0
    for position, leaf, sealed in conn.execute(_POSITIONS, params).fetchall():
        positions.append(int(position))
        events += int(sealed)
        digest.update(bytes(leaf))
    return events


def _not_sealed(decision: Decision, missing: int, count: int) -> NotSealed:
    return NotSealed(
        f"{decision.partition}: {missing} of its {count} rows are not in the"
        " record yet; run `auditor seal --backfill` first"
    )


def prepare(conn: psycopg.Connection[Any], decision: Decision) -> Prepared:
    """Read the partition and fold it, in the caller's transaction (make it REPEATABLE READ,
    or hold the writer's lock: every statement must see the same events). The temporary
    fold table lives for the session, until ``finish`` drops it."""
    began = time.perf_counter()
    row = conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()
    upto = int(row[0]) if row else 0
    params = _params(decision, 0, upto)
    row = conn.execute(_IDS, params).fetchone()
    assert row is not None
    count, event_ids = int(row[0]), str(row[1])
    positions: list[int] = []
    digest = hashlib.sha256()
    sealed = _sealed(conn, params, positions, digest)
    if sealed != count:
        raise _not_sealed(decision, count - sealed, count)
    conn.execute(f"DROP TABLE IF EXISTS pg_temp.{_FOLD}")
    for statement in _CREATE_FOLD:
        conn.execute(statement)
    conn.execute(_FOLD_SPAN, params)
    conn.execute(_DECIDE_GONE, _params(decision, None, None))
    return Prepared(
        decision, upto, count, event_ids, positions, digest, time.perf_counter() - began
    )


def _catch_up(conn: psycopg.Connection[Any], prepared: Prepared) -> int:
    """Under the writer's lock: take in what was stored since the preparation's snapshot
    (ids above ``upto``); the late events of the month."""
    decision = prepared.decision
    row = conn.execute("SELECT max(id) FROM events WHERE id > %s", (prepared.upto,)).fetchone()
    if row is None or row[0] is None:
        return 0  # nothing stored since: the preparation is exact
    newest = int(row[0])
    params = _params(decision, prepared.upto, newest)
    row = conn.execute(_IDS, params).fetchone()
    assert row is not None
    late = int(row[0])
    if late:
        # A spool drained late stored events for the month: they go with it, in the receipt
        # (ids, positions, leaf hashes: their positions all follow the snapshot's) and in the
        # fold, like the others.
        found = conn.execute(
            "SELECT (%s::int8multirange + %s::int8multirange)::text",
            (prepared.event_ids, str(row[1])),
        ).fetchone()
        assert found is not None
        prepared.event_ids = str(found[0])
        prepared.rows += late
        sealed = _sealed(conn, params, prepared.positions, prepared.digest)
        if sealed != late:
            raise _not_sealed(decision, late - sealed, prepared.rows)
        conn.execute(_FOLD_SPAN, params)
    # Any interaction with a new event (in this month or another) is decided again.
    conn.execute(_DECIDE_GONE, _params(decision, prepared.upto, newest))
    prepared.upto = newest
    return late


def finish(conn: psycopg.Connection[Any], prepared: Prepared, purged_by: str) -> Receipt:
    """Receipt, seal, drop, clean up: under the writer's lock, in the caller's transaction
    (commit it right after)."""
    decision = prepared.decision
    ledger.lock(conn)
    locked = time.perf_counter()
    late = _catch_up(conn, prepared)
    head = ledger.head(conn)
    found = conn.execute(
        _RECEIPT,
        (
            decision.partition,
            decision.start,
            decision.end,
            prepared.rows,
            prepared.event_ids,
            prepared.positions,
            prepared.digest.digest(),
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
    dropped = conn.execute("SELECT auditor_purge_event_partition(%s)", (receipt_id,)).fetchone()
    assert dropped is not None
    # The derived tables: what they hold of the dropped events goes with them. Each cleanup
    # is one statement here, under the lock (the writer adds to these tables, late events
    # included); the receipt's exact ids are prepared.event_ids (an int8multirange).
    row = conn.execute(_FORGET_INTERACTIONS).fetchone()
    forgotten = int(row[0]) if row else 0
    conn.execute(_KEEP_BASELINE, (receipt_id,))
    conn.execute(f"DROP TABLE pg_temp.{_FOLD}")
    return Receipt(
        receipt_id,
        sealed.position,
        decision.partition,
        prepared.rows,
        forgotten,
        late,
        time.perf_counter() - locked,
    )


def purge_partition(conn: psycopg.Connection[Any], decision: Decision, purged_by: str) -> Receipt:
    """Prepare and finish in the caller's transaction, all of it under the writer's lock
    (commit right after)."""
    ledger.lock(conn)
    return finish(conn, prepare(conn, decision), purged_by)


# Called between the two steps of ``apply`` (tests store a late event there).
BetweenSteps = Callable[[Decision], None]


def purge_in_two_steps(
    conn: psycopg.Connection[Any],
    decision: Decision,
    purged_by: str,
    between: BetweenSteps | None = None,
) -> tuple[Prepared, Receipt]:
    """``prepare`` in a REPEATABLE READ transaction of its own without the writer's lock,
    then ``finish`` in a second transaction under it. ``conn`` must not be inside a
    transaction. A failure of the second leaves nothing done (the first only read)."""
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        # Inside the caller's transaction no snapshot of our own can be taken: both steps
        # under the lock, in a savepoint (the caller commits).
        with conn.transaction():
            ledger.lock(conn)
            prepared = prepare(conn, decision)
            return prepared, finish(conn, prepared, purged_by)
    try:
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            conn.execute("SET LOCAL work_mem = '128MB'")
            prepared = prepare(conn, decision)
        if between is not None:
            between(decision)
        with conn.transaction():
            return prepared, finish(conn, prepared, purged_by)
    finally:
        # Gone already unless ``finish`` failed (its rollback kept the session's table).
        if not conn.closed and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            with conn.transaction():
                conn.execute(f"DROP TABLE IF EXISTS pg_temp.{_FOLD}")


@dataclass
class RunResult:
    dropped: list[dict[str, Any]] = field(default_factory=list)
    kept: list[dict[str, Any]] = field(default_factory=list)
    run_id: int | None = None


def _who(conn: psycopg.Connection[Any], operator: str) -> str:
    row = conn.execute("SELECT current_user").fetchone()
    return f"{operator} (database login {row[0] if row else '?'})"


def apply(
    conn: psycopg.Connection[Any],
    plan: Plan,
    operator: str,
    *,
    dry_run: bool,
    between: BetweenSteps | None = None,
) -> RunResult:
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
            prepared, receipt = purge_in_two_steps(conn, decision, who, between)
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
            late_events=receipt.late,
            prepare_seconds=round(prepared.seconds, 3),
            locked_seconds=round(receipt.locked_seconds, 3),
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
