"""Read side: questions asked of the store. Functions take a connection and never commit."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from auditor.notifications import openmedia_of
from auditor.store import coverage_queries


@dataclass(frozen=True)
class UserDataDiff:
    added: dict[str, Any]
    changed: dict[str, dict[str, Any]]  # key -> {"from": old, "to": new}
    removed: list[str]

    @property
    def empty(self) -> bool:
        return not (self.added or self.changed or self.removed)


def user_data_diff(before: dict[str, Any] | None, after: dict[str, Any] | None) -> UserDataDiff:
    """What changed between two full userData snapshots (GWS sends the whole map each time)."""
    old = before or {}
    new = after or {}
    return UserDataDiff(
        added={k: v for k, v in new.items() if k not in old},
        changed={k: {"from": old[k], "to": v} for k, v in new.items() if k in old and old[k] != v},
        removed=sorted(k for k in old if k not in new),
    )


@dataclass(frozen=True)
class TimelineEntry:
    event_id: int
    received_at: datetime
    account: str
    kind: str
    channel: str | None
    message_type: str | None
    notification_type: str | None
    state: str | None
    reference_id: str | None
    capabilities: list[Any] | None
    user_data: dict[str, Any] | None
    user_data_diff: UserDataDiff | None  # None when the event carried no userData
    error_code: str | None
    error_message: str | None
    payload: dict[str, Any]


_TIMELINE = """
SELECT id, received_at, account, kind, channel, message_type, notification_type, state,
       reference_id, error_code, error_message, payload
FROM events WHERE interaction_id = %s ORDER BY id
"""


def _entries(rows: Iterable[dict[str, Any]]) -> list[TimelineEntry]:
    entries = []
    previous: dict[str, Any] | None = None
    for row in rows:
        resource = openmedia_of(row["payload"])
        caps = resource.get("capabilities")
        data = resource.get("userData")
        user_data = data if isinstance(data, dict) else None
        diff = None
        if user_data is not None:
            diff = user_data_diff(previous, user_data)
            previous = user_data
        entries.append(
            TimelineEntry(
                event_id=row["id"],
                received_at=row["received_at"],
                account=row["account"],
                kind=row["kind"],
                channel=row["channel"],
                message_type=row["message_type"],
                notification_type=row["notification_type"],
                state=row["state"],
                reference_id=row["reference_id"],
                capabilities=caps if isinstance(caps, list) else None,
                user_data=user_data,
                user_data_diff=diff,
                error_code=row["error_code"],
                error_message=row["error_message"],
                payload=row["payload"],
            )
        )
    return entries


def timeline(conn: psycopg.Connection[Any], interaction_id: str) -> list[TimelineEntry]:
    """Every event of one interaction, in arrival order across all agents' sessions."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(_TIMELINE, (interaction_id,))
        return _entries(cur)


