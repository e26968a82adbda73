"""Overview: event volumes by mediaType and by state over time (stacked bars), and the
worker's status from its Prometheus endpoint when AUDITOR_API_WORKER_METRICS_URL is set."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Response, current_app, request

from auditor.store import overview_queries
from web.audit import set_rows
from web.db import conn
from web.pages import charts, worker_status
from web.pages.gate import PageError, bp
from web.pages.views import page

# Range choices: (parameter value, label, span, bucket width).
RANGES = {
    "1h": ("last hour", timedelta(hours=1), timedelta(minutes=2)),
    "6h": ("last 6 hours", timedelta(hours=6), timedelta(minutes=15)),
    "24h": ("last 24 hours", timedelta(hours=24), timedelta(hours=1)),
    "7d": ("last 7 days", timedelta(days=7), timedelta(hours=6)),
    "30d": ("last 30 days", timedelta(days=30), timedelta(days=1)),
    "90d": ("last 90 days", timedelta(days=90), timedelta(days=3)),
}
DEFAULT_RANGE = "24h"


def _floor(at: datetime, bucket: timedelta) -> datetime:
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    return epoch + ((at - epoch) // bucket) * bucket


@bp.get("/overview")
def overview() -> Response:
    chosen = request.args.get("range", DEFAULT_RANGE)
    if chosen not in RANGES:
        raise PageError(400, "Unknown range.", [("range", "one of " + ", ".join(RANGES))])
    _, span, bucket = RANGES[chosen]
    end = _floor(datetime.now(UTC), bucket) + bucket
    start = end - span
    rows = overview_queries.volumes(conn(), start, end, bucket)
    buckets = [start + bucket * i for i in range(int(span / bucket))]
    by_media: dict[datetime, dict[str, int]] = {}
    by_state: dict[datetime, dict[str, int]] = {}
    for row in rows:
        media = by_media.setdefault(row.at, {})
        media[row.media_type] = media.get(row.media_type, 0) + row.events
        state = by_state.setdefault(row.at, {})
        state[row.state] = state.get(row.state, 0) + row.events
    set_rows(len(rows))
    url = current_app.config["AUDITOR_SETTINGS"].api.worker_metrics_url
    return page(
        "overview.html",
        ranges=RANGES,
        chosen=chosen,
        start=start,
        end=end,
        total=sum(r.events for r in rows),
        media_chart=charts.stacked_bars(buckets, bucket, end, by_media),
        state_chart=charts.stacked_bars(buckets, bucket, end, by_state),
        worker=worker_status.read(url) if url else None,
    )
