"""Search: events or interactions, the API's filters, keyset paging, the coverage of the
searched range said plainly. Works as a plain GET form (no JavaScript needed)."""

from __future__ import annotations

import json
from typing import Any

from flask import Response, redirect, request
from werkzeug.wrappers import Response as Answer

from auditor.store import userdata
from web import schemas, searches
from web.pages.forms import form_values, load
from web.pages.gate import PREFIX, bp
from web.pages.views import page

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
    "as_of",
    "ever",
    "order",
    "limit",
    "cursor",
)
PAGE_SIZE = 50
# User-data filters as pairs of fields (a form without scripts cannot add fields; a
# multi-line box would send newlines, which every parameter refuses).
USER_DATA_ROWS = 3
USER_DATA_FIELDS = tuple(f"ud{kind}{n}" for n in range(1, USER_DATA_ROWS + 1) for kind in "kv")
EVENTS_ONLY = tuple(f for f in searches.EVENT_FILTERS if f not in searches.INTERACTION_FILTERS)


@bp.get("/")
def home() -> Answer:
    return redirect(f"{PREFIX}/search", code=303)


@bp.get("/search")
def search() -> Answer:
    what = request.args.get("what", "interactions")
    values = form_values(request.args, FORM_FIELDS)
    values.setdefault("limit", str(PAGE_SIZE))
    pairs = form_values(request.args, USER_DATA_FIELDS)
    shown = {**values, **pairs, "what": what}
    if what not in ("events", "interactions"):
        return _form(shown, [("what", "must be events or interactions")])
    try:
        user_data = _user_data(pairs)
    except userdata.BadUserDataFilter as exc:
        return _form(shown, [(exc.param, exc.reason)])
    if what == "interactions":
        if "interactionId" in values and len(values) <= 2 and not user_data:
            return redirect(f"{PREFIX}/interactions/{values['interactionId']}", code=303)
        misplaced = [(f, "applies to the event search only") for f in EVENTS_ONLY if f in values]
        if misplaced:
            return _form(shown, misplaced)
        return _interactions(shown, values, user_data)
    if "ever" in values:
        return _form(shown, [("ever", "applies to the interaction search only")])
    return _events(shown, values, user_data)


def _user_data(pairs: dict[str, str]) -> tuple[userdata.UserDataFilter, ...]:
    """The filled-in key/value rows, plus any `userData.KEY` parameter (links the API's
    syntax), read by auditor.store.userdata."""
    given = [
        (userdata.PARAM_PREFIX + pairs[f"udk{n}"], pairs.get(f"udv{n}", ""))
        for n in range(1, USER_DATA_ROWS + 1)
        if f"udk{n}" in pairs
    ]
    for n in range(1, USER_DATA_ROWS + 1):
        if f"udv{n}" in pairs and f"udk{n}" not in pairs:
            raise userdata.BadUserDataFilter(f"udk{n}", "a value needs its key")
    given += [(k, v) for k, v in request.args.items() if k.startswith(userdata.PARAM_PREFIX)]
    return userdata.parse_filters(given)


def _form(shown: dict[str, str], errors: list[tuple[str, str]]) -> Response:
    return page("search.html", status=400, form=shown, errors=errors, results=None)


def _events(
    shown: dict[str, str], values: dict[str, str], user_data: tuple[userdata.UserDataFilter, ...]
) -> Response:
    query, errors = load(schemas.EventQuery(), values)
    if errors:
        return _form(shown, errors)
    found = searches.events(query, user_data, "ui-events")
    items = [json.loads(item) for item in found.items]
    return _results(shown, "events", items, found.next_cursor, found.coverage)


def _interactions(
    shown: dict[str, str], values: dict[str, str], user_data: tuple[userdata.UserDataFilter, ...]
) -> Response:
    query, errors = load(schemas.InteractionQuery(), values)
    if errors:
        return _form(shown, errors)
    found = searches.interactions(query, user_data, "ui-interactions")
    items = [json.loads(item) for item in found.items]
    return _results(shown, "interactions", items, found.next_cursor, found.coverage)


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
