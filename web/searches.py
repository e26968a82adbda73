"""The two searches the API and the pages both offer: a validated query in; one page of rows
(each row's JSON text), the next cursor and the coverage of the searched range out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from auditor.store import queries
from auditor.store.userdata import UserDataFilter
from web.audit import set_rows
from web.db import conn
from web.paging import (
    coverage_summary,
    digest,
    id_position,
    iso,
    next_cursor,
    split_page,
    time_and_text_position,
)

EVENT_FILTERS = tuple(queries.EVENT_EQUALS)
INTERACTION_FILTERS = ("state", "mediaType", "openmediaType", "account", "ever")


@dataclass(frozen=True)
class SearchPage:
    items: list[str]  # JSON text, one per row
    next_cursor: str | None
    coverage: dict[str, Any]


def events(query: dict[str, Any], user_data: tuple[UserDataFilter, ...], scope: str) -> SearchPage:
    """``scope`` binds cursors to the view that made them (a page's cursor is not the API's)."""
    order = query["order"]
    bound = digest(scope, query, EVENT_FILTERS, order, user_data)
    after_id = id_position(query, bound)
    flt = queries.EventFilter(
        equals={k: query[k] for k in EVENT_FILTERS if query.get(k) is not None},
        start=query.get("from_"),
        end=query.get("to"),
        user_data=user_data,
        as_of=query.get("as_of"),
    )
    limit = query["limit"]
    connection = conn()
    rows = queries.search_events(
        connection, flt, newest_first=order == "newest", limit=limit + 1, after_id=after_id
    )
    rows, last = split_page(rows, limit)
    coverage = coverage_summary(
        connection,
        flt.start,
        flt.end,
        [r.received_at for r in rows],
        query.get("account"),
        {r.account for r in rows},
        flt.as_of,
    )
    set_rows(len(rows))
    cursor = next_cursor(bound, None if last is None else [last.id])
    return SearchPage([r.json for r in rows], cursor, coverage)


def interactions(
    query: dict[str, Any], user_data: tuple[UserDataFilter, ...], scope: str
) -> SearchPage:
    order = query["order"]
    bound = digest(scope, query, INTERACTION_FILTERS, order, user_data)
    key = time_and_text_position(query, bound)
    flt = queries.InteractionFilter(
        equals={k: query[k] for k in queries.INTERACTION_EQUALS if query.get(k) is not None},
        account=query.get("account"),
        start=query.get("from_"),
        end=query.get("to"),
        user_data=user_data,
        ever=query["ever"],
        as_of=query.get("as_of"),
    )
    limit = query["limit"]
    connection = conn()
    rows = queries.search_interactions(
        connection, flt, newest_first=order == "newest", limit=limit + 1, after=key
    )
    rows, last = split_page(rows, limit)
    coverage = coverage_summary(
        connection,
        flt.start,
        flt.end,
        [r.last_seen_at for r in rows],
        flt.account,
        {a for r in rows for a in r.accounts},
        flt.as_of,
    )
    set_rows(len(rows))
    cursor = next_cursor(
        bound, None if last is None else [iso(last.last_seen_at), last.interaction_id]
    )
    return SearchPage([r.json for r in rows], cursor, coverage)
