"""Check and rebuild the interactions projection from the record, set-based in PostgreSQL.

The projection is derived data: everything in it follows from the events by the fold rules of
auditor.store.projection. Here the same rules are written once more as SQL aggregates, so a
whole projection can be recomputed at PostgreSQL speed into a scratch table (a temporary
table of the session) and compared with the live one.

Consistency without stopping the writer: the scratch table is built and compared inside one
REPEATABLE READ transaction. The writer commits event batches under its advisory lock, in id
order, together with their projection changes, so that snapshot sees exactly the events up to
some id ``built_upto`` and the projection made from exactly those. A rebuild then takes the
writer's lock for a short second transaction: it folds the events stored since ``built_upto``
into the scratch table (the same merge the writer does), compares again only the rows that
differed or were touched since, and writes the corrections. Readers never wait: rows are
updated in place (MVCC), the table is never swapped or locked as a whole.

Both cores: with ``jobs`` > 1 (and a way to open more connections) the fold runs in that
many sessions at once, the others importing the first one's snapshot (pg_export_snapshot),
so all of them read exactly the same events. The pieces of work (a partition, or a part of
one, or an id range) are taken from one queue; each session folds its pieces into its own
temporary scratch table, and the first then merges the others' tables into its own, row by
row with the same order-free merge (projection.MERGE_ON_CONFLICT) as every other fold. An
interaction whose events lie in pieces of several sessions therefore ends up exactly as if
one session had folded them all.

Functions take a connection and never commit, except ``rebuild``'s caller-visible phases,
which are documented on the function.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
import psycopg.sql

from auditor.store import projection
from auditor.store import record as ledger

SCRATCH = "auditor_projection_scratch"
PART = "auditor_projection_part"  # another session's scratch table, copied in to merge
DIFF = "auditor_projection_diff"
BASELINE = "projection_baseline"
DEFAULT_CHUNK = 500_000
# Both cores of this machine (docs/scale.md); more only helps with more cores.
DEFAULT_JOBS = min(2, os.cpu_count() or 1)

# The openmedia resource of a stored message, as auditor.notifications.openmedia_of finds it.
_OPENMEDIA = """CASE
    WHEN jsonb_typeof(e.payload->'data') = 'object' THEN e.payload->'data'->'openmedia'
    WHEN NOT e.payload ? 'data'
         AND e.payload ?| ARRAY['messageType', 'notificationType', 'openmedia', 'referenceId']
        THEN e.payload->'openmedia'
