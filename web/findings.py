"""/api/v1/findings: lifecycle findings (bi_v1.lifecycle_findings), filtered, keyset-paged,
with the coverage of the range asked for."""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint, Schema, fields, validators
from flask import Response
from marshmallow import RAISE

from auditor import shapes
from auditor.store import findings_queries
from web import schemas
from web.audit import requires, set_rows
from web.db import conn
from web.errors import bad_params
from web.paging import coverage_summary, digest, next_cursor, page, position, split_page

bp = APIBlueprint("findings", __name__, url_prefix="/api/v1", tag="Findings")

_FILTERS = ("interactionId", "account", "code")


class FindingQuery(schemas.EventKeys, schemas.Paging):
    code = fields.String(
        validate=validators.OneOf(findings_queries.FINDING_CODES),
        metadata={"description": "a finding code (docs/bi.md)"},
    )


Finding = schemas.shape_schema("Finding", shapes.FINDING, described={"code": "stable finding code"})


class FindingPage(Schema):
    items = fields.List(fields.Nested(Finding), required=True)
    next_cursor = fields.String(required=True, allow_none=True)
    coverage = fields.Nested(schemas.CoverageSummary, required=True)


def _after(query: dict[str, Any], bound: str) -> tuple[int, str] | None:
    after = position(query, bound)
    if after is None:
        return None
    if len(after) != 2 or not isinstance(after[0], int) or not isinstance(after[1], str):
        raise bad_params(cursor="is malformed")
    return after[0], after[1]


@bp.get("/findings")
@requires("reader")
@bp.input(FindingQuery, location="query", arg_name="query", unknown=RAISE)
@bp.output(FindingPage)
@bp.doc(
    summary="Lifecycle findings (departures from the documented Open Media lifecycle), "
    "keyset-paged over (event_id, code)",
    responses=[400, 401, 403],
)
def search_findings(query: dict[str, Any]) -> Response:
    order = query["order"]
    bound = digest("findings", query, _FILTERS, order)
    after = _after(query, bound)
    flt = findings_queries.FindingFilter(
        equals={k: query[k] for k in _FILTERS if query.get(k) is not None},
        start=query.get("from_"),
        end=query.get("to"),
    )
    limit = query["limit"]
    connection = conn()
    rows = findings_queries.search_findings(
        connection, flt, newest_first=order == "newest", limit=limit + 1, after=after
    )
    rows, last = split_page(rows, limit)
    cursor = next_cursor(bound, None if last is None else [last.event_id, last.code])
    coverage = coverage_summary(
        connection,
        flt.start,
        flt.end,
        [r.received_at for r in rows],
        query.get("account"),
        {r.account for r in rows},
    )
    set_rows(len(rows))
    return page([r.json for r in rows], cursor, coverage)
