"""Read side: questions asked of the store. Functions take a connection and never commit."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, NamedTuple

import psycopg
from psycopg import sql
from psycopg.rows import args_row

from auditor import shapes
from auditor.store import asof, event_references, userdata
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

# One event, one interaction as the API shows them, made by PostgreSQL (a jsonb value is
# never re-encoded); the fields derive from the tables (auditor.shapes).
EVENT_JSON = shapes.EVENT.json_sql()
INTERACTION_JSON = shapes.INTERACTION.json_sql()

# The CSV export: its header, and one expression per cell (formula-guarded, auditor.shapes);
# COPY ... TO STDOUT (FORMAT csv) does the quoting.
EVENT_CSV_COLUMNS = shapes.EVENT.names
_EVENT_CSV_CELLS = ", ".join(shapes.csv_cells(shapes.EVENT))


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


def _event_where(flt: EventFilter, driven: bool = True) -> tuple[list[sql.Composable], list[Any]]:
    clauses, params = equals_and_range(flt.equals, EVENT_EQUALS, "received_at", flt.start, flt.end)
    found, values = userdata.event_conditions(flt.user_data, driven=driven)
    clauses.extend(found)
    params.extend(values)
    if flt.as_of is not None:
        clauses.append(sql.SQL("stored_at <= %s"))
        params.append(flt.as_of)
    return clauses, params


def _events_from(
    flt: EventFilter, driven: bool = True
) -> tuple[sql.Composable, list[sql.Composable], list[Any]]:
    """What the events filter reads, its WHERE clauses, and the parameters of both in order.

    With a referenceId: only the events the side table points at (auditor.store.event_references:
    one B-tree probe, then each event's one partition, where events' own reference_id index
    costs a probe of every partition), and no reference_id test on events: one would let
    PostgreSQL plan that probe of every partition again, since its costs do not count the
    partitions that run-time pruning skips."""
    reference_id = flt.equals.get("referenceId")
    if reference_id is None:
        clauses, params = _event_where(flt, driven)
        return sql.SQL("events"), clauses, params
    source, source_params = event_references.source(reference_id)
    rest = {k: v for k, v in flt.equals.items() if k != "referenceId"}
    clauses, params = _event_where(replace(flt, equals=rest), driven)
    return source, clauses, [*source_params, *params]


def where(clauses: list[sql.Composable]) -> sql.Composable:
    if not clauses:
        return sql.SQL("")
    return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(clauses)


class EventRow(NamedTuple):
    """An event of a page: its key, what coverage needs, and the API's JSON of it."""

    id: int
    received_at: datetime
    account: str
    json: str


def search_events(
    conn: psycopg.Connection[Any],
    flt: EventFilter,
    *,
    newest_first: bool,
    limit: int,
    after_id: int | None = None,
) -> list[EventRow]:
    """Up to ``limit`` events, keyset-paged by id.

    Events become visible in id order (one writer at a time), so paging by id never skips
    a row that commits while an auditor pages. The page's keys are found first (from an
    index alone where one covers the filters), then only those rows are read and rendered.
    With user-data filters the page is read in the pass that finds it."""
    with (
        userdata.reading_candidates(conn, flt.user_data) as each,
        conn.cursor(row_factory=args_row(EventRow)) as cur,
    ):
        query, params = _events_query(flt, newest_first, limit, after_id, each)
        cur.execute(query, params)
        return cur.fetchall()


def _events_query(
    flt: EventFilter, newest_first: bool, limit: int, after_id: int | None, each: bool
) -> tuple[sql.Composed, list[Any]]:
    source, clauses, params = _events_from(flt, driven=not each)
    if after_id is not None:
        clauses.append(sql.SQL("id < %s" if newest_first else "id > %s"))
        params.append(after_id)
    order = sql.SQL(" ORDER BY id DESC" if newest_first else " ORDER BY id")
    select = sql.SQL("SELECT id, received_at, account, " + EVENT_JSON + " FROM (")
    if each:
        # A few interactions with many events hold the value (userdata.reading_candidates):
        # each one's first page of matches, newest (oldest) first through (interaction_id, id),
        # then the page out of those; a bitmap read every event of them (a 200,000-event item
        # took 0.54 s warm).
        candidates, held = userdata.each_candidate(flt.user_data)
        clauses.append(sql.SQL("events.interaction_id = c.interaction_id"))
        per_candidate = sql.Composed(
            [sql.SQL("SELECT * FROM "), source, where(clauses), order, sql.SQL(" LIMIT %s")]
        )
        query = sql.Composed(
            [
                select,
                sql.SQL("SELECT events.* FROM "),
                candidates,
                sql.SQL(" CROSS JOIN LATERAL ("),
                per_candidate,
                sql.SQL(") AS events"),
                order,
                sql.SQL(" LIMIT %s) AS events"),
                order,
            ]
        )
        return query, [*held, *params, limit, limit]
    # Keys first, then the page's rows; with user-data filters, which read each candidate's
    # payload anyway, the page in that same pass (a second lookup of each row through the
    # primary key doubled the cold pages an exact user-data match reads: docs/api.md).
    inner, page = (
        ("SELECT * FROM ", " LIMIT %s) AS events")
        if flt.user_data
        else (
            "SELECT id, received_at FROM ",
            " LIMIT %s) AS page JOIN events USING (id, received_at)",
        )
    )
    query = sql.Composed(
        [select, sql.SQL(inner), source, where(clauses), order, sql.SQL(page), order]
    )
    return query, [*params, limit]