END"""

# The values taken from the message itself (the extracted columns do not hold them).
_FROM_PAYLOAD = """
           CASE WHEN jsonb_typeof(om->'uri') = 'string' THEN nullif(om->>'uri', '') END AS uri,
           CASE WHEN jsonb_typeof(om->'userData') = 'object' THEN om->'userData' END
               AS user_data,
           CASE WHEN jsonb_typeof(om->'capabilities') = 'array' THEN om->'capabilities' END
               AS capabilities"""

# Each interaction's contribution from the events in __RANGE__ (a condition on events AS e:
# an id range for check and rebuild, a month for a retention purge): the fold of
# projection._Delta as SQL. Reading the message (jsonb) of every event is what costs, so the
# aggregates run over the extracted columns only, and the message is read for the few events
# whose values survive: each interaction's last event (its uri and userData, when it has
# them) and each account's last event with a state (capabilities). Only interactions whose
# last event lacks a uri or userData have all their events' messages read. "The last
# non-null value" is element count(x) of the values aggregated with FILTER (x IS NOT NULL).
_DELTA_OF = f"""
WITH ev AS MATERIALIZED (
    SELECT id, received_at, account, interaction_id, state, notification_type, reference_id,
           nullif(media_type, '') AS media_type, nullif(openmedia_type, '') AS openmedia_type
    FROM events AS e
    WHERE e.interaction_id IS NOT NULL AND __RANGE__
), per_account AS (
    SELECT interaction_id, account, max(id) FILTER (WHERE state IS NOT NULL) AS state_id
    FROM ev GROUP BY interaction_id, account
), agg AS (
    SELECT interaction_id,
           (array_agg(media_type ORDER BY id) FILTER (WHERE media_type IS NOT NULL))
               [count(media_type)] AS media_type,
           (array_agg(openmedia_type ORDER BY id) FILTER (WHERE openmedia_type IS NOT NULL))
               [count(openmedia_type)] AS openmedia_type,
           min(received_at) AS first_seen_at, max(received_at) AS last_seen_at,
           min(id) AS first_event_id, max(id) AS last_event_id, count(*) AS event_count,
           (array_agg(notification_type ORDER BY id))[count(*)] AS last_notification_type,
           (array_agg(reference_id ORDER BY id))[count(*)] AS last_reference_id
    FROM ev GROUP BY interaction_id
), wanted AS (
    SELECT last_event_id AS id FROM agg
    UNION SELECT state_id FROM per_account WHERE state_id IS NOT NULL
), looked AS MATERIALIZED (
    SELECT e.id, e.received_at, e.state,{_FROM_PAYLOAD}
    FROM events AS e
    JOIN wanted AS w ON w.id = e.id
    CROSS JOIN LATERAL (SELECT {_OPENMEDIA} AS om) AS o
    WHERE __RANGE__
), entries AS (
    SELECT p.interaction_id, p.account, p.state_id, l.state,
           jsonb_build_object(
               'state', l.state, 'capabilities', l.capabilities, 'event_id', l.id,
               'at', to_char(l.received_at AT TIME ZONE 'UTC',
                             'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')) AS entry
    FROM per_account AS p
    LEFT JOIN looked AS l ON l.id = p.state_id
), states AS (
    -- "effective": the entry auditor_effective_state() picks (what the interactions_derive
    -- trigger derives state, capabilities and completed_at from), chosen here in the
    -- aggregate instead of by a function call per row.
    SELECT interaction_id,
           coalesce(jsonb_object_agg(account, entry) FILTER (WHERE state_id IS NOT NULL),
                    '{{}}'::jsonb) AS account_states,
           array_agg(account ORDER BY account) AS accounts,
           (array_agg(entry ORDER BY state = 'Completed', state_id DESC)
               FILTER (WHERE state_id IS NOT NULL))[1] AS effective
    FROM entries
    GROUP BY interaction_id
), straggling AS (
    SELECT e.interaction_id,
           (array_agg(uri ORDER BY e.id) FILTER (WHERE uri IS NOT NULL))[count(uri)] AS uri,
           (array_agg(user_data ORDER BY e.id) FILTER (WHERE user_data IS NOT NULL))
               [count(user_data)] AS user_data,
           max(e.id) FILTER (WHERE user_data IS NOT NULL) AS user_data_event_id
    FROM events AS e
    CROSS JOIN LATERAL (SELECT {_OPENMEDIA} AS om) AS o
    CROSS JOIN LATERAL (SELECT{_FROM_PAYLOAD}) AS v
    WHERE e.interaction_id IN (
              SELECT a.interaction_id FROM agg AS a JOIN looked AS l ON l.id = a.last_event_id
              WHERE l.uri IS NULL OR l.user_data IS NULL)
      AND __RANGE__
    GROUP BY e.interaction_id
)
SELECT a.interaction_id, a.media_type, a.openmedia_type,
       coalesce(l.uri, f.uri) AS uri,
       coalesce(l.user_data, f.user_data) AS user_data,
       CASE WHEN l.user_data IS NOT NULL THEN a.last_event_id ELSE f.user_data_event_id END
           AS user_data_event_id,
       s.account_states, s.accounts, a.first_seen_at, a.last_seen_at, a.first_event_id,
       a.last_event_id, a.event_count, a.last_notification_type, a.last_reference_id,
       s.effective->>'state' AS state, s.effective->'capabilities' AS capabilities,
       CASE WHEN s.effective->>'state' = 'Completed'
            THEN (s.effective->>'at')::timestamptz END AS completed_at
