"""/api/v1: interactions, timelines, event search, coverage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from apiflask import APIBlueprint, HTTPError
from flask import Response
from marshmallow import RAISE

from auditor.retention import receipts
from auditor.store import coverage_queries, queries, timeline
from web import schemas, searches
from web.audit import requires, set_rows
from web.cursor import query_digest
from web.db import conn
from web.paging import (
    dumps,
    gap_json,
    id_position,
    iso,
    json_response,
    next_cursor,
    page,
    user_data_filters,
)
from web.query_params import USER_DATA_DOC

bp = APIBlueprint("api", __name__, url_prefix="/api/v1", tag="API")
READ_ERRORS = [400, 401, 403]
DEFAULT_COVERAGE_WINDOW = timedelta(hours=24)


def _not_found(interaction_id: str) -> HTTPError:
    return HTTPError(404, f"no interaction with id {interaction_id!r}")


@bp.get("/interactions/<interaction_id>")
@requires("reader")
@bp.input(schemas.InteractionLookupQuery, location="query", arg_name="query", unknown=RAISE)
@bp.output(schemas.InteractionDetail)
@bp.doc(
    summary="Current state of one interaction (projection), or as known at `as_of`",
    responses=[400, 401, 403, 404],
)
def get_interaction(interaction_id: str, query: dict[str, Any]) -> Response:
    body = queries.interaction_json(conn(), interaction_id, as_of=query.get("as_of"))
    if body is None:
        raise _not_found(interaction_id)
    set_rows(1)
    return json_response(body)


def _timeline_event(entry: timeline.TimelineEntry) -> dict[str, Any]:
    """An entry as schemas.TimelineEvent says (its fields come from the same table)."""
    shown: dict[str, Any] = {
        name: getattr(entry, attribute) for name, attribute in schemas.TIMELINE_COLUMNS.items()
    }
    diff = entry.user_data_diff
    shown["snapshot"] = entry.kind == "snapshot"
    shown["capabilities"] = entry.capabilities
    shown["user_data_diff"] = (
        None
        if diff is None
        else {"added": diff.added, "changed": diff.changed, "removed": diff.removed}
    )
    return shown


@bp.get("/interactions/<interaction_id>/timeline")
@requires("reader")
@bp.input(schemas.TimelineQuery, location="query", arg_name="query", unknown=RAISE)
@bp.output(schemas.Timeline)
@bp.doc(
    summary="One interaction's events in order, a page at a time (keyset by event id), with "
    "user-data diffs and coverage gaps; `as_of` shows it as known then",
    description="Pages follow `next_cursor` (null on the last page). Each event's user-data "
    "diff compares with the previous event that carried userData, on an earlier page too. "
    "With `as_of`, only events stored (`stored_at`, not `received_at`) at or before it count, "
    "the interaction is the projection they imply, and the gaps are as known then.",
    responses=[400, 401, 403, 404],
)
def get_timeline(interaction_id: str, query: dict[str, Any]) -> Response:
    as_of = query.get("as_of")
    bound = query_digest("timeline", {"id": interaction_id, "as_of": iso(as_of)}, "oldest")
    after = id_position(query, bound)
    found = timeline.timeline_page(
        conn(), interaction_id, after=after, limit=query["limit"], as_of=as_of
    )
    if found is None:
        raise _not_found(interaction_id)
    cursor = next_cursor(bound, None if found.next_after is None else [found.next_after])
    lifetime = found.interaction.first_seen_at
    purged = receipts.purged_ranges(conn(), lifetime, max(found.lifetime_end, lifetime))
    set_rows(len(found.entries))
    body = (
        '{"interaction":'
        + found.interaction.json
        + ',"events":'
        + dumps([_timeline_event(e) for e in found.entries])
        + ',"coverage_gaps":'
        + dumps([gap_json(g) for g in found.gaps])
        + ',"next_cursor":'
        + dumps(cursor)
        + ',"as_of":'
        + dumps(iso(as_of))
        + ',"purged":'
        + dumps([p.as_json() for p in purged])
        + "}"
    )
    return json_response(body)


@bp.get("/events")
@requires("reader")
@bp.input(schemas.EventQuery, location="query", arg_name="query", unknown=RAISE)
@bp.output(schemas.EventPage)
@bp.doc(
    summary="Search events, keyset-paged",
    description="User-data filters match the userData the event itself carried (its value "
    "at that event; an event without userData matches none). " + USER_DATA_DOC,
    responses=READ_ERRORS,
)
def search_events(query: dict[str, Any]) -> Response:
    found = searches.events(query, user_data_filters(), "events")
    return page(found.items, found.next_cursor, found.coverage)


@bp.get("/interactions")
@requires("reader")
@bp.input(schemas.InteractionQuery, location="query", arg_name="query", unknown=RAISE)
@bp.output(schemas.InteractionPage)
@bp.doc(
    summary="Search the projection, keyset-paged over (last_seen_at, interaction_id)",
    description="User-data filters match the current userData, or with `ever=true` any value "
    "each key has held. With `as_of`, each interaction is the projection implied by its "
    "events stored by then. " + USER_DATA_DOC,
    responses=READ_ERRORS,
)
def search_interactions(query: dict[str, Any]) -> Response:
    found = searches.interactions(query, user_data_filters(), "interactions")
    return page(found.items, found.next_cursor, found.coverage)


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
