"""The batch writer: receipts in, events + projection + quarantine out, in the caller's
transaction.

One batch: parse (pure) → COPY into a temporary staging table → INSERT into events
ON CONFLICT DO NOTHING → upsert the projection from exactly the rows inserted → quarantine
what could not be parsed. Storing the same batch twice changes nothing. Event batches from
all writers of a database are serialised by a transaction-scoped advisory lock, so event ids
become visible in commit order and a reader paging by id never skips a row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date
from typing import Any

import psycopg

from auditor.notifications import Record, Rejected, parse
from auditor.store.receipts import Receipt

# pg_advisory_xact_lock key: 'audit' in ASCII. Shared with nothing else.
WRITER_LOCK_KEY = 0x6175646974

_STAGE_COLUMNS = (
    "seq",
    "receipt_id",
    "received_at",
    "kind",
    "account",
    "channel",
    "envelope",
    "message_type",
    "notification_type",
    "interaction_id",
    "reference_id",
    "media_type",
    "openmedia_type",
    "state",
    "uri",
    "error_code",
    "error_message",
    "payload",
)

_CREATE_STAGE = """
CREATE TEMPORARY TABLE IF NOT EXISTS auditor_stage (
    seq int NOT NULL, receipt_id uuid NOT NULL, received_at timestamptz NOT NULL,
    kind text NOT NULL, account text NOT NULL, channel text, envelope text NOT NULL,
    message_type text, notification_type text, interaction_id text, reference_id text,
    media_type text, openmedia_type text, state text, uri text, error_code text,
    error_message text, payload jsonb NOT NULL
) ON COMMIT DELETE ROWS
"""

_EVENT_COLUMNS = (
    "receipt_id, received_at, kind, account, channel, message_type, notification_type,"
    " interaction_id, reference_id, media_type, openmedia_type, state, error_code,"
    " error_message, payload"
)

# One statement: insert the events, then fold exactly the inserted rows into the projection.
_INSERT_AND_PROJECT = f"""
WITH ins AS (
    INSERT INTO events ({_EVENT_COLUMNS})
    SELECT {_EVENT_COLUMNS} FROM auditor_stage ORDER BY seq
    ON CONFLICT (receipt_id, received_at) DO NOTHING
    RETURNING id, receipt_id, received_at, account, interaction_id, state,
              notification_type, reference_id, media_type, openmedia_type, payload
), new AS (
    SELECT ins.*, s.uri,
           CASE s.envelope WHEN 'data' THEN ins.payload->'data'
                           WHEN 'bare' THEN ins.payload END -> 'openmedia' AS om
    FROM ins JOIN auditor_stage s USING (receipt_id, received_at)
    WHERE ins.interaction_id IS NOT NULL
), per_account AS (
    SELECT DISTINCT ON (interaction_id, account)
           interaction_id, account, id, state, received_at,
           CASE WHEN jsonb_typeof(om->'capabilities') = 'array'
                THEN om->'capabilities' END AS capabilities
    FROM new WHERE state IS NOT NULL
    ORDER BY interaction_id, account, id DESC
), acct AS (
    SELECT interaction_id,
           jsonb_object_agg(account, jsonb_build_object(
               'state', state, 'capabilities', capabilities,
               'event_id', id, 'at', received_at)) AS account_states
    FROM per_account GROUP BY interaction_id
), agg AS (
    SELECT interaction_id,
           (array_agg(media_type ORDER BY id DESC)
                FILTER (WHERE media_type IS NOT NULL))[1] AS media_type,
           (array_agg(openmedia_type ORDER BY id DESC)
                FILTER (WHERE openmedia_type IS NOT NULL))[1] AS openmedia_type,
           (array_agg(uri ORDER BY id DESC) FILTER (WHERE uri IS NOT NULL))[1] AS uri,
           (array_agg(om->'userData' ORDER BY id DESC)
                FILTER (WHERE jsonb_typeof(om->'userData') = 'object'))[1] AS user_data,
           max(id) FILTER (WHERE jsonb_typeof(om->'userData') = 'object') AS user_data_event_id,
           array_agg(DISTINCT account ORDER BY account) AS accounts,
           min(received_at) AS first_seen_at, max(received_at) AS last_seen_at,
           min(id) AS first_event_id, max(id) AS last_event_id, count(*) AS event_count,
           (array_agg(notification_type ORDER BY id DESC))[1] AS last_notification_type,
           (array_agg(reference_id ORDER BY id DESC))[1] AS last_reference_id
    FROM new GROUP BY interaction_id
), projected AS (
    INSERT INTO interactions AS t (
        interaction_id, media_type, openmedia_type, uri, user_data, user_data_event_id,
        account_states, accounts, first_seen_at, last_seen_at, first_event_id,
        last_event_id, event_count, last_notification_type, last_reference_id)
    SELECT agg.interaction_id, media_type, openmedia_type, uri, user_data,
           user_data_event_id, coalesce(acct.account_states, '{{}}'::jsonb), accounts,
           first_seen_at, last_seen_at, first_event_id, last_event_id, event_count,
           last_notification_type, last_reference_id
    FROM agg LEFT JOIN acct USING (interaction_id)
    ON CONFLICT (interaction_id) DO UPDATE SET
        media_type = CASE WHEN excluded.last_event_id > t.last_event_id
            THEN coalesce(excluded.media_type, t.media_type)
            ELSE coalesce(t.media_type, excluded.media_type) END,
        openmedia_type = CASE WHEN excluded.last_event_id > t.last_event_id
            THEN coalesce(excluded.openmedia_type, t.openmedia_type)
            ELSE coalesce(t.openmedia_type, excluded.openmedia_type) END,
        uri = CASE WHEN excluded.last_event_id > t.last_event_id
            THEN coalesce(excluded.uri, t.uri) ELSE coalesce(t.uri, excluded.uri) END,
        user_data = CASE WHEN coalesce(excluded.user_data_event_id, 0)
                              > coalesce(t.user_data_event_id, 0)
            THEN excluded.user_data ELSE t.user_data END,
        user_data_event_id = greatest(excluded.user_data_event_id, t.user_data_event_id),
        account_states = auditor_merge_account_states(t.account_states, excluded.account_states),
        accounts = ARRAY(SELECT DISTINCT a FROM unnest(t.accounts || excluded.accounts) AS a
                         ORDER BY a),
        first_seen_at = least(t.first_seen_at, excluded.first_seen_at),
        last_seen_at = greatest(t.last_seen_at, excluded.last_seen_at),
        first_event_id = least(t.first_event_id, excluded.first_event_id),
        last_event_id = greatest(t.last_event_id, excluded.last_event_id),
        event_count = t.event_count + excluded.event_count,
        last_notification_type = CASE WHEN excluded.last_event_id > t.last_event_id
            THEN excluded.last_notification_type ELSE t.last_notification_type END,
        last_reference_id = CASE WHEN excluded.last_event_id > t.last_event_id
            THEN excluded.last_reference_id ELSE t.last_reference_id END
    RETURNING 1
)
SELECT (SELECT count(*) FROM ins), (SELECT max(id) FROM ins), (SELECT count(*) FROM projected)
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


