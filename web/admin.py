"""/api/v1 for the admin role: the access log (who asked the API what, and what they got)."""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint
from flask import Response
from marshmallow import RAISE

from auditor.store import access_queries
from web import schemas
from web.audit import requires, set_rows
from web.db import conn
from web.paging import digest, dumps, id_position, json_response, next_cursor, split_page

bp = APIBlueprint("admin", __name__, url_prefix="/api/v1", tag="Admin")

_FILTERS = ("token", "role", "endpoint", "status")


@bp.get("/access-log")
@requires("admin")
@bp.input(schemas.AccessLogQuery, location="query", arg_name="query", unknown=RAISE)
@bp.output(schemas.AccessLogPage)
@bp.doc(
    summary="The API's access log, keyset-paged (this read is logged too)",
    responses=[400, 401, 403],
)
def search_access_log(query: dict[str, Any]) -> Response:
    order = query["order"]
    bound = digest("access-log", query, _FILTERS, order)
    after_id = id_position(query, bound)
    flt = access_queries.AccessFilter(
        equals={k: query[k] for k in access_queries.ACCESS_EQUALS if query.get(k) is not None},
        status=query.get("status"),
        start=query.get("from_"),
        end=query.get("to"),
    )
    limit = query["limit"]
    rows = access_queries.search_access_log(
        conn(), flt, newest_first=order == "newest", limit=limit + 1, after_id=after_id
    )
    rows, last = split_page(rows, limit)
    cursor = next_cursor(bound, None if last is None else [last.id])
    set_rows(len(rows))
    body = '{"items":[' + ",".join(r.json for r in rows) + '],"next_cursor":' + dumps(cursor)
    return json_response(body + "}")
