"""/api/v1: interactions, timelines, event search, coverage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from apiflask import APIBlueprint, HTTPError
from flask import Response
from marshmallow import RAISE

from auditor.retention import receipts
from auditor.store import coverage_queries, queries
from web import schemas
from web.audit import conn, requires, set_rows
from web.paging import (
    coverage_summary,
    digest,
    dumps,
    gap_json,
    id_position,
    iso,
    json_response,
    next_cursor,
    page,
    split_page,
    time_and_text_position,
)

bp = APIBlueprint("api", __name__, url_prefix="/api/v1", tag="API")
READ_ERRORS = [400, 401, 403]
DEFAULT_COVERAGE_WINDOW = timedelta(hours=24)


def _not_found(interaction_id: str) -> HTTPError:
    return HTTPError(404, f"no interaction with id {interaction_id!r}")


@bp.get("/interactions/<interaction_id>")
@requires("reader")
@bp.output(schemas.InteractionDetail)
@bp.doc(summary="Current state of one interaction (projection)", responses=[401, 403, 404])
def get_interaction(interaction_id: str) -> Response:
    body = queries.interaction_json(conn(), interaction_id)
    if body is None:
        raise _not_found(interaction_id)
    set_rows(1)
    return json_response(body)


def _timeline_event(entry: queries.TimelineEntry) -> dict[str, Any]:
    diff = entry.user_data_diff
    return {
        "event_id": entry.event_id,
        "received_at": iso(entry.received_at),
        "account": entry.account,
        "kind": entry.kind,
        "snapshot": entry.kind == "snapshot",
        "channel": entry.channel,
        "notificationType": entry.notification_type,
        "messageType": entry.message_type,
        "state": entry.state,
        "capabilities": entry.capabilities,
        "referenceId": entry.reference_id,
        "user_data_diff": None
        if diff is None
        else {"added": diff.added, "changed": diff.changed, "removed": diff.removed},
        "error_code": entry.error_code,
        "error_message": entry.error_message,
    }


@bp.get("/interactions/<interaction_id>/timeline")
@requires("reader")
@bp.output(schemas.Timeline)
@bp.doc(
    summary="Every event of one interaction in order, with user-data diffs and coverage gaps",
    responses=[401, 403, 404],
)
def get_timeline(interaction_id: str) -> Response:
    bundle = queries.timeline_bundle(conn(), interaction_id)
    if bundle is None:
        raise _not_found(interaction_id)
    span, entries = bundle.span, bundle.entries
    end = max(bundle.end, span.first_seen_at)
    gaps = [
        gap
        for account in span.accounts
        for gap in coverage_queries.gaps_of(
            account,
            [i for i in bundle.intervals if i.account == account],
            span.first_seen_at,
            end,
        )
    ]
    purged = receipts.purged_ranges(conn(), span.first_seen_at, end)
    set_rows(len(entries))
    body = (
        '{"interaction":'
        + span.json
        + ',"events":'
        + dumps([_timeline_event(e) for e in entries])
        + ',"coverage_gaps":'
        + dumps([gap_json(g) for g in gaps])
        + ',"purged":'
        + dumps([p.as_json() for p in purged])
        + "}"
    )
    return json_response(body)


_EVENT_FILTERS = tuple(queries.EVENT_EQUALS)


@bp.get("/events")
@requires("reader")
@bp.input(schemas.EventQuery, location="query", arg_name="query", unknown=RAISE)
@bp.output(schemas.EventPage)
@bp.doc(summary="Search events, keyset-paged", responses=READ_ERRORS)
def search_events(query: dict[str, Any]) -> Response:
    order = query["order"]
    bound = digest("events", query, _EVENT_FILTERS, order)
    after_id = id_position(query, bound)
    flt = queries.EventFilter(
        equals={k: query[k] for k in _EVENT_FILTERS if query.get(k) is not None},
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
    return page([r[3] for r in rows], cursor, coverage)


_INTERACTION_FILTERS = ("state", "mediaType", "openmediaType", "account")


@bp.get("/interactions")
@requires("reader")
@bp.input(schemas.InteractionQuery, location="query", arg_name="query", unknown=RAISE)
@bp.output(schemas.InteractionPage)
@bp.doc(
    summary="Search the projection, keyset-paged over (last_seen_at, interaction_id)",
    responses=READ_ERRORS,
)
def search_interactions(query: dict[str, Any]) -> Response:
    order = query["order"]
    bound = digest("interactions", query, _INTERACTION_FILTERS, order)
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
    return page([r[3] for r in rows], cursor, coverage)


@bp.get("/coverage")
@requires("reader")
@bp.input(schemas.CoverageQuery, location="query", arg_name="query", unknown=RAISE)
@bp.output(schemas.CoverageReport)
@bp.doc(
    summary="Per account: connected intervals and gaps over [from, to) "
    "(default: the last 24 hours)",
    responses=READ_ERRORS,
)
def get_coverage(query: dict[str, Any]) -> Response:
    end = query.get("to") or datetime.now(UTC)
    start = query.get("from_") or end - DEFAULT_COVERAGE_WINDOW
    account = query.get("account")
    found = coverage_queries.coverage(conn(), start, end, [account] if account else None)
    accounts = [
        {
            "account": a.account,
            "intervals": [
                {
                    "worker_id": i.worker_id,
                    "channels": i.channels,
                    "from": iso(i.started_at),
                    "to": iso(i.end_at),
                    "live": i.live,
                    "end_reason": i.end_reason,
                }
                for i in a.intervals
            ],
            "gaps": [gap_json(g) for g in a.gaps],
        }
        for a in found.accounts
    ]
    set_rows(sum(len(a.intervals) for a in found.accounts))
    purged = receipts.purged_ranges(conn(), start, end)
    return json_response(
        dumps(
            {
                "from": iso(start),
                "to": iso(end),
                "complete": found.complete and not purged,
                "status": receipts.status(bool(found.gaps), purged),
                "accounts": accounts,
                "gaps": [gap_json(g) for g in found.gaps],
                "purged": [p.as_json() for p in purged],
            }
        )
    )
