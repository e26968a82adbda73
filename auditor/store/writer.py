"""The batch writer: receipts in, events + projection + quarantine out, in the caller's
transaction.

One batch: reserve event ids → parse while COPYing straight into events (only when that
meets receipts stored before, i.e. a replay, look them up and COPY the rest) → fold exactly
the rows stored into the interactions projection → quarantine what could not be parsed.
Storing the same batch twice changes nothing. Event batches from all writers of a database
are serialised by a transaction-scoped advisory lock: event ids become visible in commit
order (a reader paging by id never skips a row), and no other writer can insert a receipt
between the duplicate check and the COPY.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

import psycopg

from auditor.notifications import Record, Rejected, parse
from auditor.store import projection
from auditor.store.receipts import Receipt

# pg_advisory_xact_lock key: 'audit' in ASCII. Shared with nothing else.
WRITER_LOCK_KEY = 0x6175646974

# COPY writes given values into an identity column, as INSERT ... OVERRIDING SYSTEM VALUE.
_COPY_EVENTS = (
    "COPY events (id, receipt_id, received_at, kind, account, channel, message_type,"
    " notification_type, interaction_id, reference_id, media_type, openmedia_type, state,"
    " error_code, error_message, payload) FROM STDIN"
)

# The time bounds let PostgreSQL look only at the partitions the batch can be in.
_ALREADY_STORED = """
SELECT e.receipt_id, e.received_at FROM events AS e
JOIN unnest(%s::uuid[], %s::timestamptz[]) AS k(receipt_id, received_at)
  ON e.receipt_id = k.receipt_id AND e.received_at = k.received_at
WHERE e.received_at >= %s AND e.received_at <= %s
"""

# One array rather than a row per id: fetching 2,000 rows cost more than reserving them.
_RESERVE_IDS = """
SELECT array_agg(id ORDER BY id)
FROM (SELECT nextval('events_id_seq') AS id FROM generate_series(1, %s)) AS reserved
"""

_QUARANTINE = """
INSERT INTO quarantine (receipt_id, received_at, account, channel, reason, raw)
SELECT * FROM unnest(%s::uuid[], %s::timestamptz[], %s::text[], %s::text[], %s::text[],
                     %s::bytea[])
