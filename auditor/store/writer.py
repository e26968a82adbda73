"""The batch writer: receipts in, events + projection + quarantine out, in the caller's
transaction.

One batch: parse, hash and fold while COPYing straight into events (only when that meets
receipts stored before, i.e. a replay, look them up and COPY the rest) → add the user-data
values that changed (auditor.store.userdata_values) and fold exactly the rows stored into the
interactions projection → quarantine what could not be parsed →
append every new event and quarantine entry to the hash-chained record (auditor.store.record).
Storing the same batch twice changes nothing. Event batches from all writers of a database
are serialised by a transaction-scoped advisory lock: event ids and record positions become
visible in commit order (a reader paging by id never skips a row), and no other writer can
insert a receipt between the duplicate check and the COPY.

Event ids come from the table's identity (the writer may not choose them): under the lock
they are the sequence's next values in COPY order, read before the COPY so each row's leaf
(which holds its id) is hashed while PostgreSQL works, and checked after it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from hashlib import sha256
from typing import Any
from uuid import UUID

import psycopg

from auditor import db
from auditor.evidence import batches
from auditor.evidence.canonical import leaf_hash
from auditor.evidence.leaves import LeafEncoder, Parsed
from auditor.notifications import Record, Rejected, parse
from auditor.store import event_references, projection, userdata_values
from auditor.store import record as ledger
from auditor.store.receipts import Receipt

WRITER_LOCK_KEY = ledger.WRITER_LOCK_KEY
# The record format the writer seals events in (docs/evidence.md): 2, one record row per run
# of contiguous event ids of one month in a batch; 1, one record row per event (what every
# writer before migration 2026_12_03_chainv2 did; kept for comparison in bench/store.py).
RECORD_FORMAT = 2

# The COPY row of an event, derived from db.events: every column the parsed record carries
# (by its name; the payload as the text parse() read), else the receipt, in that order.
# A column neither carries (one added for a later writer) stays NULL, which leaves the
# event's leaf unchanged (NULLs are not in it); it must have no default, or the stored row
# would differ from the hashed one. PostgreSQL assigns the id (identity) and stored_at.
_ASSIGNED = ("id", "stored_at")
_RECORD_ATTRIBUTES = {"payload": "payload_text"}
_RECORD_FIELDS = set(Record.__dataclass_fields__) - {"payload"} | {"payload_text"}
_RECEIPT_FIELDS = set(Receipt.__dataclass_fields__)
# str(): SQLAlchemy's column names are a str subclass, and orjson refuses any key but an
# exact str: the leaf's one-call encoding would fail on every event and take the careful way.
_FROM_RECORD = tuple(
    str(c.name)
    for c in db.events.columns
    if c.name not in _ASSIGNED and _RECORD_ATTRIBUTES.get(c.name, c.name) in _RECORD_FIELDS
)
_FROM_RECEIPT = tuple(
    str(c.name)
    for c in db.events.columns
    if c.name not in _ASSIGNED and c.name not in _FROM_RECORD and c.name in _RECEIPT_FIELDS
)
_COPY_COLUMNS = _FROM_RECEIPT + _FROM_RECORD
_UNWRITTEN = tuple(
    str(c.name)
    for c in db.events.columns
    if c.name not in _ASSIGNED and c.name not in _COPY_COLUMNS
)
for _name in _UNWRITTEN:
    _column = db.events.columns[_name]
    if not _column.nullable or _column.server_default is not None:
        raise RuntimeError(f"events.{_name} is neither written by the writer nor left NULL")


def _row_builder() -> Callable[[Receipt, Record], tuple[object, ...]]:
    """The COPY row as one tuple display, generated once from the derived names: as fast as
    the hand-written tuple it replaces, where operator.attrgetter over the same 15 names is
    7x slower (0.8 against 0.12 us a row). The names are the table's column names and the
    two dataclasses' fields, checked to be identifiers; nothing from input."""
    items = [f"receipt.{n}" for n in _FROM_RECEIPT] + [
        f"record.{_RECORD_ATTRIBUTES.get(n, n)}" for n in _FROM_RECORD
    ]
    if not all(item.replace(".", "_").isidentifier() for item in items):
        raise RuntimeError("a column of events is not an identifier")
    built: Callable[[Receipt, Record], tuple[object, ...]] = eval(  # noqa: S307
        f"lambda receipt, record: ({', '.join(items)},)", {}
    )
    return built