FROM agg AS a
JOIN looked AS l ON l.id = a.last_event_id
JOIN states AS s ON s.interaction_id = a.interaction_id
LEFT JOIN straggling AS f ON f.interaction_id = a.interaction_id
"""

# The events with after < id <= upto.
_BY_ID = "e.id > %(after)s AND e.id <= %(upto)s"
_DELTA = _DELTA_OF.replace("__RANGE__", _BY_ID)
# The events received in [start, end): a month's partition, as retention drops it.
_BY_TIME = "e.received_at >= %(start)s AND e.received_at < %(end)s"
DELTA_OF_MONTH = _DELTA_OF.replace("__RANGE__", _BY_TIME)


# A row merged from several folds (an interaction whose events lie in several chunks or
# partitions, on the baseline, or folded again by the rebuild's catch-up) keeps the derived
# columns of its first fold: the merge marks it with the pass (``merged``, a column of the
# scratch table only) and _REDERIVE sets them again.
def _merge_into_scratch(delta: str) -> str:
    return (
        f"INSERT INTO {SCRATCH} AS t ({projection.FOLDED_COLUMNS}, state, capabilities,"
        " completed_at)\n" + delta + projection.MERGE_ON_CONFLICT + ", merged = %(pass)s"
    )


_MERGE_INTO_SCRATCH = _merge_into_scratch(_DELTA)

# Another session's scratch rows merged into this one's; ``merged`` goes along, so the rows
# it merged get their derived columns again here too.
_MERGE_PART = (
    f"INSERT INTO {SCRATCH} AS t ({projection.FOLDED_COLUMNS}, state, capabilities,"
    f" completed_at, merged)\nSELECT {projection.FOLDED_COLUMNS}, state, capabilities,"
    f" completed_at, merged FROM {PART}\n" + projection.MERGE_ON_CONFLICT + ", merged = 1"
)

_REDERIVE = f"""
UPDATE {SCRATCH} AS s
SET state = d.eff->>'state', capabilities = d.eff->'capabilities',
    completed_at = CASE WHEN d.eff->>'state' = 'Completed'
                        THEN (d.eff->>'at')::timestamptz END
FROM (SELECT interaction_id, auditor_effective_state(account_states) AS eff
      FROM {SCRATCH}
      WHERE merged = %(pass)s) AS d
WHERE s.interaction_id = d.interaction_id
"""

# What the months retention dropped contributed (migration 2026_12_03_ops): the scratch table
# starts from it, and the events left are merged in by the same rules, so an interaction with
# events on both sides of a purge folds to what the writer had.
_LOAD_BASELINE = f"""
INSERT INTO {SCRATCH} ({projection.FOLDED_COLUMNS}, state, capabilities, completed_at)
SELECT {projection.FOLDED_COLUMNS}, eff->>'state', eff->'capabilities',
       CASE WHEN eff->>'state' = 'Completed' THEN (eff->>'at')::timestamptz END