def _raw_bytes(raw: str | bytes) -> bytes:
    return raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")


def _stage_row(seq: int, receipt: Receipt, record: Record) -> tuple[object, ...]:
    return (
        seq,
        receipt.receipt_id,
        receipt.received_at,
        receipt.kind,
        receipt.account,
        record.channel,
        record.envelope,
        record.message_type,
        record.notification_type,
        record.interaction_id,
        record.reference_id,
        record.media_type,
        record.openmedia_type,
        record.state,
        record.uri,
        record.error_code,
        record.error_message,
        record.payload_text,
    )


def _ensure_partitions(conn: psycopg.Connection[Any], months: set[date]) -> None:
    with conn.cursor() as cur:
        for month in sorted(months):
            cur.execute("SELECT auditor_ensure_event_partition(%s)", (month,))


def _insert_events(
    conn: psycopg.Connection[Any], items: Sequence[tuple[Receipt, Record]]
) -> tuple[int, int | None]:
    with conn.cursor() as cur:
        cur.execute(_CREATE_STAGE)
        cur.execute("DELETE FROM auditor_stage")  # cheaper than TRUNCATE on a temp table
        columns = ", ".join(_STAGE_COLUMNS)
        with cur.copy(f"COPY auditor_stage ({columns}) FROM STDIN") as copy:
            for seq, (receipt, record) in enumerate(items):
                copy.write_row(_stage_row(seq, receipt, record))
        cur.execute(_INSERT_AND_PROJECT)
        row = cur.fetchone()
        assert row is not None
        return int(row[0]), row[1]


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
                [_raw_bytes(r.raw) for r, _ in items],
            ),
        )
        return cur.rowcount


def _store_records(
    conn: psycopg.Connection[Any], items: Sequence[tuple[Receipt, Record]]
) -> tuple[BatchResult, list[tuple[Receipt, str]]]:
    """Insert records; rows PostgreSQL refuses are bisected out and returned for quarantine."""
    if not items:
        return EMPTY, []
    try:
        with conn.transaction():
            stored, last_id = _insert_events(conn, items)
        return BatchResult(len(items), stored, len(items) - stored, 0, last_id), []
    except psycopg.Error as exc:
        if not _is_row_error(exc):
            raise
        if len(items) == 1:
            diag = exc.diag.message_primary or str(exc)
            return EMPTY, [(items[0][0], f"PostgreSQL refused it: {exc.sqlstate} {diag}")]
    half = len(items) // 2
    left, bad_left = _store_records(conn, items[:half])
    right, bad_right = _store_records(conn, items[half:])
    return left + right, bad_left + bad_right


def store_batch(conn: psycopg.Connection[Any], receipts: Sequence[Receipt]) -> BatchResult:
    """Store receipts as events (or quarantine entries) in the caller's open transaction.

    The caller commits. Every receipt ends up as an event or in quarantine, or is reported as
    a duplicate of one stored before; an error escaping from here means nothing was decided
    and the whole batch must be retried.
    """
    if not receipts:
        return EMPTY
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.INTRANS:
        conn.execute("SELECT 1")  # opens the caller's transaction (autocommit is off)
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITER_LOCK_KEY,))

    good: list[tuple[Receipt, Record]] = []
    bad: list[tuple[Receipt, str]] = []
    months: set[date] = set()
    for receipt in receipts:
        outcome = (
            Rejected(receipt.defect)
            if receipt.defect is not None
            else parse(receipt.raw, channel=receipt.channel)
        )
        if isinstance(outcome, Rejected):
            bad.append((receipt, outcome.reason))
        else:
            good.append((receipt, outcome))
            utc = receipt.received_at.astimezone(UTC)
            months.add(date(utc.year, utc.month, 1))
    _ensure_partitions(conn, months)
    result, refused = _store_records(conn, good)
    bad += refused
    quarantined = _quarantine(conn, bad)
    return BatchResult(
        received=len(receipts),
        stored=result.stored,
        duplicates=result.duplicates + len(bad) - quarantined,
        quarantined=quarantined,
        last_event_id=result.last_event_id,
    )
