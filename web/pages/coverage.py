"""Coverage: per account, the connected time and the gaps over a chosen range, as a chart
(inline SVG) and as a table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Response, request

from auditor.retention import receipts
from auditor.store import coverage_queries
from web import schemas
from web.audit import set_rows
from web.db import conn
from web.pages import charts
from web.pages.forms import form_values, load
from web.pages.gate import bp
from web.pages.views import page

DEFAULT_WINDOW = timedelta(hours=24)


@bp.get("/coverage")
def coverage() -> Response:
    values = form_values(request.args, ("from", "to", "account"))
    query, errors = load(schemas.CoverageQuery(), values)
    if errors:
        return page("coverage.html", status=400, form=values, errors=errors, found=None)
    end = query.get("to") or datetime.now(UTC)
    start = query.get("from_") or end - DEFAULT_WINDOW
    account = query.get("account")
    found = coverage_queries.coverage(conn(), start, end, [account] if account else None)
    chart = charts.coverage_chart(
        start,
        end,
        [
            (
                a.account,
                [(i.started_at, i.end_at) for i in a.intervals],
                [(g.start, g.end) for g in a.gaps],
            )
            for a in found.accounts
        ],
    )
    set_rows(sum(len(a.intervals) for a in found.accounts))
    connected = {
        a.account: sum(
            (min(i.end_at, end) - max(i.started_at, start) for i in a.intervals), timedelta()
        )
        for a in found.accounts
    }
    return page(
        "coverage.html",
        form={**values, "from": start.isoformat(), "to": end.isoformat()},
        errors=[],
        found=found,
        chart=chart,
        connected=connected,
        span=end - start,
        purged=[p.as_json() for p in receipts.purged_ranges(conn(), start, end)],
    )