def interaction(conn: psycopg.Connection[Any], interaction_id: str) -> dict[str, Any] | None:
    """The projection row of one interaction."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT * FROM interactions WHERE interaction_id = %s", (interaction_id,))
        return cur.fetchone()


# --- Search and export (the query API) --------------------------------------------------------
# Filters name columns from fixed tables below; values always travel as parameters.

EVENT_EQUALS = {
    "referenceId": "reference_id",
    "mediaType": "media_type",
    "openmediaType": "openmedia_type",
    "state": "state",
    "notificationType": "notification_type",
    "messageType": "message_type",
    "interactionId": "interaction_id",
    "account": "account",
    "channel": "channel",
    "kind": "kind",
}

INTERACTION_EQUALS = {
    "state": "state",
    "mediaType": "media_type",
    "openmediaType": "openmedia_type",
}

# One event as the API shows it, made by PostgreSQL (the payload is never re-encoded).
EVENT_JSON = """json_build_object(
    'event_id', id, 'received_at', received_at, 'stored_at', stored_at, 'kind', kind,
    'account', account, 'channel', channel, 'interaction_id', interaction_id,
    'messageType', message_type, 'notificationType', notification_type,
    'referenceId', reference_id, 'mediaType', media_type, 'openmediaType', openmedia_type,
    'state', state, 'error_code', error_code, 'error_message', error_message,
    'payload', payload)::text"""

EVENT_CSV_COLUMNS = (
    "event_id",
    "received_at",
    "stored_at",
    "kind",
    "account",
    "channel",
    "interaction_id",
    "messageType",
    "notificationType",
    "referenceId",
    "mediaType",
    "openmediaType",
    "state",
    "error_code",
    "error_message",
    "payload",
)
# to_json gives the same ISO 8601 text as the JSON forms (with T and offset).
_CSV_SOURCES = (
    "id::text",
    "to_json(received_at) #>> '{}'",
    "to_json(stored_at) #>> '{}'",
    "kind",
    "account",
    "channel",
    "interaction_id",
    "message_type",
    "notification_type",
    "reference_id",
    "media_type",
    "openmedia_type",
    "state",
    "error_code",
    "error_message",
    "payload::text",
)


# OWASP CSV injection: a cell starting with one of these is a formula to a spreadsheet.
CSV_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_START_CODES = "(" + ", ".join(str(ord(c)) for c in CSV_FORMULA_STARTS) + ")"
# Cells that cannot start with one: a bigint identity, times as PostgreSQL writes them (a year
# first; BC is a suffix), `kind` and a JSON object (CHECK constraints). Guarding them would
# only compute them again.
_NEVER_FORMULAS = frozenset(
    {
        "id::text",
        "to_json(received_at) #>> '{}'",
        "to_json(stored_at) #>> '{}'",
        "kind",
        "payload::text",
    }
)


def csv_field(source: str, *, guard_formulas: bool = True) -> str:
    """RFC 4180 quoting done by PostgreSQL (as Python's csv QUOTE_MINIMAL would), with a
    single quote before a cell a spreadsheet would run (the raw value stays in NDJSON): the
    export then only joins finished lines, which keeps it well above 50,000 rows/s. The quote
    changes neither whether a cell needs quoting nor its escaping, so the source is not
    evaluated more often than for plain quoting."""
    guard = (
        "''"
        if source in _NEVER_FORMULAS or not guard_formulas
        else f"CASE WHEN ascii({source}) IN {_FORMULA_START_CODES} THEN chr(39) ELSE '' END"
    )
    return (
        f"CASE WHEN ({source}) IS NULL THEN ''"
        f" WHEN ({source}) ~ '[\",\r\n]'"
        f" THEN '\"' || {guard} || replace({source}, '\"', '\"\"') || '\"'"
        f" ELSE {guard} || ({source}) END"
    )


def csv_line(*, guard_formulas: bool = True) -> str:
    """One finished CSV line per event (bench/csv_guard.py compares the two kinds)."""
    return " || ',' || ".join(csv_field(e, guard_formulas=guard_formulas) for e in _CSV_SOURCES)


# One finished CSV line per event.
_EVENT_CSV_SELECT = csv_line()

INTERACTION_JSON = """json_build_object(
    'interaction_id', interaction_id, 'state', state, 'capabilities', capabilities,
    'mediaType', media_type, 'openmediaType', openmedia_type, 'uri', uri,
    'user_data', user_data, 'accounts', accounts, 'account_states', account_states,
    'first_seen_at', first_seen_at, 'last_seen_at', last_seen_at,
    'completed_at', completed_at, 'event_count', event_count,
    'first_event_id', first_event_id, 'last_event_id', last_event_id,
    'last_notificationType', last_notification_type,
    'last_referenceId', last_reference_id)::text"""


@dataclass(frozen=True)
class EventFilter:
    equals: dict[str, str]  # API name (a key of EVENT_EQUALS) -> value
    start: datetime | None = None  # received_at >= start
    end: datetime | None = None  # received_at < end


def equals_and_range(
    equals: dict[str, str],
    columns: dict[str, str],
    time_column: str,
    start: datetime | None,
    end: datetime | None,
) -> tuple[list[sql.Composable], list[Any]]:
    """WHERE clauses (and their parameters) for column = value filters and a time range."""
    clauses: list[sql.Composable] = []
    params: list[Any] = []
    for name, value in sorted(equals.items()):
        clauses.append(sql.SQL("{} = %s").format(sql.Identifier(columns[name])))
        params.append(value)
    if start is not None:
        clauses.append(sql.SQL("{} >= %s").format(sql.Identifier(time_column)))
        params.append(start)
    if end is not None:
        clauses.append(sql.SQL("{} < %s").format(sql.Identifier(time_column)))
        params.append(end)
    return clauses, params


def _event_where(flt: EventFilter) -> tuple[list[sql.Composable], list[Any]]:
    return equals_and_range(flt.equals, EVENT_EQUALS, "received_at", flt.start, flt.end)


def where(clauses: list[sql.Composable]) -> sql.Composable:
    if not clauses:
        return sql.SQL("")
    return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(clauses)


def search_events(
    conn: psycopg.Connection[Any],
    flt: EventFilter,
    *,
    newest_first: bool,
    limit: int,
    after_id: int | None = None,
) -> list[tuple[int, datetime, str, str]]:
    """Up to ``limit`` events as (id, received_at, account, json), keyset-paged by id.

    Events become visible in id order (one writer at a time), so paging by id never skips
    a row that commits while an auditor pages. The page's keys are found first (from an
    index alone where one covers the filters), then only those rows are read and rendered."""
    clauses, params = _event_where(flt)
    if after_id is not None:
        clauses.append(sql.SQL("id < %s" if newest_first else "id > %s"))
        params.append(after_id)
    order = sql.SQL(" ORDER BY id DESC" if newest_first else " ORDER BY id")
    query = sql.Composed(
        [
            sql.SQL("SELECT id, received_at, account, " + EVENT_JSON + " FROM ("),
            sql.SQL("SELECT id, received_at FROM events"),
            where(clauses),
            order,
            sql.SQL(" LIMIT %s) AS page JOIN events USING (id, received_at)"),
            order,
        ]
    )
    with conn.cursor() as cur:
        cur.execute(query, [*params, limit])
        return cur.fetchall()


def export_events_query(flt: EventFilter, *, csv: bool) -> tuple[sql.Composed, list[Any]]:
    """The statement an export runs through a server-side cursor, oldest first."""
    clauses, params = _event_where(flt)
    select = "SELECT received_at, account, " + (_EVENT_CSV_SELECT if csv else EVENT_JSON)
    query = sql.Composed(
        [sql.SQL(select + " FROM events"), where(clauses), sql.SQL(" ORDER BY id")]
    )
    return query, params


@dataclass(frozen=True)
class InteractionFilter:
    equals: dict[str, str]  # API name (a key of INTERACTION_EQUALS) -> value
    account: str | None = None
    start: datetime | None = None  # last_seen_at >= start
    end: datetime | None = None  # last_seen_at < end


def search_interactions(
    conn: psycopg.Connection[Any],
    flt: InteractionFilter,
    *,
    newest_first: bool,
    limit: int,
    after: tuple[datetime, str] | None = None,
) -> list[tuple[datetime, str, list[str], str]]:
    """Up to ``limit`` projection rows as (last_seen_at, interaction_id, accounts, json), paged
    over (last_seen_at, interaction_id)."""
    clauses, params = equals_and_range(
        flt.equals, INTERACTION_EQUALS, "last_seen_at", flt.start, flt.end
    )
    if flt.account is not None:
        clauses.append(sql.SQL("accounts @> ARRAY[%s]::text[]"))
        params.append(flt.account)
    if after is not None:
        op = "<" if newest_first else ">"
        clauses.append(sql.SQL(f"(last_seen_at, interaction_id) {op} (%s, %s)"))
        params.extend(after)
    direction = "DESC" if newest_first else "ASC"
    query = (
        sql.SQL(
            "SELECT last_seen_at, interaction_id, accounts, "
            + INTERACTION_JSON
            + " FROM interactions"
        )
        + where(clauses)
        + sql.SQL(f" ORDER BY last_seen_at {direction}, interaction_id {direction} LIMIT %s")
    )
    with conn.cursor() as cur:
        cur.execute(query, [*params, limit])
        return cur.fetchall()


def interaction_json(conn: psycopg.Connection[Any], interaction_id: str) -> str | None:
    """The projection row of one interaction as the API shows it."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT " + INTERACTION_JSON + " FROM interactions WHERE interaction_id = %s",
            (interaction_id,),
        )
        row = cur.fetchone()
    return row[0] if row is not None else None


