"""Verification of the record from the stored rows alone (`auditor verify`, the integrity API).

For each position in order: the row it names must exist (else *missing*), its leaf recomputed
from the row must equal the stored leaf hash (else *altered*, or *reordered* when it is the
leaf of another position), and the chain hash must be SHA-256(previous chain hash || leaf
hash) (else *inserted* when skipping the position before mends the chain, *reordered* when
the leaf belongs elsewhere, otherwise *altered*: the record itself was changed). Positions
must run without a gap (else *missing*). The first problem found is reported; a consistent
rewrite of the whole tail is not a problem this can see: that takes a kept checkpoint.

Purged events (docs/retention.md): a position whose event row is gone is not *missing* when
a purge receipt sealed in the record names it; its chain link is still checked, and the
leaf hashes at a receipt's positions must hash to what the receipt sealed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg

from auditor.evidence.canonical import ZERO_HASH, chain_next
from auditor.retention.receipts import PurgedPositions, sealed_receipts
from auditor.store import leaf_copy, leaf_reader
from auditor.store.leaf_reader import DUPLICATE, LeafSource, Leaves
from auditor.store.sealer import UNSEALED_SOURCES, unsealed_counts

_BATCH = 10_000
_POOL_FROM = 4 * _BATCH  # fewer positions: starting processes costs more than it saves
_RECORD = (
    "SELECT position, source, source_id, leaf_hash, chain_hash, leaves FROM record"
    " WHERE position >= %s AND position <= %s ORDER BY position"
)
_BOUNDS = "SELECT coalesce(max(position), 0) FROM record"
_CHAIN_AT = "SELECT chain_hash FROM record WHERE position = %s"

Progress = Callable[[int], None]  # positions checked since the last call
Careful = Callable[[str, int], bytes | None]  # (source, id) -> the reference leaf hash
# (position, source, source_id, leaf_hash, chain_hash, leaves: None for format 1)
RecordRow = tuple[int, str, int, bytes, bytes, bytes | None]


@dataclass(frozen=True)
class Problem:
    position: int
    kind: str  # altered | missing | reordered | inserted
    detail: str


@dataclass
class Report:
    start: int
    end: int  # last position checked (0 when the record is empty)
    checked: int = 0  # positions
    rows: int = 0  # stored rows recomputed (a format-2 position holds many events)
    problem: Problem | None = None
    unsealed: dict[str, int] = field(default_factory=dict)
    purged: list[str] = field(default_factory=list)  # receipts whose positions were skipped
    purged_positions: int = 0

    @property
    def ok(self) -> bool:
        return self.problem is None


class BadRange(ValueError):
    """A position range that does not fit the record."""


class _Checker:
    def __init__(self, previous: bytes, start: int, purged: PurgedPositions | None = None) -> None:
        self.purged = purged or None  # None when there is no receipt: no lookup per row
        self.previous = previous
        self.before_previous: bytes | None = None
        self.expected = start
        self.skipped = 0
        self.rows = 0

    def check(
        self, batch: Sequence[RecordRow], recomputed_leaves: Leaves, careful: Careful
    ) -> Problem | None:
        """``recomputed_leaves``: the leaf hash of every stored row the batch names, by the
        fast encoding (auditor.store.leaf_sql); ``careful`` gives the reference's, asked
        for before a row is called altered."""
        sha256 = hashlib.sha256  # chain_next without its length checks: a hash of another
        # length cannot equal a stored one of 32 bytes (the record's CHECK), so it fails anyway
        for index, (position, source, source_id, leaf, chain, leaves) in enumerate(batch):
            if position != self.expected:
                return Problem(
                    self.expected,
                    "missing",
                    f"positions jump from {self.expected - 1} to {position}",
                )
            if leaves is not None:
                problem = self._check_batch(batch, index, recomputed_leaves, careful)
                if problem is not None:
                    return problem
                self.before_previous, self.previous = self.previous, chain
                self.expected += 1
                continue
            receipt = None
            if self.purged is not None and source == "event":
                receipt = self.purged.receipt_of(position)
                if receipt is not None:
                    receipt.seen += 1
                    receipt.digest.update(leaf)
            recomputed = recomputed_leaves.get((source, source_id))
            if recomputed is None:
                if receipt is None:
                    return Problem(position, "missing", f"{source} {source_id} is not in its table")
                if sha256(self.previous + leaf).digest() != chain:
                    return self._chain_broken(batch, index)
                self.skipped += 1
                self.before_previous, self.previous = self.previous, chain
                self.expected += 1
                continue
            if sha256(self.previous + leaf).digest() != chain:
                return self._chain_broken(batch, index)
            if recomputed is DUPLICATE:
                return _twice(position, source, source_id)
            if recomputed != leaf:
                recomputed = careful(source, source_id) or recomputed
                if recomputed != leaf:
                    return self._leaf_broken(batch, index, recomputed)
            self.rows += 1
            self.before_previous, self.previous = self.previous, chain
            self.expected += 1
        return None

    def _check_batch(
        self, batch: Sequence[RecordRow], index: int, recomputed_leaves: Leaves, careful: Careful
    ) -> Problem | None:
        """A format-2 row (auditor.evidence.batches): its chain link, its leaf hash over the
        leaves it carries, then each event's leaf against its slot."""
        position, _, first, leaf, chain, joined = batch[index]
        assert joined is not None
        if hashlib.sha256(self.previous + leaf).digest() != chain:
            return self._chain_broken(batch, index)
        if leaf_copy.batch_leaf_hash(bytes(joined)) != bytes(leaf):
            return Problem(
                position,
                "altered",
                f"the batch of events from {first} holds leaf hashes other than it sealed:"
                " the record was changed",
            )
        if self.purged is not None:
            receipt = self.purged.receipt_of(position)
            if receipt is not None:
                receipt.seen += 1
                receipt.digest.update(leaf)
                if ("event", first) not in recomputed_leaves:  # gone with their partition
                    self.skipped += 1
                    return None
        slots = memoryview(joined)
        count = len(slots) // 32
        # The fast path's table: the whole batch in one comparison when it holds every id
        # once (leaf_reader.Leaves.span); else, or when anything differs, slot by slot.
        span = recomputed_leaves.span("event", first, count)
        if span is not None and span == joined:
            self.rows += count
            return None
        for slot in range(count):
            event_id = first + slot
            sealed = bytes(slots[slot * 32 : slot * 32 + 32])
            recomputed = recomputed_leaves.get(("event", event_id))
            if recomputed is None:
                return Problem(
                    position, "missing", f"event {event_id} (batch slot {slot}) is not in its table"
                )
            if recomputed == sealed:
                continue
            if recomputed is DUPLICATE:
                return _twice(position, "event", event_id, f" (batch slot {slot})")
            recomputed = careful("event", event_id) or recomputed
            if recomputed == sealed:
                continue
            for other in range(count):
                if bytes(slots[other * 32 : other * 32 + 32]) == recomputed:
                    return Problem(
                        position,
                        "reordered",
                        f"event {event_id} now holds what was sealed for event {first + other}"
                        " of the same batch",
                    )
            for row in batch:
                if row[0] != position and bytes(row[3]) == recomputed:
                    return Problem(
                        position,
                        "reordered",
                        f"event {event_id} now holds what was sealed at position {row[0]}",
                    )
            return Problem(
                position,
                "altered",
                f"event {event_id} (batch slot {slot}) differs from what was sealed",
            )
        self.rows += count
        return None

    def _leaf_broken(self, batch: Sequence[RecordRow], index: int, recomputed: bytes) -> Problem:
        position, source, source_id = batch[index][:3]
        for other in batch:
            if other[0] != position and bytes(other[3]) == recomputed:
                return Problem(
                    position,
                    "reordered",
                    f"{source} {source_id} now holds what was sealed at position {other[0]}",
                )
        return Problem(position, "altered", f"{source} {source_id} differs from what was sealed")

    def _chain_broken(self, batch: Sequence[RecordRow], index: int) -> Problem:
        position, source, source_id, leaf, chain = batch[index][:5]
        # A row slipped in just before: without it the chain goes on as sealed.
        if (
            index > 0
            and self.before_previous is not None
            and chain_next(self.before_previous, bytes(leaf)) == bytes(chain)
        ):
            before = batch[index - 1]
            return Problem(
                before[0],
                "inserted",
                f"{before[1]} {before[2]} was put into the record after it was sealed",
            )
        # A leaf that belongs at this position sits elsewhere.
        for other in batch[index + 1 :]:
            link = chain_next(self.previous, bytes(other[3]))
            if link in (bytes(chain), bytes(other[4])):
                return Problem(
                    position,
                    "reordered",
                    f"the row sealed at position {position} is now at position {other[0]}",
                )
        return Problem(
            position,
            "altered",
            f"the record's chain breaks at {source} {source_id}: its hashes were changed",
        )