_copy_row = _row_builder()
_COPY_EVENTS = f"COPY events ({', '.join(_COPY_COLUMNS)}) FROM STDIN"
_EVENT_LEAF = LeafEncoder("event")
# The event's leaf fields are the COPY columns, the id and the unwritten (NULL) columns.
if set(_EVENT_LEAF.fields) != {"id", *_COPY_COLUMNS, *_UNWRITTEN}:
    raise RuntimeError("the writer's COPY columns no longer match the event leaf")
_QUARANTINE_LEAF = LeafEncoder("quarantine")
# The event's leaf in C from the COPY row, its id and the parsed payload (the COPY row's
# payload text skipped), prefixed for the leaf hash; None without the extension.
_EVENT_NATIVE = _EVENT_LEAF.native(
    (*(None if name == "payload" else name for name in _COPY_COLUMNS), "id", "payload"),
    values=("payload",),
)

_NEXT_ID = "SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM events_id_seq"
_LAST_ID = "SELECT currval('events_id_seq')"

# The time bounds let PostgreSQL look only at the partitions the batch can be in.
_ALREADY_STORED = """
SELECT e.receipt_id, e.received_at FROM events AS e
JOIN unnest(%s::uuid[], %s::timestamptz[]) AS k(receipt_id, received_at)
  ON e.receipt_id = k.receipt_id AND e.received_at = k.received_at
WHERE e.received_at >= %s AND e.received_at <= %s
"""

_QUARANTINE = """
INSERT INTO quarantine (receipt_id, received_at, account, channel, reason, raw)
SELECT * FROM unnest(%s::uuid[], %s::timestamptz[], %s::text[], %s::text[], %s::text[],
                     %s::bytea[])
ON CONFLICT (receipt_id) DO NOTHING
RETURNING id, receipt_id
"""

# SQLSTATE classes that one bad row can cause (data exception, integrity violation, program
# limit exceeded); anything else (connection lost, lock timeout...) is the caller's to retry
# with the whole batch.
_ROW_ERROR_CLASSES = ("22", "23", "54")
_UNIQUE_VIOLATION = "23505"

Key = tuple[UUID, datetime]
Item = tuple[Receipt, Record]
Event = tuple[int, Receipt, Record]  # with its event id


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