FROM (SELECT *, auditor_effective_state(account_states) AS eff FROM {BASELINE}) AS b
"""

# Compared as the API shows them: the folded columns and the derived ones (the scratch row's
# derived from its account_states as the interactions_derive trigger does). accounts are a
# set (the writer sorts a new row's accounts in Python, merged ones by the collation).
_COMPARED = (
    ("media_type", "s.media_type", "l.media_type"),
    ("openmedia_type", "s.openmedia_type", "l.openmedia_type"),
    ("uri", "s.uri", "l.uri"),
    ("user_data", "s.user_data", "l.user_data"),
    ("user_data_event_id", "s.user_data_event_id", "l.user_data_event_id"),
    ("account_states", "s.account_states", "l.account_states"),
    ("first_seen_at", "s.first_seen_at", "l.first_seen_at"),
    ("last_seen_at", "s.last_seen_at", "l.last_seen_at"),
    ("first_event_id", "s.first_event_id", "l.first_event_id"),
    ("last_event_id", "s.last_event_id", "l.last_event_id"),
    ("event_count", "s.event_count", "l.event_count"),
    ("last_notification_type", "s.last_notification_type", "l.last_notification_type"),
    ("last_reference_id", "s.last_reference_id", "l.last_reference_id"),
    ("state", "s.state", "l.state"),
    ("capabilities", "s.capabilities", "l.capabilities"),
    ("completed_at", "s.completed_at", "l.completed_at"),
)
_DIFFERS = ",\n        ".join(
    f"CASE WHEN {ours} IS DISTINCT FROM {live} THEN '{name}' END" for name, ours, live in _COMPARED
)
_ACCOUNTS_DIFFER = "NOT (s.accounts @> l.accounts AND l.accounts @> s.accounts)"

# Every difference between scratch (s) and live (l) rows, optionally only for the ids in DIFF.
_DIFF = f"""
SELECT coalesce(s.interaction_id, l.interaction_id) AS interaction_id,
       CASE WHEN l.interaction_id IS NULL THEN 'missing'
            WHEN s.interaction_id IS NULL THEN 'unbacked'
            ELSE 'differs' END AS kind,
       CASE WHEN s.interaction_id IS NULL OR l.interaction_id IS NULL THEN '{{}}'::text[]
            ELSE array_remove(ARRAY[
        {_DIFFERS},
        CASE WHEN {_ACCOUNTS_DIFFER} THEN 'accounts' END], NULL) END AS columns
FROM __SCRATCH__ AS s
FULL JOIN __LIVE__ AS l ON l.interaction_id = s.interaction_id
WHERE s.interaction_id IS NULL OR l.interaction_id IS NULL
   OR {_ACCOUNTS_DIFFER} OR ({" OR ".join(f"{o} IS DISTINCT FROM {li}" for _, o, li in _COMPARED)})
ORDER BY 1
"""

_APPLY = f"""
INSERT INTO interactions AS t ({projection.FOLDED_COLUMNS})
SELECT {projection.FOLDED_COLUMNS} FROM {SCRATCH}
WHERE interaction_id = ANY(%s)
ON CONFLICT (interaction_id) DO UPDATE SET
    {", ".join(f"{c.strip()} = excluded.{c.strip()}" for c in projection.FOLDED_COLUMNS.split(","))}
"""


@dataclass(frozen=True)
class Difference:
    interaction_id: str
    kind: str  # missing (no live row), unbacked (a live row no event supports), differs
    columns: tuple[str, ...]  # for "differs": the columns that are not what the events say

    def describe(self) -> str:
        if self.kind == "missing":
            return f"{self.interaction_id}: missing from the projection"
        if self.kind == "unbacked":
            return f"{self.interaction_id}: in the projection, but no stored event has it"
        return f"{self.interaction_id}: differs in {', '.join(self.columns)}"


@dataclass
class Report:
    events: int = 0  # events folded into the scratch table
    built_upto: int = 0  # the last event id the comparison covers
    interactions: int = 0  # rows the events give
    baseline: int = 0  # of which started from what purged months contributed
    differences: list[Difference] = field(default_factory=list)
    fixed: int = 0  # rows written by a rebuild
    removed: int = 0  # unbacked rows removed by a rebuild
    build_seconds: float = 0.0  # folding the events into the scratch table
    compare_seconds: float = 0.0  # comparing it with the live projection


Progress = Callable[[int, int], None]  # (events folded, events in all), roughly


def event_bounds(conn: psycopg.Connection[Any]) -> tuple[int, int, int]:
    """(lowest id - 1, highest id, number of events) in the caller's snapshot."""
    row = conn.execute("SELECT min(id), max(id), count(*) FROM events").fetchone()
    if row is None or row[0] is None:
        return 0, 0, 0
    return int(row[0]) - 1, int(row[1]), int(row[2])


# The monthly partitions of events and their bounds, from the catalog (readable by every
# login; the partitions themselves are not: they are read through the parent).
_PARTITIONS = """
SELECT c.relname, pg_get_expr(c.relpartbound, c.oid)
FROM pg_partition_tree('events'::regclass) AS t JOIN pg_class AS c ON c.oid = t.relid
WHERE t.isleaf ORDER BY c.relname
"""
_BOUND = re.compile(r"FROM \('([^']*)'\) TO \('([^']*)'\)")