@dataclass(frozen=True)
class InteractionSpan:
    json: str  # the projection row as the API shows it
    first_seen_at: datetime
    last_seen_at: datetime
    completed_at: datetime | None
    accounts: list[str]


@dataclass(frozen=True)
class TimelineBundle:
    span: InteractionSpan
    entries: list[TimelineEntry]
    intervals: list[coverage_queries.Interval]  # of the accounts involved, in its lifetime
    end: datetime  # last_seen_at once completed, else now (the database's clock)


_SPAN_SQL = (
    "SELECT " + INTERACTION_JSON + ", first_seen_at, last_seen_at, completed_at, accounts,"
    " CASE WHEN completed_at IS NOT NULL THEN last_seen_at ELSE now() END"
    " FROM interactions WHERE interaction_id = %s"
)


def timeline_bundle(conn: psycopg.Connection[Any], interaction_id: str) -> TimelineBundle | None:
    """Projection row, events and coverage intervals of one interaction in one round trip
    (psycopg pipeline mode): a timeline is the hottest read of the API."""
    with (
        conn.pipeline(),
        conn.cursor() as span_cur,
        conn.cursor(row_factory=dict_row) as event_cur,
        conn.cursor() as interval_cur,
    ):
        span_cur.execute(_SPAN_SQL, (interaction_id,))
        event_cur.execute(_TIMELINE, (interaction_id,))
        interval_cur.execute(coverage_queries.INTERACTION_INTERVALS, (interaction_id,))
        row = span_cur.fetchone()
        events = event_cur.fetchall()
        intervals = [coverage_queries.Interval(*r) for r in interval_cur.fetchall()]
    if row is None:
        return None
    return TimelineBundle(InteractionSpan(*row[:5]), _entries(events), intervals, row[5])