ON CONFLICT (receipt_id) DO NOTHING
"""

# SQLSTATE classes that one bad row can cause (data exception, integrity violation, program
# limit exceeded); anything else (connection lost, lock timeout...) is the caller's to retry
# with the whole batch.
_ROW_ERROR_CLASSES = ("22", "23", "54")
_UNIQUE_VIOLATION = "23505"

Key = tuple[UUID, datetime]
Item = tuple[Receipt, Record]
Event = tuple[int, Receipt, Record]  # with its reserved event id


def _is_row_error(exc: psycopg.Error) -> bool:
    return exc.sqlstate is not None and exc.sqlstate[:2] in _ROW_ERROR_CLASSES


@dataclass(frozen=True, slots=True)
class BatchResult:
    received: int
    stored: int  # new events
    duplicates: int  # events and quarantine entries already stored by an earlier batch
    quarantined: int  # new quarantine entries
    last_event_id: int | None

    def __add__(self, other: BatchResult) -> BatchResult:
        ids = [i for i in (self.last_event_id, other.last_event_id) if i is not None]
        return BatchResult(
            self.received + other.received,
            self.stored + other.stored,
            self.duplicates + other.duplicates,
            self.quarantined + other.quarantined,
            max(ids) if ids else None,
        )


EMPTY = BatchResult(0, 0, 0, 0, None)


@dataclass(frozen=True, slots=True)
class PreparedBatch:
    """A batch parsed and sorted into records and rejects: pure work, no database."""

    receipts: Sequence[Receipt]
    good: list[Item]
    bad: list[tuple[Receipt, str]]


def prepare(receipts: Sequence[Receipt]) -> PreparedBatch:
    good: list[Item] = []
    bad: list[tuple[Receipt, str]] = []
    for receipt in receipts:
        record = _parse_into(receipt, bad)
        if record is not None:
            good.append((receipt, record))
    return PreparedBatch(receipts, good, bad)


def _reserve_ids(conn: psycopg.Connection[Any], count: int) -> list[int]:
    with conn.cursor(binary=True) as cur:
        row = cur.execute(_RESERVE_IDS, (count,)).fetchone()
    assert row is not None  # an aggregate always returns a row
    ids: list[int] = row[0]
    return ids


def _key(receipt: Receipt) -> Key:
    return receipt.receipt_id, receipt.received_at


def _unique(items: Sequence[Item]) -> list[Item]:
    """Each receipt once (a batch may hold the same receipt twice), in batch order."""
    unique: dict[Key, Item] = {}
    for item in items:
        unique.setdefault(_key(item[0]), item)
    return list(unique.values())


def _not_stored(conn: psycopg.Connection[Any], events: Sequence[Event]) -> list[Event]:
    """The events whose receipts are not in the table yet, in batch order."""
    keys = [_key(receipt) for _, receipt, _ in events]
    times = [k[1] for k in keys]
    found = {
        # PostgreSQL returns the instant in its own zone; aware datetimes compare by instant.
        (receipt_id, received_at)
        for receipt_id, received_at in conn.execute(
            _ALREADY_STORED, ([k[0] for k in keys], times, min(times), max(times))
        )
    }
    return [event for event, key in zip(events, keys, strict=True) if key not in found]


def _copy_row(event_id: int, receipt: Receipt, record: Record) -> tuple[object, ...]:
    return (
        event_id,
        receipt.receipt_id,
        receipt.received_at,
        receipt.kind,
        receipt.account,
        record.channel,
        record.message_type,
        record.notification_type,
        record.interaction_id,
        record.reference_id,
        record.media_type,
        record.openmedia_type,
        record.state,
        record.error_code,
        record.error_message,
        record.payload_text,
    )


def _copy(conn: psycopg.Connection[Any], events: Sequence[Event]) -> None:
    """COPY in a savepoint: on error nothing of it remains."""
    with conn.transaction(), conn.cursor() as cur, cur.copy(_COPY_EVENTS) as copy:
        for event in events:
            copy.write_row(_copy_row(*event))


class _Outcome:
    def __init__(self) -> None:
        self.stored: list[Event] = []
        self.refused: list[tuple[Receipt, str]] = []
        self.duplicates = 0


def _copy_or_bisect(conn: psycopg.Connection[Any], events: Sequence[Event], out: _Outcome) -> None:
    """COPY events; rows PostgreSQL refuses are bisected out and recorded with the reason."""
    if not events:
        return
    try:
        _copy(conn, events)
        out.stored.extend(events)
        return
    except psycopg.Error as exc:
        if not _is_row_error(exc):
            raise
        if len(events) == 1:
            if exc.sqlstate == _UNIQUE_VIOLATION:
                out.duplicates += 1  # stored meanwhile by a writer that skipped the lock
            else:
                diag = exc.diag.message_primary or str(exc)
                out.refused.append((events[0][1], f"PostgreSQL refused it: {exc.sqlstate} {diag}"))
            return
    half = len(events) // 2
    _copy_or_bisect(conn, events[:half], out)
    _copy_or_bisect(conn, events[half:], out)


def _quarantine(conn: psycopg.Connection[Any], items: Sequence[tuple[Receipt, str]]) -> int:
    if not items:
        return 0
    with conn.cursor() as cur:
        cur.execute(
            _QUARANTINE,
            (
                [r.receipt_id for r, _ in items],
                [r.received_at for r, _ in items],
                [r.account for r, _ in items],
                [r.channel for r, _ in items],
                [reason for _, reason in items],
                [
                    r.raw if isinstance(r.raw, bytes) else r.raw.encode("utf-8", "surrogatepass")
                    for r, _ in items
                ],
            ),
        )
        return cur.rowcount


def _months(receipts: Sequence[Receipt]) -> list[date]:
    months = set()
    for receipt in receipts:
        utc = receipt.received_at.astimezone(UTC)
        months.add(date(utc.year, utc.month, 1))
    return sorted(months)


def _parse_into(receipt: Receipt, bad: list[tuple[Receipt, str]]) -> Record | None:
    if receipt.defect is not None:
        bad.append((receipt, receipt.defect))
        return None
    outcome = parse(receipt.raw, channel=receipt.channel)
    if isinstance(outcome, Rejected):
        bad.append((receipt, outcome.reason))
        return None
    return outcome


def _copy_streaming(
    conn: psycopg.Connection[Any],
    receipts: Sequence[Receipt],
    ids: Sequence[int],
    bad: list[tuple[Receipt, str]],
    folded: projection.Fold,
) -> list[Event]:
    """Parse and fold while copying: PostgreSQL works on the rows already sent while Python
    parses and folds the next ones. Raises like _copy; then nothing of it remains, and the
    fold must be thrown away."""
    events: list[Event] = []
    next_id = iter(ids)
    with conn.transaction(), conn.cursor() as cur, cur.copy(_COPY_EVENTS) as copy:
        for receipt in receipts:
            record = _parse_into(receipt, bad)
            if record is not None:
                event = (next(next_id), receipt, record)
                copy.write_row(_copy_row(*event))
                folded.add(*event)
                events.append(event)
    return events


def store_batch(conn: psycopg.Connection[Any], receipts: Sequence[Receipt]) -> BatchResult:
    """Store receipts as events (or quarantine entries) in the caller's open transaction.

    The caller commits. Every receipt ends up as an event or in quarantine, or is reported as
    a duplicate of one stored before; an error escaping from here means nothing was decided
    and the whole batch must be retried.
    """
    if not receipts:
        return EMPTY
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITER_LOCK_KEY,))
    for month in _months(receipts):
        conn.execute("SELECT auditor_ensure_event_partition(%s)", (month,))
    # Ids are taken under the lock, so they grow in commit order; sorted, they follow arrival
    # order within the batch. Those of rejected receipts are simply never used.
    ids = _reserve_ids(conn, len(receipts))
    out = _Outcome()
    bad: list[tuple[Receipt, str]] = []
    folded = projection.Fold()
    try:
        # The usual case: all new.
        out.stored = _copy_streaming(conn, receipts, ids, bad, folded)
    except psycopg.Error as exc:
        if not _is_row_error(exc):
            raise
        # A replay (some receipts stored before), the same receipt twice in the batch, or a
        # row PostgreSQL refuses: sort it out slowly.
        batch = prepare(receipts)
        bad = list(batch.bad)
        items = _unique(batch.good)
        events = [(i, r, rec) for i, (r, rec) in zip(ids, items, strict=False)]
        _copy_or_bisect(conn, _not_stored(conn, events), out)
        folded = projection.Fold(out.stored)
    projection.write(conn, folded.rows())
    quarantined = _quarantine(conn, bad + out.refused)
    return BatchResult(
        received=len(receipts),
        stored=len(out.stored),
        duplicates=len(receipts) - len(out.stored) - quarantined,
        quarantined=quarantined,
        last_event_id=out.stored[-1][0] if out.stored else None,
    )