def _twice(position: int, source: str, source_id: int, where: str = "") -> Problem:
    """Two stored rows carry one sealed id (auditor.store.leaf_reader.DUPLICATE): one of
    them was put in after sealing, whichever of them the record's leaf matches."""
    return Problem(position, "inserted", f"{source} {source_id}{where} is in its table twice")


def resolve_range(
    conn: psycopg.Connection[Any], start: int | None, end: int | None
) -> tuple[int, int]:
    """[first, last] positions to check; the whole record by default. Raises BadRange."""
    last = int(conn.execute(_BOUNDS).fetchone()[0])  # type: ignore[index]
    first = 1 if start is None else start
    stop = last if end is None else end
    if first < 1:
        raise BadRange("positions start at 1")
    if first > stop and not (last == 0 and start is None):
        raise BadRange(f"the range {first}..{stop} is empty (the record holds 1..{last})")
    if stop > last:
        raise BadRange(f"the record ends at position {last}")
    return first, stop


def verify(
    conn: psycopg.Connection[Any],
    start: int | None = None,
    end: int | None = None,
    progress: Progress | None = None,
    with_unsealed: bool = True,
    *,
    workers: int = 1,
    conninfo: str | None = None,
    pool_from: int = _POOL_FROM,
) -> Report:
    """Check positions [start, end] (default: the whole record) in the caller's
    transaction. A range that starts after 1 trusts the stored chain hash before it.

    With ``workers`` > 1 and ``conninfo`` (how to connect as the caller), a range of at
    least ``pool_from`` positions is re-hashed by that many processes reading in the caller's
    snapshot (the caller's transaction must not have written: they would not see it).
    """
    first, stop = resolve_range(conn, start, end)
    report = Report(first, stop)
    previous = ZERO_HASH
    if first > 1:
        row = conn.execute(_CHAIN_AT, (first - 1,)).fetchone()
        if row is None:
            report.problem = Problem(first - 1, "missing", "no record row at this position")
            return report
        previous = bytes(row[0])
    purged = sealed_receipts(conn)
    checker = _Checker(previous, first, purged)
    pooled = workers > 1 and stop - first + 1 >= pool_from
    source = _leaf_source(conn, workers, conninfo, pooled)
    try:
        # binary: the hashes arrive as bytes, not as hex text to decode
        with conn.cursor(name="verify_record", binary=True) as cur:
            cur.itersize = _BATCH
            cur.execute(_RECORD, (first, stop))
            _walk(cur, checker, source, report, progress)
    finally:
        source.close()
    report.purged_positions = checker.skipped
    report.rows = checker.rows
    for receipt in purged.receipts:
        if receipt.seen:
            report.purged.append(receipt.describe())
        whole = first <= receipt.first and receipt.last <= first + report.checked - 1
        if report.problem is None and whole and receipt.digest.digest() != receipt.leaves_sha256:
            report.problem = Problem(
                receipt.position,
                "altered",
                f"purge receipt {receipt.id} ({receipt.partition}) does not match the leaves"
                " at the positions it names",
            )
    if report.problem is None and report.checked < stop - first + 1:
        report.problem = Problem(
            first + report.checked,
            "missing",
            f"the record ends at position {first + report.checked - 1}",
        )
    if with_unsealed:
        report.unsealed = unsealed(conn)
    return report