@dataclass(frozen=True)
class Slice:
    """Events folded together: one partition's time range (``ranges``, half-open, as SQL
    conditions on received_at that let the planner read that partition alone), with the ids
    and number of its rows."""

    name: str
    ranges: tuple[tuple[str, str], ...]  # (from, to) timestamptz text; '-infinity'/'infinity'
    after: int = 0  # lowest id - 1
    upto: int = 0  # highest id
    rows: int = 0

    def condition(self) -> tuple[str, dict[str, str]]:
        arms: list[str] = []
        params: dict[str, str] = {}
        for n, (start, end) in enumerate(self.ranges):
            arms.append(f"(e.received_at >= %(from{n})s AND e.received_at < %(to{n})s)")
            params |= {f"from{n}": start, f"to{n}": end}
        return "(" + " OR ".join(arms) + ")", params


def slices(conn: psycopg.Connection[Any]) -> list[Slice]:
    """One slice per monthly partition, and one for what lies outside them all (the default
    partition: the gaps between the monthly ranges), each with its ids and row count, in the
    caller's snapshot. Slices without rows are left out."""
    bounds = []
    for _name, expr in conn.execute(_PARTITIONS).fetchall():
        found = _BOUND.search(str(expr or ""))
        if found is not None:
            bounds.append((str(_name), found[1], found[2]))
    # The planner compares the bounds as timestamps; sort them the same way.
    order = conn.execute(
        "SELECT ord FROM unnest(%s::timestamptz[]) WITH ORDINALITY AS u(t, ord) ORDER BY t",
        ([b[1] for b in bounds],),
    ).fetchall()
    bounds = [bounds[int(r[0]) - 1] for r in order]
    candidates = [Slice(name, ((start, end),)) for name, start, end in bounds]
    outside, edge = [], "-infinity"
    for _name, start, end in bounds:
        outside.append((edge, start))
        edge = end
    outside.append((edge, "infinity"))
    candidates.append(Slice("outside the monthly partitions", tuple(outside)))
    found_slices = []
    for candidate in candidates:
        condition, params = candidate.condition()
        row = conn.execute(
            f"SELECT min(e.id), max(e.id), count(*) FROM events AS e WHERE {condition}",
            params,
        ).fetchone()
        if row is not None and row[0] is not None:
            found_slices.append(
                Slice(candidate.name, candidate.ranges, int(row[0]) - 1, int(row[1]), int(row[2]))
            )
    return found_slices


def _create_scratch(conn: psycopg.Connection[Any]) -> None:
    conn.execute(f"DROP TABLE IF EXISTS pg_temp.{SCRATCH}, pg_temp.{DIFF}, pg_temp.{PART}")
    conn.execute(
        f"CREATE TEMP TABLE {SCRATCH} (LIKE interactions INCLUDING DEFAULTS,"
        " merged integer, PRIMARY KEY (interaction_id))"
    )
    conn.execute(f"CREATE TEMP TABLE {DIFF} (interaction_id text PRIMARY KEY)")


def fold_range(conn: psycopg.Connection[Any], after: int, upto: int, fold_pass: int = 1) -> None:
    """Merge the events with after < id <= upto into the scratch table."""
    conn.execute(_MERGE_INTO_SCRATCH, {"after": after, "upto": upto, "pass": fold_pass})


# One of ``buckets`` disjoint sets of interactions (by a hash of the id): a partition folded
# by several sessions at once is split this way rather than by id, so that no interaction
# is folded (and merged) in two pieces of the same partition.
_BUCKET = "mod(hashtext(e.interaction_id)::bigint + 2147483648, %(buckets)s) = %(bucket)s"


