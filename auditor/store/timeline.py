"""One interaction's timeline, a page at a time: the one assembly used by the API, the CLI and
the pages. Functions take a connection and never commit.

A page is keyset-paged by event id (ids become visible in commit order, so a reader paging
while the worker writes never skips an event). Each entry carries its user-data diff against
the previous event that carried userData, across page boundaries too: a page after the first
looks that predecessor up. Every page carries the coverage gaps of the accounts involved over
the interaction's whole lifetime (they are few; a reader draws each where it falls).
With ``as_of``, only events stored at or before it count, the interaction shown is the
projection those events imply (auditor.store.asof), and coverage is as known then.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, NamedTuple

import psycopg
from psycopg.rows import args_row, dict_row

from auditor import db
from auditor.store import asof, coverage_queries, queries
from auditor.store.userdata import EVENT_USER_DATA_SQL, OPENMEDIA_SQL

DEFAULT_PAGE = 200
MAX_PAGE = 1000


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
    stored_at: datetime
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
    payload_text: str  # the stored message as PostgreSQL renders it (jsonb)

    @property
    def payload(self) -> dict[str, Any]:
        """The stored message, parsed when asked for: the API's timeline does not show it,
        and parsing every payload of a page was most of the page's cost."""
        value: dict[str, Any] = json.loads(self.payload_text)
        return value


@dataclass(frozen=True)
class InteractionView:
    """The projection row as the API shows it (``json``), and the fields a timeline needs."""

    json: str
    first_seen_at: datetime
    last_seen_at: datetime
    completed_at: datetime | None
    accounts: list[str]
    event_count: int


@dataclass(frozen=True)
class TimelinePage:
    interaction: InteractionView  # as of ``as_of`` when given
    entries: list[TimelineEntry]  # in event id order
    gaps: list[coverage_queries.Gap]  # of the involved accounts over the whole lifetime
    lifetime_end: datetime  # last_seen_at once completed, else now (or as_of)
    next_after: int | None  # pass as ``after`` for the next page; None: this is the last
    as_of: datetime | None


# The page's columns, by TimelineEntry's fields: a field named as a column of events reads it
# (event_id: the id); the others are extracted by PostgreSQL here, never re-parsed in Python.
# (user_data_diff is computed from user_data below.)
EXTRACTED = {
    "capabilities": f"""CASE WHEN jsonb_typeof({OPENMEDIA_SQL}->'capabilities') = 'array'
         THEN {OPENMEDIA_SQL}->'capabilities' END""",
    "user_data": f"""CASE WHEN jsonb_typeof({EVENT_USER_DATA_SQL}) = 'object'
         THEN {EVENT_USER_DATA_SQL} END""",
    "payload_text": "payload::text",
}
COMPUTED = ("user_data_diff",)
# The entry's field of each column it shows (the id is the API's event_id).
ENTRY_COLUMNS = {
    ("id" if f.name == "event_id" else f.name): f.name
    for f in fields(TimelineEntry)
    if f.name not in EXTRACTED and f.name not in COMPUTED
}
if not set(ENTRY_COLUMNS) <= {c.name for c in db.events.columns}:
    raise RuntimeError("a TimelineEntry field is neither a column of events nor extracted")
_ENTRY_COLUMNS = ", ".join(
    [f"{column} AS {name}" for column, name in ENTRY_COLUMNS.items()]
    + [f"{sql} AS {name}" for name, sql in EXTRACTED.items()]
)

_STORED_BY = " AND stored_at <= %(as_of)s"

_PAGE = (
    f"SELECT {_ENTRY_COLUMNS} FROM events WHERE interaction_id = %(iid)s AND id > %(after)s"
    "{stored_by} ORDER BY id LIMIT %(limit)s"
)

# The userData in force just before a page: the newest event before it that carried one.
_PREVIOUS_USER_DATA = (
    f"SELECT {EVENT_USER_DATA_SQL} FROM events WHERE interaction_id = %(iid)s"
    f" AND id <= %(after)s AND jsonb_typeof({EVENT_USER_DATA_SQL}) = 'object'"
    "{stored_by} ORDER BY id DESC LIMIT 1"
)