def _next_id(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(_NEXT_ID).fetchone()
    assert row is not None
    return int(row[0])


def _check_ids(conn: psycopg.Connection[Any], events: Sequence[Event]) -> None:
    """The identity gave the rows the ids they were hashed with; under the lock it always
    does, unless a session that skipped the lock took values meanwhile."""
    if not events:
        return
    row = conn.execute(_LAST_ID).fetchone()
    if row is None or int(row[0]) != events[-1][0]:
        raise psycopg.OperationalError(
            "event ids were taken by another session during the batch; retry it"
        )


def _leaf(event_id: int, receipt: Receipt, record: Record) -> tuple[tuple[object, ...], bytes]:
    """The COPY row and the leaf hash of one event. Raises ValueError when the payload has
    no canonical form (docs/evidence.md), which sends the receipt to quarantine."""
    row = _copy_row(receipt, record)
    if _EVENT_NATIVE is not None:
        prefixed = _EVENT_NATIVE(row, event_id, record.payload)
        if prefixed is not None:
            return row, sha256(prefixed).digest()
    # The leaf's dict built once, NULLs left out (the encoder's own pass is skipped).
    leaf = {
        name: value for name, value in zip(_COPY_COLUMNS, row, strict=True) if value is not None
    }
    leaf["id"] = event_id
    # The payload with the value parse() decoded, not decoded a second time.
    payload = leaf["payload"] = Parsed(record.payload_text, record.payload)

    def whole() -> dict[str, Any]:
        return {
            **dict.fromkeys(_UNWRITTEN),
            **dict(zip(_COPY_COLUMNS, row, strict=True)),
            "id": event_id,
            "payload": payload,
        }

    return row, leaf_hash(_EVENT_LEAF.encode_present(leaf, whole))


def _key(receipt: Receipt) -> Key:
    return receipt.receipt_id, receipt.received_at


def _unique(items: Sequence[Item]) -> list[Item]:
    """Each receipt once (a batch may hold the same receipt twice), in batch order."""
    unique: dict[Key, Item] = {}
    for item in items:
        unique.setdefault(_key(item[0]), item)
    return list(unique.values())


def _not_stored(conn: psycopg.Connection[Any], items: Sequence[Item]) -> list[Item]:
    """The items whose receipts are not in the table yet, in batch order."""
    if not items:
        return []
    keys = [_key(receipt) for receipt, _ in items]
    times = [k[1] for k in keys]
    found = {
        # PostgreSQL returns the instant in its own zone; aware datetimes compare by instant.
        (receipt_id, received_at)
        for receipt_id, received_at in conn.execute(
            _ALREADY_STORED, ([k[0] for k in keys], times, min(times), max(times))
        )
    }
    return [item for item, key in zip(items, keys, strict=True) if key not in found]


class _Outcome:
    def __init__(self) -> None:
        self.stored: list[Event] = []
        self.leaves: list[bytes] = []  # of the stored events, in the same order
        self.refused: list[tuple[Receipt, str]] = []
        self.duplicates = 0


def _copy(conn: psycopg.Connection[Any], items: Sequence[Item], out: _Outcome) -> None:
    """COPY in a savepoint: on error nothing of it remains (and out is unchanged)."""
    events: list[Event] = []
    leaves: list[bytes] = []
    refused: list[tuple[Receipt, str]] = []
    with conn.transaction():
        next_id = _next_id(conn)
        with conn.cursor() as cur, cur.copy(_COPY_EVENTS) as copy:
            for receipt, record in items:
                try:
                    row, leaf = _leaf(next_id, receipt, record)
                except ValueError as exc:
                    refused.append((receipt, f"no canonical form for the record: {exc}"))
                    continue
                copy.write_row(row)
                events.append((next_id, receipt, record))
                leaves.append(leaf)
                next_id += 1
        _check_ids(conn, events)
    out.stored.extend(events)
    out.leaves.extend(leaves)
    out.refused.extend(refused)


def _copy_or_bisect(conn: psycopg.Connection[Any], items: Sequence[Item], out: _Outcome) -> None:
    """COPY events; rows PostgreSQL refuses are bisected out and recorded with the reason."""
    if not items:
        return
    try:
        _copy(conn, items, out)
        return
    except psycopg.Error as exc:
        if not _is_row_error(exc):
            raise
        if len(items) == 1:
            if exc.sqlstate == _UNIQUE_VIOLATION:
                out.duplicates += 1  # stored meanwhile by a writer that skipped the lock
            else:
                diag = exc.diag.message_primary or str(exc)
                out.refused.append((items[0][0], f"PostgreSQL refused it: {exc.sqlstate} {diag}"))
            return
    half = len(items) // 2
    _copy_or_bisect(conn, items[:half], out)
    _copy_or_bisect(conn, items[half:], out)


def _quarantine(
    conn: psycopg.Connection[Any], items: Sequence[tuple[Receipt, str]]
) -> list[ledger.Leaf]:
    """Insert the new quarantine entries; their record leaves, in id order."""
    if not items:
        return []
    raws = [
        r.raw if isinstance(r.raw, bytes) else r.raw.encode("utf-8", "surrogatepass")
        for r, _ in items
    ]
    with conn.cursor() as cur:
        cur.execute(
            _QUARANTINE,
            (
                [r.receipt_id for r, _ in items],
                [r.received_at for r, _ in items],
                [r.account for r, _ in items],
                [r.channel for r, _ in items],
                [reason for _, reason in items],
                raws,
            ),
        )
        inserted = {row[1]: int(row[0]) for row in cur.fetchall()}
    leaves = []
    for (receipt, reason), raw in zip(items, raws, strict=True):
        entry_id = inserted.pop(receipt.receipt_id, None)
        if entry_id is None:
            continue  # stored before, or twice in this batch
        values = {
            "id": entry_id,
            "receipt_id": receipt.receipt_id,
            "received_at": receipt.received_at,
            "account": receipt.account,
            "channel": receipt.channel,
            "reason": reason,
            "raw": raw,
        }
        encoded = _QUARANTINE_LEAF.encode([values[f] for f in _QUARANTINE_LEAF.fields])
        leaves.append(("quarantine", entry_id, leaf_hash(encoded)))
    leaves.sort(key=lambda leaf: leaf[1])
    return leaves


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
    bad: list[tuple[Receipt, str]],
    folded: projection.Fold,
    values: userdata_values.Changes,
    out: _Outcome,
) -> None:
    """Parse, hash and fold while copying: PostgreSQL works on the rows already sent while
    Python parses, hashes and folds the next ones. Raises like _copy; then nothing of it
    remains, and the fold, bad and out must be thrown away."""
    with conn.transaction():
        next_id = _next_id(conn)
        with conn.cursor() as cur, cur.copy(_COPY_EVENTS) as copy:
            for receipt in receipts:
                record = _parse_into(receipt, bad)
                if record is None:
                    continue
                try:
                    row, leaf = _leaf(next_id, receipt, record)
                except ValueError as exc:
                    bad.append((receipt, f"no canonical form for the record: {exc}"))
                    continue
                copy.write_row(row)
                folded.add(next_id, receipt, record)
                values.add(next_id, record)
                out.stored.append((next_id, receipt, record))
                out.leaves.append(leaf)
                next_id += 1
        _check_ids(conn, out.stored)