def _leaf_source(
    conn: psycopg.Connection[Any], workers: int, conninfo: str | None, pooled: bool
) -> LeafSource:
    if conninfo is None or conn.autocommit:
        return leaf_reader.LocalLeaves(conn)
    snapshot = str(conn.execute("SELECT pg_export_snapshot()").fetchone()[0])  # type: ignore[index]
    if not pooled:
        return leaf_reader.PrefetchedLeaves(conn, conninfo, snapshot)
    return leaf_reader.PooledLeaves(conn, conninfo, snapshot, workers)


class _Groups:
    """Record rows in groups of at most _BATCH stored rows (a format-2 row weighs its
    leaf_count, a format-1 row one; a batch heavier than that is a group alone), so a group's
    rows are read and hashed while the next group is fetched whatever the record's format."""

    def __init__(self, cur: psycopg.Cursor[Any]) -> None:
        self.cur = cur
        self.pending: list[Any] = []
        self.done = False

    def next(self) -> list[Any]:
        group: list[Any] = []
        weight = 0
        while True:
            if not self.pending:
                if self.done:
                    return group
                self.pending = self.cur.fetchmany(_BATCH)
                self.pending.reverse()  # pop() from the end in position order
                if not self.pending:
                    self.done = True
                    return group
            row = self.pending[-1]
            rows = 1 if row[5] is None else len(row[5]) // 32
            if group and weight + rows > _BATCH:
                return group
            group.append(self.pending.pop())
            weight += rows


def _walk(
    cur: psycopg.Cursor[Any],
    checker: _Checker,
    source: LeafSource,
    report: Report,
    progress: Progress | None,
) -> None:
    """Check batch after batch. The next batch's leaves are asked for before this one is
    checked, so a pool hashes (or the reading thread reads) while this process walks the
    chain, and a thread fetches the record rows of the batch after it meanwhile: this
    thread then waits for PostgreSQL only when it is the slower side."""
    first = checker.expected
    groups = _Groups(cur)
    with ThreadPoolExecutor(1, thread_name_prefix="verify-record") as reader:
        batch = groups.next()
        pending = source.submit(leaf_reader.wanted(leaf_reader.refs(batch)))
        fetching = reader.submit(groups.next) if batch else None
        while batch:
            following = fetching.result() if fetching is not None else []
            fetching = reader.submit(groups.next) if following else None
            ahead = (
                source.submit(leaf_reader.wanted(leaf_reader.refs(following)))
                if following
                else None
            )
            problem = checker.check(batch, pending(), source.careful)
            checked = checker.expected - first - report.checked
            report.checked += checked
            if progress is not None:
                progress(checked)
            if problem is not None:
                report.problem = problem
                return
            batch = following
            if ahead is not None:
                pending = ahead


def unsealed(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Rows not in the record yet, per source (only sources that have some)."""
    return {k: v for k, v in unsealed_counts(conn, UNSEALED_SOURCES).items() if v}