_VIEW_COLUMNS = (
    queries.INTERACTION_JSON
    + " AS json, first_seen_at, last_seen_at, completed_at, accounts, event_count,"
    " CASE WHEN completed_at IS NOT NULL THEN last_seen_at ELSE {now} END AS lifetime_end"
)
_CURRENT = (
    "SELECT "
    + _VIEW_COLUMNS.format(now="now()")
    + " FROM interactions WHERE interaction_id = %(iid)s"
)
_AS_OF = (
    "SELECT "
    + _VIEW_COLUMNS.format(now="%(as_of)s::timestamptz")
    + " FROM ("
    + asof.projection_sql("%(iid)s", "%(as_of)s")
    + ") AS p"
)


class _ViewRow(NamedTuple):
    json: str
    first_seen_at: datetime
    last_seen_at: datetime
    completed_at: datetime | None
    accounts: list[str]
    event_count: int
    lifetime_end: datetime  # last_seen_at once completed, else now (or as_of)

    def view(self) -> InteractionView:
        return InteractionView(*self[:-1])


def _entries(rows: list[dict[str, Any]], previous: dict[str, Any] | None) -> list[TimelineEntry]:
    entries = []
    for row in rows:
        user_data = row["user_data"]
        diff = None
        if user_data is not None:
            diff = user_data_diff(previous, user_data)
            previous = user_data
        entries.append(TimelineEntry(**row, user_data_diff=diff))
    return entries


def timeline_page(
    conn: psycopg.Connection[Any],
    interaction_id: str,
    *,
    after: int | None = None,
    limit: int = DEFAULT_PAGE,
    as_of: datetime | None = None,
) -> TimelinePage | None:
    """Up to ``limit`` events of one interaction after event id ``after`` (None: from the
    first), with diffs and the lifetime's coverage gaps; None when there is no such
    interaction (as of ``as_of``: none of its events was stored by then). Without ``as_of``
    this is one round trip (pipelined); ``limit`` is clipped to 1..MAX_PAGE."""
    limit = max(1, min(limit, MAX_PAGE))
    params = {
        "iid": interaction_id,
        "after": after if after is not None else 0,
        "limit": limit + 1,
        "as_of": as_of,
    }
    stored_by = _STORED_BY if as_of is not None else ""
    with (
        conn.pipeline(),
        conn.cursor(row_factory=args_row(_ViewRow)) as view_cur,
        conn.cursor(row_factory=dict_row) as event_cur,
        conn.cursor() as previous_cur,
        conn.cursor(row_factory=args_row(coverage_queries.Interval)) as interval_cur,
    ):
        view_cur.execute(_AS_OF if as_of is not None else _CURRENT, params)
        event_cur.execute(_PAGE.format(stored_by=stored_by), params)
        if after is not None:
            previous_cur.execute(_PREVIOUS_USER_DATA.format(stored_by=stored_by), params)
        if as_of is None:
            interval_cur.execute(coverage_queries.INTERACTION_INTERVALS, (interaction_id,))
        found = view_cur.fetchone()
        rows = event_cur.fetchall()
        previous_row = previous_cur.fetchone() if after is not None else None
        intervals = interval_cur.fetchall() if as_of is None else None
    if found is None:
        return None
    view = found.view()
    end = max(found.lifetime_end, view.first_seen_at)
    if intervals is None:  # as of T: the accounts of then, coverage as known then
        assert as_of is not None
        known = coverage_queries.coverage(conn, view.first_seen_at, end, view.accounts, as_of=as_of)
        gaps = known.gaps
    else:
        gaps = [
            gap
            for account in view.accounts
            for gap in coverage_queries.gaps_of(
                account, [i for i in intervals if i.account == account], view.first_seen_at, end
            )
        ]
    next_after = rows[limit - 1]["event_id"] if len(rows) > limit else None
    previous = previous_row[0] if previous_row is not None else None
    return TimelinePage(
        interaction=view,
        entries=_entries(rows[:limit], previous),
        gaps=gaps,
        lifetime_end=end,
        next_after=next_after,
        as_of=as_of,
    )


def timeline_pages(
    conn: psycopg.Connection[Any],
    interaction_id: str,
    *,
    limit: int = DEFAULT_PAGE,
    as_of: datetime | None = None,
    after: int | None = None,
) -> Iterator[TimelinePage]:
    """Every page in turn (the CLI's --all): memory stays one page whatever the length."""
    while True:
        page = timeline_page(conn, interaction_id, after=after, limit=limit, as_of=as_of)
        if page is None:
            return
        yield page
        if page.next_after is None:
            return
        after = page.next_after
