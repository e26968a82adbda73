"""One interaction's timeline, a page at a time (auditor.store.timeline.timeline_page): never
the whole of a long interaction in one answer. "As known at" shows only rows stored by then."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from apiflask import Schema, fields, validators
from flask import Response, request

from auditor.retention import receipts
from auditor.store import findings_queries
from auditor.store import timeline as timeline_store
from web import schemas
from web.audit import set_rows
from web.db import conn
from web.pages import timeline_view
from web.pages.forms import form_values, load
from web.pages.gate import PageError, bp
from web.pages.views import page

PAGE_SIZE = 100
MAX_FINDINGS = 500


class TimelineQuery(Schema):
    after = schemas.Digits(max_digits=18, validate=validators.Range(0, 2**63 - 1))
    as_of = fields.AwareDateTime(format="iso")
    limit = schemas.Digits(load_default=PAGE_SIZE, validate=validators.Range(1, 1000))


def parse(args: Any) -> dict[str, Any]:
    values = form_values(args, ("after", "as_of", "limit"))
    query, errors = load(TimelineQuery(), values)
    if errors:
        raise PageError(400, "Bad parameter(s).", errors)
    as_of = query.get("as_of")
    if as_of is not None and as_of > datetime.now(UTC) + timedelta(seconds=5):
        raise PageError(400, "Bad parameter(s).", [("as_of", "is in the future")])
    return query


def findings_by_event(
    connection: Any, interaction_id: str, entries: list[timeline_store.TimelineEntry]
) -> dict[int, list[dict[str, Any]]]:
    """Lifecycle findings (bi_v1) of the page's events, by event id."""
    if not entries:
        return {}
    flt = findings_queries.FindingFilter(
        equals={"interactionId": interaction_id},
        start=min(e.received_at for e in entries),
        end=max(e.received_at for e in entries) + timedelta(microseconds=1),
    )
    found: dict[int, list[dict[str, Any]]] = {}
    ids = {e.event_id for e in entries}
    for row in findings_queries.search_findings(
        connection, flt, newest_first=False, limit=MAX_FINDINGS
    ):
        if row.event_id in ids:
            found.setdefault(row.event_id, []).append(json.loads(row.json))
    return found


@bp.get("/interactions/<interaction_id>")
def timeline(interaction_id: str) -> Response:
    query = parse(request.args)
    after, as_of = query.get("after"), query.get("as_of")
    connection = conn()
    found = timeline_store.timeline_page(
        connection, interaction_id, after=after, limit=query["limit"], as_of=as_of
    )
    if found is None:
        when = f" as known at {as_of.isoformat()}" if as_of else ""
        raise PageError(404, f"No interaction with id {interaction_id!r}{when}.")
    entries = found.entries
    view = found.interaction
    window_start = view.first_seen_at if after is None or not entries else entries[0].received_at
    window_end = None if found.next_after is None else entries[-1].received_at
    drawn = timeline_view.rows(
        entries,
        found.gaps,
        window_start=window_start,
        window_end=window_end,
        findings=findings_by_event(connection, interaction_id, entries),
    )
    set_rows(len(entries))
    last_id = entries[-1].event_id if entries else (after or 0)
    live = as_of is None and found.next_after is None
    return page(
        "timeline.html",
        interaction=json.loads(view.json),
        view=found,
        rows=drawn,
        as_of=as_of,
        as_of_value=as_of.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") if as_of else "",
        after=after,
        limit=query["limit"],
        default_limit=PAGE_SIZE,
        live_after=last_id if live else None,
        gaps=found.gaps,
        # months of its lifetime whose events retention dropped (docs/retention.md)
        purged=[
            p.as_json()
            for p in receipts.purged_ranges(
                connection, view.first_seen_at, max(found.lifetime_end, view.first_seen_at)
            )
        ],
    )
