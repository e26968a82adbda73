"""What retention would drop: the monthly events partitions, their rows per media type, the
holds that match them, and per partition the decision with its reason."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg

from auditor.retention.settings import RetentionSettings, month_start, months_before

# Monthly partitions only: the default partition holds rows of months that had none when they
# arrived; it is never dropped (its rows are listed as kept).
_PARTITIONS = r"""
SELECT c.relname
FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid
WHERE i.inhparent = 'events'::regclass AND c.relname ~ '^events_[0-9]{4}_[0-9]{2}$'
ORDER BY c.relname
"""
_BY_MEDIA_TYPE = """
SELECT media_type, count(*) FROM events
WHERE received_at >= %s AND received_at < %s GROUP BY media_type ORDER BY media_type NULLS FIRST
"""
_HOLDS = "SELECT hold_id, rows FROM auditor_holds_in_range(%s, %s)"
# Through the parent: a partition's own privileges are not the parent's.
_DEFAULT_OLD = (
    "SELECT count(*) FROM events WHERE tableoid = 'events_default'::regclass AND received_at < %s"
)


@dataclass(frozen=True)
class Decision:
    partition: str
    start: datetime
    end: datetime
    rows: int
    by_media_type: dict[str, int]
    holds: dict[int, int]  # hold id -> rows it matches
    drop: bool
    reason: str

    def as_json(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "from": self.start.isoformat().replace("+00:00", "Z"),
            "to": self.end.isoformat().replace("+00:00", "Z"),
            "rows": self.rows,
            "by_media_type": self.by_media_type,
            "holds": {str(k): v for k, v in self.holds.items()},
            "drop": self.drop,
            "reason": self.reason,
        }


@dataclass
class Plan:
    settings: RetentionSettings
    now: datetime
    decisions: list[Decision] = field(default_factory=list)
    default_rows_past_keep: int | None = None

    @property
    def to_drop(self) -> list[Decision]:
        return [d for d in self.decisions if d.drop]


def bounds(partition: str) -> tuple[datetime, datetime]:
    year, month = int(partition[7:11]), int(partition[12:14])
    start = datetime(year, month, 1, tzinfo=UTC)
    return start, months_before(start, -1)


def _decide(
    partition: str,
    start: datetime,
    end: datetime,
    by_type: dict[str, int],
    holds: dict[int, int],
    settings: RetentionSettings,
    this_month: datetime,
) -> tuple[bool, str]:
    if settings.months is None and not settings.by_media_type:
        return False, "no retention configured (AUDITOR_RETENTION_MONTHS, or --older-than)"
    if end > this_month:
        return False, "the month is not over"
    for media_type in by_type or {"": 0}:
        keep = settings.keep_for(media_type or None)
        if keep is None:
            return False, f"no retention set for mediaType {media_type or '(none)'}"
        cutoff = months_before(this_month, keep)
        if end > cutoff:
            who = f"mediaType {media_type}" if media_type in settings.by_media_type else "events"
            return False, f"within the {keep} months kept for {who} (until {cutoff:%Y-%m})"
    if holds:
        listed = ", ".join(f"hold {k} ({v} rows)" for k, v in holds.items())
        return False, f"under legal hold: {listed}"
    keep = settings.months
    return True, f"older than the {keep} months kept" if keep else "past every mediaType's keep"


def make_plan(conn: psycopg.Connection[Any], settings: RetentionSettings, now: datetime) -> Plan:
    """Decide for every monthly partition, in the caller's transaction."""
    this_month = month_start(now)
    plan = Plan(settings, now)
    names = [str(r[0]) for r in conn.execute(_PARTITIONS).fetchall()]
    for name in names:
        start, end = bounds(name)
        by_type = {
            (str(t) if t is not None else ""): int(n)
            for t, n in conn.execute(_BY_MEDIA_TYPE, (start, end)).fetchall()
        }
        holds = {int(h): int(n) for h, n in conn.execute(_HOLDS, (start, end)).fetchall()}
        drop, reason = _decide(name, start, end, by_type, holds, settings, this_month)
        plan.decisions.append(
            Decision(name, start, end, sum(by_type.values()), by_type, holds, drop, reason)
        )
    if settings.months is not None:
        row = conn.execute(_DEFAULT_OLD, (months_before(this_month, settings.months),)).fetchone()
        plan.default_rows_past_keep = int(row[0]) if row else 0
    return plan