def fold_slice_range(
    conn: psycopg.Connection[Any],
    piece: Slice,
    after: int,
    upto: int,
    bucket: tuple[int, int] = (0, 1),
) -> None:
    """Merge the events of one slice with after < id <= upto (and of the interactions in
    ``bucket``, (k, n): the k-th of n) into the scratch table."""
    condition, params = piece.condition()
    values: dict[str, Any] = {"after": after, "upto": upto, "pass": 1, **params}
    if bucket[1] > 1:
        condition += f" AND {_BUCKET}"
        values |= {"bucket": bucket[0], "buckets": bucket[1]}
    sql = _merge_into_scratch(_DELTA_OF.replace("__RANGE__", f"{_BY_ID} AND {condition}"))
    conn.execute(sql, values)


def rederive(conn: psycopg.Connection[Any], fold_pass: int = 1) -> None:
    """Derive state, capabilities and completed_at again for the scratch rows merged in
    ``fold_pass`` (merged by the writer's rules, which leave derived columns to the
    trigger)."""
    conn.execute(_REDERIVE, {"pass": fold_pass})


def load_baseline(conn: psycopg.Connection[Any]) -> int:
    """Start the scratch table from what purged months contributed; the rows loaded."""
    return conn.execute(_LOAD_BASELINE).rowcount


def _differences(conn: psycopg.Connection[Any], only_listed: bool) -> list[Difference]:
    if only_listed:
        scratch = f"(SELECT * FROM {SCRATCH} WHERE interaction_id IN (SELECT * FROM {DIFF}))"
        live = f"(SELECT * FROM interactions WHERE interaction_id IN (SELECT * FROM {DIFF}))"
    else:
        scratch, live = SCRATCH, "interactions"
    sql = _DIFF.replace("__SCRATCH__", scratch).replace("__LIVE__", live)
    rows = conn.execute(sql).fetchall()
    return [Difference(r[0], r[1], tuple(r[2])) for r in rows]


# One piece of work: fold some events into the session's scratch table; about how many.
Piece = tuple[Callable[[psycopg.Connection[Any]], None], int]


