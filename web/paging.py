"""Shared by the search views: filters, cursors, coverage summaries, JSON assembly."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from apiflask import HTTPError
from flask import Response, current_app, request

from auditor.retention import receipts
from auditor.store import coverage_queries, userdata
from auditor.store.userdata import UserDataFilter
from web.cursor import BadCursor, CursorCodec, query_digest
from web.errors import bad_params
from web.strict import CONTROL

JSON = "application/json"
Row = TypeVar("Row")
BIGINT_MAX = 2**63 - 1


def codec() -> CursorCodec:
    found: CursorCodec = current_app.extensions["auditor_cursor"]
    return found


def iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def dumps(value: Any) -> str:
    return json.dumps(value, default=_default, separators=(",", ":"))


def json_response(body: str, status: int = 200) -> Response:
    return Response(body, status=status, mimetype=JSON)


def digest(
    endpoint: str,
    query: dict[str, Any],
    names: Iterable[str],
    order: str,
    user_data: Sequence[UserDataFilter] = (),
) -> str:
    """What a cursor is bound to: the endpoint, every filter as parsed (user-data filters and
    as_of included), and the order."""
    bound: dict[str, Any] = {name: query[name] for name in names if query.get(name) is not None}
    for key in ("from_", "to", "as_of"):
        if query.get(key) is not None:
            bound[key] = iso(query[key])
    if user_data:
        bound["userData"] = [list(f.as_param) for f in user_data]
    return query_digest(endpoint, bound, order)


def user_data_filters() -> tuple[UserDataFilter, ...]:
    """The request's `userData.KEY` parameters; a 400 naming the one that cannot be read."""
    try:
        return userdata.parse_filters(request.args.items(multi=True))
    except userdata.BadUserDataFilter as exc:
        raise bad_params(**{exc.param: exc.reason}) from None


def position(query: dict[str, Any], bound_to: str) -> list[Any] | None:
    raw = query.get("cursor")
    if raw is None:
        return None
    try:
        return codec().decode(raw, bound_to)
    except BadCursor as exc:
        raise bad_params(cursor=str(exc)) from None


def split_page(rows: list[Row], limit: int) -> tuple[list[Row], Row | None]:
    """A page fetched with limit + 1 rows: (the page, its last row if another page follows)."""
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1]
    return rows, None


def next_cursor(bound: str, key: list[Any] | None) -> str | None:
    """The cursor to the page after the one whose last key this is (None: no next page)."""
    return None if key is None else codec().encode(bound, key)


def id_position(query: dict[str, Any], bound_to: str) -> int | None:
    """The id a cursor for an id-paged listing stands at, or None on the first page."""
    after = position(query, bound_to)
    if after is None:
        return None
    if len(after) != 1 or type(after[0]) is not int or not 0 <= after[0] <= BIGINT_MAX:
        raise malformed_cursor()
    return after[0]


def time_and_text_position(query: dict[str, Any], bound_to: str) -> tuple[datetime, str] | None:
    """The (time with offset, text) key a cursor of a listing keyed that way stands at."""
    after = position(query, bound_to)
    if after is None:
        return None
    if len(after) != 2 or not all(isinstance(v, str) for v in after):
        raise malformed_cursor()
    try:
        at = datetime.fromisoformat(after[0])
    except ValueError:
        raise malformed_cursor() from None
    if at.tzinfo is None or CONTROL.search(after[1]) or len(after[1]) > 256:
        raise malformed_cursor()
    return at, after[1]


def malformed_cursor() -> HTTPError:
    return bad_params(cursor="is malformed")


def coverage_summary(
    conn: Any,
    start: datetime | None,
    end: datetime | None,
    seen: Sequence[datetime],
    account: str | None,
    accounts_seen: Iterable[str],
    as_of: datetime | None = None,
) -> dict[str, Any]:
    """Coverage for the asked range. A missing `from` is the earliest time among the rows
    considered, a missing `to` is now; with neither a `from` nor any row there is no range and
    `complete` is null. Accounts: the one asked for, else every account ever covered plus
    those of the rows. With ``as_of``: as known then (the range ends no later than it)."""
    lo = start if start is not None else (min(seen) if seen else None)
    hi = end if end is not None else datetime.now(UTC)
    if as_of is not None:
        hi = min(hi, as_of)
        if lo is not None:
            lo = min(lo, hi)
    if lo is None or hi <= lo:
        if lo is not None and hi == lo:
            return {
                "complete": True,
                "status": "complete",
                "from": iso(lo),
                "to": iso(hi),
                "gaps": [],
                "purged": [],
            }
        return {
            "complete": None,
            "status": None,
            "from": None,
            "to": None,
            "gaps": [],
            "purged": [],
        }
    if account is not None:
        found = coverage_queries.coverage(conn, lo, hi, [account], as_of=as_of)
    else:
        found = coverage_queries.coverage(
            conn, lo, hi, list(accounts_seen), also_known=True, as_of=as_of
        )
    purged = receipts.purged_ranges(conn, lo, hi)
    return {
        "complete": found.complete and not purged,
        "status": receipts.status(bool(found.gaps), purged),
        "from": iso(lo),
        "to": iso(hi),
        "gaps": [gap_json(g) for g in found.gaps],
        "purged": [p.as_json() for p in purged],
    }


def gap_json(gap: coverage_queries.Gap) -> dict[str, Any]:
    return {"account": gap.account, "from": iso(gap.start), "to": iso(gap.end)}


def page(items: Sequence[str], next_cursor: str | None, coverage: dict[str, Any]) -> Response:
    """The page assembled around JSON that PostgreSQL already made for each row."""
    body = (
        '{"items":['
        + ",".join(items)
        + '],"next_cursor":'
        + dumps(next_cursor)
        + ',"coverage":'
        + dumps(coverage)
        + "}"
    )
    return json_response(body)
