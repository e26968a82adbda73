"""Volumes for the overview page: events per time bucket by mediaType and by state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

# date_bin keeps buckets aligned to the range's start; the BRIN index on received_at finds
# the range. NULL media types or states (e.g. errors) are counted under "(none)".
_VOLUMES = """
SELECT date_bin(%(bucket)s, received_at, %(start)s) AS at,
       coalesce(media_type, '(none)'), coalesce(state, '(none)'), count(*)
FROM events
WHERE received_at >= %(start)s AND received_at < %(end)s
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3
"""


@dataclass(frozen=True)
class Volume:
    at: datetime  # the bucket's start
    media_type: str
    state: str
    events: int


def volumes(
    conn: psycopg.Connection[Any], start: datetime, end: datetime, bucket: timedelta
) -> list[Volume]:
    """Event counts per (bucket, mediaType, state) over [start, end)."""
    with conn.cursor() as cur:
        cur.execute(_VOLUMES, {"bucket": bucket, "start": start, "end": end})
        return [Volume(*row) for row in cur.fetchall()]