def _batch_rows(out: _Outcome) -> list[ledger.BatchLeaf]:
    """Format-2 record rows for the stored events: one per run of contiguous ids within one
    month (a retention purge drops a month's partition and names whole batch rows; ids jump
    only where the slow path's bisection refused rows)."""
    stored = out.stored
    if stored and stored[-1][0] - stored[0][0] == len(stored) - 1:
        # The usual batch: contiguous ids (nothing refused) within one month, told by the
        # earliest and latest time alone (min and max in C, instead of a month test per event:
        # 2 us an event, a tenth of the chain's cost once the leaf is in C).
        times = [event[1].received_at for event in stored]
        earliest, latest = min(times).astimezone(UTC), max(times).astimezone(UTC)
        if (earliest.year, earliest.month) == (latest.year, latest.month):
            leaves = out.leaves
            return [("batch", stored[0][0], batches.leaf_hash_of(leaves), b"".join(leaves))]
    rows: list[ledger.BatchLeaf] = []
    start = 0
    for index in range(1, len(stored) + 1):
        if index < len(stored):
            here, before = stored[index], stored[index - 1]
            if here[0] == before[0] + 1 and _same_month(here[1], before[1]):
                continue
        leaves = out.leaves[start:index]
        rows.append(("batch", stored[start][0], batches.leaf_hash_of(leaves), b"".join(leaves)))
        start = index
    return rows


def _same_month(a: Receipt, b: Receipt) -> bool:
    x, y = a.received_at, b.received_at
    if x.tzinfo is not UTC:
        x = x.astimezone(UTC)
    if y.tzinfo is not UTC:
        y = y.astimezone(UTC)
    return x.month == y.month and x.year == y.year


def store_batch(conn: psycopg.Connection[Any], receipts: Sequence[Receipt]) -> BatchResult:
    """Store receipts as events (or quarantine entries) in the caller's open transaction.

    The caller commits. Every receipt ends up as an event or in quarantine, or is reported as
    a duplicate of one stored before; an error escaping from here means nothing was decided
    and the whole batch must be retried.
    """
    if not receipts:
        return EMPTY
    ledger.lock(conn)
    for month in _months(receipts):
        conn.execute("SELECT auditor_ensure_event_partition(%s)", (month,))
    # Under the lock ids and positions grow in commit order; within the batch, ids follow
    # arrival order.
    at = ledger.head(conn)
    out = _Outcome()
    bad: list[tuple[Receipt, str]] = []
    folded = projection.Fold()
    values = userdata_values.Changes(known=userdata_values.last_maps(conn))
    try:
        # The usual case: all new.
        _copy_streaming(conn, receipts, bad, folded, values, out)
    except psycopg.Error as exc:
        if not _is_row_error(exc):
            raise
        # A replay (some receipts stored before), the same receipt twice in the batch, or a
        # row PostgreSQL refuses: sort it out slowly.
        batch = prepare(receipts)
        bad = list(batch.bad)
        out = _Outcome()
        _copy_or_bisect(conn, _not_stored(conn, _unique(batch.good)), out)
        folded = projection.Fold(out.stored)
        values = userdata_values.Changes(out.stored, userdata_values.last_maps(conn))
    # The user-data rows first: they check what they remember against the projection as the
    # batches before this one left it. Pipelined: PostgreSQL inserts them while Python builds
    # the projection's rows (an error surfaces at the end of the block, as a batch error).
    with conn.pipeline():
        values.write(conn)
        # Where each referenceId's events are (the lookup's global index), read back from
        # the events just stored: one statement, whichever path stored them.
        event_references.write_stored(conn, out.stored)
        projection.write(conn, folded.rows())
    entries = _quarantine(conn, bad + out.refused)
    quarantined = len(entries)
    if RECORD_FORMAT == 2:
        at = ledger.append_batches(conn, _batch_rows(out), at)
    else:
        at = ledger.append(
            conn,
            [("event", event[0], leaf) for event, leaf in zip(out.stored, out.leaves, strict=True)],
            at,
        )
    ledger.append(conn, entries, at)
    return BatchResult(
        received=len(receipts),
        stored=len(out.stored),
        duplicates=len(receipts) - len(out.stored) - quarantined,
        quarantined=quarantined,
        last_event_id=out.stored[-1][0] if out.stored else None,
    )