class ExportRow(NamedTuple):
    received_at: datetime
    account: str
    json: str


def export_events_json(
    conn: psycopg.Connection[Any], flt: EventFilter, *, fetch: int
) -> Iterator[list[ExportRow]]:
    """Every matching event, oldest first, ``fetch`` rows at a time from a server-side cursor
    (constant memory), in the caller's transaction."""
    source, clauses, params = _events_from(flt)
    query = sql.Composed(
        [
            sql.SQL("SELECT received_at, account, " + EVENT_JSON + " FROM "),
            source,
            where(clauses),
            sql.SQL(" ORDER BY id"),
        ]
    )
    with conn.cursor(name="auditor_export", row_factory=args_row(ExportRow)) as cur:
        cur.execute(query, params)
        while rows := cur.fetchmany(fetch):
            yield rows


def export_events_csv(
    conn: psycopg.Connection[Any], flt: EventFilter, *, chunk_rows: int
) -> Iterator[tuple[bytes, int]]:
    """Every matching event as CSV records (no header), oldest first, as (chunk, rows in it).
    PostgreSQL's COPY does the RFC 4180 quoting (faster than quoting written in SQL, and
    than Python's csv: bench/csv_export.py); the cells carry the formula guard."""
    source, clauses, params = _events_from(flt)
    # COPY takes no bound parameters, so psycopg writes them into the statement as literals,
    # and PostgreSQL refuses an offset beyond 15:59 there (+16:00 is valid ISO 8601).
    params = [p.astimezone(UTC) if isinstance(p, datetime) else p for p in params]
    statement = sql.Composed(
        [
            sql.SQL("COPY (SELECT " + _EVENT_CSV_CELLS + " FROM "),
            source,
            where(clauses),
            sql.SQL(" ORDER BY id) TO STDOUT (FORMAT csv)"),
        ]
    )
    with conn.cursor() as cur, cur.copy(statement, params) as copy:
        pending: list[bytes] = []
        for record in copy:  # one record per piece COPY gives
            pending.append(bytes(record))
            if len(pending) >= chunk_rows:
                yield b"".join(pending), len(pending)
                pending = []
        if pending:
            yield b"".join(pending), len(pending)


class Extent(NamedTuple):
    """What an export's coverage summary needs of its rows."""

    earliest: datetime | None
    accounts: list[str]


def export_extent(conn: psycopg.Connection[Any], flt: EventFilter) -> Extent:
    """The earliest receipt and the accounts among the matching events (in the export's
    REPEATABLE READ snapshot: the rows the COPY sends)."""
    source, clauses, params = _events_from(flt)
    query = sql.Composed(
        [
            sql.SQL("SELECT min(received_at), coalesce(array_agg(DISTINCT account), '{}') FROM "),
            source,
            where(clauses),
        ]
    )
    with conn.cursor(row_factory=args_row(Extent)) as cur:
        cur.execute(query, params)
        found = cur.fetchone()
    return found if found is not None else Extent(None, [])


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
    # In UTC: PostgreSQL refuses an offset beyond 15:59 in a literal (-20:39 is valid ISO 8601).
    return sql.Literal(as_of.astimezone(UTC)).as_string(conn)


class InteractionRow(NamedTuple):
    """An interaction of a page: its key, its accounts (for coverage), the API's JSON of it."""

    last_seen_at: datetime
    interaction_id: str
    accounts: list[str]
    json: str


def search_interactions(
    conn: psycopg.Connection[Any],
    flt: InteractionFilter,
    *,
    newest_first: bool,
    limit: int,
    after: tuple[datetime, str] | None = None,
) -> list[InteractionRow]:
    """Up to ``limit`` projection rows, paged over (last_seen_at, interaction_id)."""
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
    with conn.cursor(row_factory=args_row(InteractionRow)) as cur:
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
