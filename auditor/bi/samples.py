"""The sample queries of docs/bi.md: what analysts ask first, written once against bi.*.

Each takes the parameters :start and :end (a half-open time range), in SQLAlchemy's named
style, as notebooks and pandas.read_sql(text(...)) use them; `for_psycopg` gives psycopg's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class SampleQuery:
    name: str
    title: str
    sql: str


SAMPLE_QUERIES = (
    SampleQuery(
        "handle_time_by_day_and_media_type",
        "Handle time by day and media type (interactions completed in the range)",
        """SELECT (completed_at AT TIME ZONE 'UTC')::date AS day, media_type,
       count(*) AS interactions,
       round(avg(handle_time_seconds), 3) AS avg_handle_time_seconds,
       max(handle_time_seconds) AS max_handle_time_seconds
FROM bi.interactions
WHERE completed_at >= :start AND completed_at < :end
  AND handle_time_seconds IS NOT NULL
GROUP BY 1, 2
ORDER BY 1, 2""",
    ),
    SampleQuery(
        "error_rate_by_media_type",
        "Error rate by media type (share of interactions with an Error, first seen in the range)",
        """SELECT media_type, count(*) AS interactions,
       count(*) FILTER (WHERE error_count > 0) AS with_errors,
       round(count(*) FILTER (WHERE error_count > 0)::numeric / count(*), 4) AS error_rate
FROM bi.interactions
WHERE first_seen_at >= :start AND first_seen_at < :end
GROUP BY media_type
ORDER BY media_type""",
    ),
    SampleQuery(
        "transfers_per_agent",
        "Transfers per agent (each agent's part of the interactions first seen in the range)",
        """SELECT account AS agent,
       count(*) FILTER (WHERE outcome = 'transferred') AS transferred,
       count(*) FILTER (WHERE outcome = 'completed') AS completed,
       count(*) FILTER (WHERE outcome = 'rejected') AS rejected,
       count(*) AS interactions
FROM bi.agent_segments
WHERE first_seen_at >= :start AND first_seen_at < :end
GROUP BY account
ORDER BY account""",
    ),
    SampleQuery(
        "interactions_with_findings",
        "Interactions with lifecycle findings (findings on events received in the range)",
        """SELECT f.interaction_id, i.media_type, i.final_state, i.has_coverage_gap,
       string_agg(DISTINCT f.code, ',' ORDER BY f.code) AS codes,
       count(*) AS findings
FROM bi.lifecycle_findings AS f
JOIN bi.interactions AS i USING (interaction_id)
WHERE f.received_at >= :start AND f.received_at < :end
GROUP BY f.interaction_id, i.media_type, i.final_state, i.has_coverage_gap
ORDER BY findings DESC, f.interaction_id""",
    ),
    SampleQuery(
        "user_data_keys_changed_most_often",
        "User-data keys changed most often (after the interaction's first userData)",
        """SELECT key,
       count(*) FILTER (WHERE change = 'added') AS added,
       count(*) FILTER (WHERE change = 'changed') AS changed,
       count(*) FILTER (WHERE change = 'removed') AS removed,
       count(*) AS changes
FROM bi.user_data_changes
WHERE received_at >= :start AND received_at < :end AND NOT is_initial
GROUP BY key
ORDER BY changes DESC, key
LIMIT 20""",
    ),
)

_NAMED = re.compile(r"(?<![:\w]):(\w+)")


def for_psycopg(sql: str) -> str:
    """The same query with psycopg's %(name)s placeholders (no literal % in these queries)."""
    return _NAMED.sub(r"%(\1)s", sql)


def by_name(name: str) -> SampleQuery:
    for query in SAMPLE_QUERIES:
        if query.name == name:
            return query
    raise KeyError(name)
