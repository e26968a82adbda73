"""Read side: questions asked of the store. Functions take a connection and never commit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from auditor.store import asof, userdata
from auditor.store.userdata import UserDataFilter

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
    # ANDed; on the userData the event carried (an event without userData matches none)
    user_data: tuple[UserDataFilter, ...] = ()
    as_of: datetime | None = None  # only events stored (stored_at) at or before it


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
    clauses, params = equals_and_range(flt.equals, EVENT_EQUALS, "received_at", flt.start, flt.end)
    found, values = userdata.event_conditions(flt.user_data)
    clauses.extend(found)
    params.extend(values)
    if flt.as_of is not None:
        clauses.append(sql.SQL("stored_at <= %s"))
        params.append(flt.as_of)
    return clauses, params


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
    # ANDed; on the current userData, or with ``ever`` on any value each key has held
    user_data: tuple[UserDataFilter, ...] = ()
    ever: bool = False
    # the projection implied by the events stored at or before it (auditor.store.asof)
    as_of: datetime | None = None


def _as_of_literal(conn: psycopg.Connection[Any], as_of: datetime) -> str:
    """T as a quoted constant (psycopg's quoting): it appears many times in one statement, and
    the planner must see its value to find the few rows stored after it with the BRIN index
    (a parameter hidden in a CTE made it scan every event)."""
    return sql.Literal(as_of).as_string(conn)


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
    t = _as_of_literal(conn, flt.as_of) if flt.as_of is not None else None
    if flt.ever:
        found, values = userdata.ever_conditions(flt.user_data, t)
        clauses.extend(found)
        params.extend(values)
    else:
        found, values = userdata.interaction_conditions(flt.user_data)
        clauses.extend(found)
        params.extend(values)
    if after is not None:
        op = "<" if newest_first else ">"
        clauses.append(sql.SQL(f"(last_seen_at, interaction_id) {op} (%s, %s)"))
        params.extend(after)
    direction = "DESC" if newest_first else "ASC"
    source = "interactions" if t is None else asof.as_of_interactions_sql(t) + " AS interactions"
    query = (
        sql.SQL(
            "SELECT last_seen_at, interaction_id, accounts, " + INTERACTION_JSON + " FROM " + source
        )
        + where(clauses)
        + sql.SQL(f" ORDER BY last_seen_at {direction}, interaction_id {direction} LIMIT %s")
    )
    with conn.cursor() as cur:
        cur.execute(query, [*params, limit])
        return cur.fetchall()


_INTERACTION_AS_OF = (
    "SELECT "
    + INTERACTION_JSON
    + " FROM ("
    + asof.projection_sql("%(iid)s", "%(as_of)s")
    + ") AS p"
)


def interaction_json(
    conn: psycopg.Connection[Any], interaction_id: str, *, as_of: datetime | None = None
) -> str | None:
    """The projection row of one interaction as the API shows it; with ``as_of``, the one
    implied by its events stored by then (None when there were none)."""
    with conn.cursor() as cur:
        if as_of is None:
            cur.execute(
                "SELECT " + INTERACTION_JSON + " FROM interactions WHERE interaction_id = %s",
                (interaction_id,),
            )
        else:
            cur.execute(_INTERACTION_AS_OF, {"iid": interaction_id, "as_of": as_of})
        row = cur.fetchone()
    return row[0] if row is not None else None
