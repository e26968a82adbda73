"""The live tail of a timeline: server-sent events, short-lived by design.

Each answer holds no thread for long: it sends the events stored after the last one the
browser has (the Last-Event-ID header EventSource sends back, or `after`), a `retry` delay,
and ends. EventSource reconnects after that delay with the new Last-Event-ID. So a viewer
costs one short, indexed request every RETRY_MS instead of a gthread thread for as long as
the page is open: 100 open timelines are ~50 short requests a second, and API requests keep
their threads (tests/pages/test_live_load.py holds 100 viewers against `auditor serve`)."""

from __future__ import annotations

from flask import Response, get_template_attribute, request

from auditor.store import timeline as timeline_store
from web.audit import set_rows
from web.db import conn
from web.pages import timeline_view
from web.pages.gate import PageError, bp
from web.pages.timeline import findings_by_event

RETRY_MS = 2000
BATCH = 50  # events per answer; more follow at once (retry 0) when there are more


def _last_event_id() -> int:
    raw = request.headers.get("Last-Event-ID") or request.args.get("after") or "0"
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise PageError(400, "Bad parameter(s).", [("after", "must be an event id (digits)")])
    return int(raw)


def _data_lines(html: str) -> str:
    """One `data:` line per line of HTML. SSE lines end only at LF, CR or CRLF (not at the
    other breaks str.splitlines knows); a CR becomes its character reference, which HTML
    reads the same."""
    return "".join(f"data: {line}\n" for line in html.replace("\r", "&#13;").split("\n"))


@bp.get("/interactions/<interaction_id>/live")
def live(interaction_id: str) -> Response:
    after = _last_event_id()
    connection = conn()
    found = timeline_store.timeline_page(connection, interaction_id, after=after, limit=BATCH)
    if found is None:
        raise PageError(404, f"No interaction with id {interaction_id!r}.")
    entries = found.entries
    set_rows(len(entries))
    render = get_template_attribute("_timeline.html", "entry")
    drawn = timeline_view.rows(
        entries,
        [],
        window_start=found.interaction.first_seen_at,
        window_end=None,
        findings=findings_by_event(connection, interaction_id, entries),
    )
    more = found.next_after is not None
    parts = [f"retry: {0 if more else RETRY_MS}\n\n"]
    for row in drawn:
        assert row.entry is not None
        parts.append(f"id: {row.entry.event_id}\nevent: entry\n{_data_lines(str(render(row)))}\n")
    if not entries:
        parts.append(": nothing new\n\n")
    response = Response("".join(parts), mimetype="text/event-stream")
    response.headers["X-Accel-Buffering"] = "no"
    return response