def _pieces_by_partition(
    conn: psycopg.Connection[Any], report: Report, chunk: int, jobs: int
) -> list[Piece]:
    """Each partition on its own, in pieces of at most ``chunk`` rows (split by id); a
    partition holding more than a ``jobs``-th of all rows is also split into ``jobs`` sets
    of interactions, so that every session has work.

    Every statement reads one partition: its time range lets the planner prune the others,
    where an id range alone (ids carry no time bound) plans and probes every partition,
    both in the scan and in the join back to the events for the messages."""
    found = slices(conn)
    report.events = sum(piece.rows for piece in found)
    report.built_upto = max((piece.upto for piece in found), default=0)
    pieces: list[Piece] = []
    for piece in found:
        count = max(1, -(-piece.rows // chunk))
        buckets = jobs if jobs > 1 and piece.rows * jobs > report.events else 1
        span = piece.upto - piece.after
        edges = [piece.after + span * n // count for n in range(count)] + [piece.upto]
        for n in range(count):
            rows = piece.rows * (edges[n + 1] - edges[n]) // span
            for k in range(buckets):

                def fold(c: psycopg.Connection[Any], p: Slice = piece, a: int = edges[n],
                         u: int = edges[n + 1], b: int = k, of: int = buckets) -> None:  # fmt: skip
                    fold_slice_range(c, p, a, u, (b, of))

                pieces.append((fold, rows // buckets))
    return pieces


def _pieces_by_id(
    conn: psycopg.Connection[Any], report: Report, chunk: int, jobs: int
) -> list[Piece]:
    """Event-id ranges of ``chunk`` ids (at most a ``jobs``-th of them) over the whole table
    (each statement plans and reads every partition; kept to compare, see
    bench/projection.py)."""
    low, high, report.events = event_bounds(conn)
    report.built_upto = high
    size = max(1, min(chunk, -(-(high - low) // jobs)))
    pieces: list[Piece] = []
    for after in range(low, high, size):
        upto = min(after + size, high)
        share = report.events * (upto - after) // max(1, high - low)

        def fold(c: psycopg.Connection[Any], a: int = after, u: int = upto) -> None:
            fold_range(c, a, u)

        pieces.append((fold, share))
    return pieces


def _settle(conn: psycopg.Connection[Any]) -> None:
    """Session settings for a fold: the sorts of the ordered aggregates stay in memory at
    this size, and so does the scratch table (temp_buffers can only change before a
    session's first temporary table)."""
    conn.execute("SET LOCAL work_mem = '128MB'")
    with contextlib.suppress(psycopg.errors.InvalidParameterValue), conn.transaction():
        conn.execute("SET LOCAL temp_buffers = '256MB'")


class _Progress:
    """Events folded, from every session; reported as (done, total)."""

    def __init__(self, total: int, report: Progress | None) -> None:
        self.total, self.done, self.report = total, 0, report
        self.lock = threading.Lock()

    def add(self, rows: int) -> None:
        with self.lock:
            self.done = min(self.total, self.done + rows)
            if self.report is not None:
                self.report(self.done, self.total)


def _work(conn: psycopg.Connection[Any], todo: queue.SimpleQueue[Piece], done: _Progress) -> None:
    while True:
        try:
            fold, rows = todo.get_nowait()
        except queue.Empty:
            return
        fold(conn)
        done.add(rows)


class _Helper(threading.Thread):
    """Another session folding pieces from the queue in the first session's snapshot."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        snapshot: str,
        todo: queue.SimpleQueue[Piece],
        done: _Progress,
    ) -> None:
        super().__init__(daemon=True)
        self.conn, self.snapshot, self.todo, self.done = conn, snapshot, todo, done
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            conn = self.conn
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            # The first statement of the transaction: from here on it sees what the first
            # session sees.
            conn.execute(
                psycopg.sql.SQL("SET TRANSACTION SNAPSHOT {}").format(
                    psycopg.sql.Literal(self.snapshot)
                )
            )
            _settle(conn)
            _create_scratch(conn)
            _work(conn, self.todo, self.done)
        except BaseException as exc:
            self.error = exc
            # Nobody else takes the remaining pieces: empty the queue so all stop soon.
            with contextlib.suppress(queue.Empty):
                while True:
                    self.todo.get_nowait()


def _merge_from(conn: psycopg.Connection[Any], helper: psycopg.Connection[Any]) -> None:
    """Copy the helper's scratch table into PART (binary COPY, passed through as bytes) and
    merge it into this session's scratch table."""
    conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {PART} (LIKE {SCRATCH})")
    conn.execute(f"TRUNCATE {PART}")
    with (
        helper.cursor().copy(f"COPY {SCRATCH} TO STDOUT (FORMAT binary)") as out,
        conn.cursor().copy(f"COPY {PART} FROM STDIN (FORMAT binary)") as into,
    ):
        for data in out:
            into.write(data)
    conn.execute(_MERGE_PART)


def _fold(
    conn: psycopg.Connection[Any],
    pieces: list[Piece],
    total: int,
    progress: Progress | None,
    jobs: int,
    connect: Callable[[], psycopg.Connection[Any]] | None,
) -> None:
    """Fold every piece into this session's scratch table, with ``jobs`` sessions at once
    when ``connect`` can open the others."""
    todo: queue.SimpleQueue[Piece] = queue.SimpleQueue()
    for piece in sorted(pieces, key=lambda p: -p[1]):  # the largest first: even finishes
        todo.put(piece)
    done = _Progress(total, progress)
    helpers: list[_Helper] = []
    try:
        if connect is not None and jobs > 1 and len(pieces) > 1:
            row = conn.execute("SELECT pg_export_snapshot()").fetchone()
            assert row is not None
            for _ in range(min(jobs, len(pieces)) - 1):
                helper = _Helper(connect(), str(row[0]), todo, done)
                helper.start()
                helpers.append(helper)
        _work(conn, todo, done)
        for helper in helpers:
            helper.join()
            if helper.error is not None:
                raise helper.error
        for helper in helpers:
            _merge_from(conn, helper.conn)
    except BaseException:
        # The helpers stop after their current piece.
        with contextlib.suppress(queue.Empty):
            while True:
                todo.get_nowait()
        raise
    finally:
        for helper in helpers:
            helper.join()
            helper.conn.close()
    if progress is not None:
        progress(total, total)


def check(
    conn: psycopg.Connection[Any],
    progress: Progress | None = None,
    chunk: int = DEFAULT_CHUNK,
    *,
    by_partition: bool = True,
    jobs: int = 1,
    connect: Callable[[], psycopg.Connection[Any]] | None = None,
) -> Report:
    """Recompute the projection from the events into a scratch table and list every
    difference from the live one, in one REPEATABLE READ snapshot.

    The connection must not be in a transaction (nor in autocommit); this sets its isolation
    level and leaves the snapshot transaction open for the caller to end. Reads only: any
    role that can SELECT events and interactions (and create temporary tables) can run it.
    With ``jobs`` > 1, ``connect`` opens the other sessions (same login, not autocommit;
    closed here) that fold in the same snapshot.
    """
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    _settle(conn)
    began = time.perf_counter()
    _create_scratch(conn)
    report = Report()
    report.baseline = load_baseline(conn)
    cut = _pieces_by_partition if by_partition else _pieces_by_id
    pieces = cut(conn, report, chunk, jobs if connect is not None else 1)
    _fold(conn, pieces, report.events, progress, jobs, connect)
    rederive(conn)
    compared = time.perf_counter()
    report.differences = _differences(conn, only_listed=False)
    report.build_seconds = compared - began
    report.compare_seconds = time.perf_counter() - compared
    row = conn.execute(f"SELECT count(*) FROM {SCRATCH}").fetchone()
    report.interactions = int(row[0]) if row else 0
    return report


def rebuild(
    conn: psycopg.Connection[Any],
    progress: Progress | None = None,
    chunk: int = DEFAULT_CHUNK,
    *,
    by_partition: bool = True,
    jobs: int = 1,
    connect: Callable[[], psycopg.Connection[Any]] | None = None,
) -> Report:
    """check(), then correct every difference, committed in one short transaction under the
    writer's lock. The connection must not be in a transaction; this commits.

    Runs as the writer's login (auditor_writer: SELECT on events, INSERT and UPDATE on
    interactions); removing a row no event supports goes through
    auditor_projection_remove_unbacked(), which can remove nothing else.
    """
    report = check(conn, progress, chunk, by_partition=by_partition, jobs=jobs, connect=connect)
    conn.execute(
        f"INSERT INTO {DIFF} SELECT DISTINCT unnest(%s::text[])",
        ([d.interaction_id for d in report.differences],),
    )
    conn.commit()  # the snapshot ends; the temporary tables stay for the session
    conn.isolation_level = None

    with conn.transaction():
        ledger.lock(conn)  # the writer waits from here to the commit
        row = conn.execute("SELECT max(id) FROM events").fetchone()
        newest = int(row[0]) if row and row[0] is not None else 0
        if newest > report.built_upto:
            # Interactions the writer touched since the snapshot: compared again too.
            conn.execute(
                f"INSERT INTO {DIFF} SELECT DISTINCT interaction_id FROM events"
                " WHERE id > %s AND id <= %s AND interaction_id IS NOT NULL"
                " ON CONFLICT DO NOTHING",
                (report.built_upto, newest),
            )
            conn.execute("SET LOCAL work_mem = '128MB'")
            fold_range(conn, report.built_upto, newest, fold_pass=2)
            rederive(conn, fold_pass=2)
        current = _differences(conn, only_listed=True)
        wrong = [d.interaction_id for d in current if d.kind != "unbacked"]
        unbacked = [d.interaction_id for d in current if d.kind == "unbacked"]
        if wrong:
            conn.execute(_APPLY, (wrong,))
        if unbacked:
            row = conn.execute(
                "SELECT auditor_projection_remove_unbacked(%s)", (unbacked,)
            ).fetchone()
            report.removed = int(row[0]) if row else 0
        report.fixed = len(wrong)
    conn.execute(f"DROP TABLE IF EXISTS pg_temp.{SCRATCH}, pg_temp.{DIFF}, pg_temp.{PART}")
    conn.commit()
    return report
