"""Search: events or interactions, the API's filters, keyset paging, the coverage of the
searched range said plainly. Works as a plain GET form (no JavaScript needed)."""

from __future__ import annotations

import json
from typing import Any

from flask import Response, redirect, request
from werkzeug.wrappers import Response as Answer

from auditor.store import queries
from web import schemas
from web.audit import conn, set_rows
from web.pages.forms import form_values, load
from web.pages.gate import PREFIX, bp
from web.pages.views import page
from web.paging import (
    coverage_summary,
    digest,
    id_position,
    iso,
    next_cursor,
    split_page,
    time_and_text_position,
)

EVENT_FIELDS = tuple(queries.EVENT_EQUALS)
INTERACTION_FIELDS = ("state", "mediaType", "openmediaType", "account")
FORM_FIELDS = (
    "mediaType",
    "state",
    "notificationType",
    "referenceId",
    "account",
    "interactionId",
    "openmediaType",
    "messageType",
    "channel",
    "kind",
    "from",
    "to",
    "order",
    "limit",
    "cursor",
)
PAGE_SIZE = 50
EVENTS_ONLY = tuple(f for f in EVENT_FIELDS if f not in INTERACTION_FIELDS)


@bp.get("/")
def home() -> Answer:
    return redirect(f"{PREFIX}/search", code=303)


@bp.get("/search")
def search() -> Answer:
    what = request.args.get("what", "interactions")
    values = form_values(request.args, FORM_FIELDS)
    values.setdefault("limit", str(PAGE_SIZE))
    shown = {**values, "what": what}
    if what not in ("events", "interactions"):
        return _form(shown, [("what", "must be events or interactions")])
    if what == "interactions":
        if "interactionId" in values and len(values) <= 2:
            return redirect(f"{PREFIX}/interactions/{values['interactionId']}", code=303)
        misplaced = [(f, "applies to the event search only") for f in EVENTS_ONLY if f in values]
        if misplaced:
            return _form(shown, misplaced)
        return _interactions(shown, values)
    return _events(shown, values)


def _form(shown: dict[str, str], errors: list[tuple[str, str]]) -> Response:
    return page("search.html", status=400, form=shown, errors=errors, results=None)


def _events(shown: dict[str, str], values: dict[str, str]) -> Response:
    query, errors = load(schemas.EventQuery(), values)
    if errors:
        return _form(shown, errors)
    order = query["order"]
    bound = digest("ui-events", query, EVENT_FIELDS, order)
    after_id = id_position(query, bound)
    flt = queries.EventFilter(
        equals={k: query[k] for k in EVENT_FIELDS if query.get(k) is not None},
        start=query.get("from_"),
        end=query.get("to"),
    )
    limit = query["limit"]
    connection = conn()
    rows = queries.search_events(
        connection, flt, newest_first=order == "newest", limit=limit + 1, after_id=after_id
    )
    rows, last = split_page(rows, limit)
    cursor = next_cursor(bound, None if last is None else [last[0]])
    coverage = coverage_summary(
        connection,
        flt.start,
        flt.end,
        [r[1] for r in rows],
        query.get("account"),
        {r[2] for r in rows},
    )
    set_rows(len(rows))
    items = [json.loads(r[3]) for r in rows]
    return _results(shown, "events", items, cursor, coverage)


def _interactions(shown: dict[str, str], values: dict[str, str]) -> Response:
    query, errors = load(schemas.InteractionQuery(), values)
    if errors:
        return _form(shown, errors)
    order = query["order"]
    bound = digest("ui-interactions", query, INTERACTION_FIELDS, order)
    key = time_and_text_position(query, bound)
    flt = queries.InteractionFilter(
        equals={k: query[k] for k in queries.INTERACTION_EQUALS if query.get(k) is not None},
        account=query.get("account"),
        start=query.get("from_"),
        end=query.get("to"),
    )
    limit = query["limit"]
    connection = conn()
    rows = queries.search_interactions(
        connection, flt, newest_first=order == "newest", limit=limit + 1, after=key
    )
    rows, last = split_page(rows, limit)
    cursor = next_cursor(bound, None if last is None else [iso(last[0]), last[1]])
    coverage = coverage_summary(
        connection,
        flt.start,
        flt.end,
        [r[0] for r in rows],
        flt.account,
        {a for r in rows for a in r[2]},
    )
    set_rows(len(rows))
    items = [json.loads(r[3]) for r in rows]
    return _results(shown, "interactions", items, cursor, coverage)


def _results(
    shown: dict[str, str],
    what: str,
    items: list[dict[str, Any]],
    cursor: str | None,
    coverage: dict[str, Any],
) -> Response:
    return page(
        "search.html",
        form=shown,
        errors=[],
        results={"what": what, "rows": items, "next_cursor": cursor, "coverage": coverage},
    )
