"""The BI summaries (bi_segments, bi_user_data_changes, bi_findings) follow the events by
auditor_bi_refresh(): every interaction with events past the watermark is recomputed. The
views are exact either way (they compute the pending interactions live); the refresh only
keeps them fast. Functions take a connection and never commit."""

from __future__ import annotations

from typing import Any

import psycopg

DEFAULT_BATCH = 20_000


def refresh_once(conn: psycopg.Connection[Any], max_events: int = DEFAULT_BATCH) -> int:
    """Fold up to max_events events past the watermark; returns how many (0: caught up, or
    another refresh holds the lock)."""
    row = conn.execute("SELECT auditor_bi_refresh(%s)", (max_events,)).fetchone()
    return int(row[0]) if row else 0


def pending_events(conn: psycopg.Connection[Any]) -> int:
    """Events stored past the watermark."""
    row = conn.execute(
        "SELECT count(*) FROM events"
        " WHERE id > (SELECT last_event_id FROM bi_refresh_state WHERE id = 1)"
    ).fetchone()
    return int(row[0]) if row else 0
