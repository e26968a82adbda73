"""Read side of the coverage contract: when each account was listened to, and the gaps.

An interval covers [started_at, end) with end = ended_at if set; else now() while its
heartbeat is fresh (live, within LIVE_WINDOW); else its last heartbeat (the worker died);
and never beyond its worker's drain progress (what it received up to then is stored).
A gap of an account inside [from, to) is every sub-range no interval of that account covers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import args_row

LIVE_WINDOW_SECONDS = 15

# Each interval with its liveness and its effective end, computed as the contract says, and
# clipped to the time up to which its worker had stored everything it received
# (drain_progress): a spool backlog or a paused drain is not yet coverage of stored rows.
_FRESH = f"c.heartbeat_at >= now() - interval '{LIVE_WINDOW_SECONDS} seconds'"
# On a hot standby (AUDITOR_READ_DATABASE_URL), nothing past the last transaction replayed:
# a live interval would otherwise reach now() while the events since are not replayed yet.
REPLAYED_THROUGH = (
    "CASE WHEN pg_is_in_recovery()"
    " THEN coalesce(pg_last_xact_replay_timestamp(), '-infinity') ELSE 'infinity' END"
)
_EFFECTIVE = f"""SELECT c.account, c.worker_id, c.channels, c.started_at, c.ended_at, c.end_reason,
           {_FRESH} AS live,
           least(coalesce(c.ended_at, CASE WHEN {_FRESH} THEN now() ELSE c.heartbeat_at END),
                 coalesce(p.stored_through, 'infinity'), {REPLAYED_THROUGH}) AS end_at
    FROM coverage_intervals AS c
    LEFT JOIN drain_progress AS p ON p.worker_id = c.worker_id"""

# Intervals overlapping [from, to).
_INTERVALS = f"""
SELECT account, worker_id, channels, started_at, end_at, ended_at IS NULL AND live AS live,
       end_reason
FROM (
    {_EFFECTIVE}
    WHERE started_at < %(to)s AND (%(all)s OR account = ANY(%(accounts)s))
) AS c
WHERE end_at > %(from)s
ORDER BY account, started_at
"""

# The intervals of the accounts that saw one interaction, overlapping its lifetime
# [first_seen_at, last_seen_at once completed, else now].
INTERACTION_INTERVALS = f"""
SELECT c.account, c.worker_id, c.channels, c.started_at, c.end_at,
       c.ended_at IS NULL AND c.live AS live, c.end_reason
FROM interactions AS i
CROSS JOIN LATERAL (
    {_EFFECTIVE}
    WHERE account = ANY(i.accounts)
      AND started_at < CASE WHEN i.completed_at IS NOT NULL THEN i.last_seen_at ELSE now() END
) AS c
WHERE i.interaction_id = %s AND c.end_at > i.first_seen_at
ORDER BY c.account, c.started_at
"""

_KNOWN_ACCOUNTS = "SELECT DISTINCT account FROM coverage_intervals ORDER BY account"
_KNOWN_BY = (
    "SELECT DISTINCT account FROM coverage_intervals WHERE started_at <= %(t)s ORDER BY account"
)

# Per account, the earliest receipt before T of an event stored after T: as known at T, the
# record of that account was incomplete from then on (a spool still held it).
_STORED_LATE = """
SELECT account, min(received_at) FROM events
WHERE stored_at > %(t)s AND received_at < %(t)s AND account = ANY(%(accounts)s)
GROUP BY account
"""


@dataclass(frozen=True)
class Interval:
    account: str
    worker_id: str
    channels: list[str]
    started_at: datetime
    end_at: datetime
    live: bool
    end_reason: str | None


@dataclass(frozen=True)
class Gap:
    account: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class AccountCoverage:
    account: str
    intervals: list[Interval]
    gaps: list[Gap]


@dataclass(frozen=True)
class Coverage:
    start: datetime
    end: datetime
    accounts: list[AccountCoverage]

    @property
    def gaps(self) -> list[Gap]:
        return [gap for account in self.accounts for gap in account.gaps]

    @property
    def complete(self) -> bool:
        return not self.gaps


def gaps_of(
    account: str, intervals: Iterable[Interval], start: datetime, end: datetime
) -> list[Gap]:
    """The parts of [start, end) that no interval covers (intervals sorted by started_at).

    Kept in Python rather than PostgreSQL's multiranges (tstzmultirange minus range_agg):
    the intervals are fetched anyway (answers list them), "as known at T" clips them here
    first (the SQL would need that clipping too), and the extra statement made small answers
    (a timeline's few accounts) up to 1.9-2.8x slower while saving 10-50% only from hundreds
    of accounts on (bench/coverage_gaps.py)."""
    gaps = []
    cursor = start
    for interval in intervals:
        if interval.started_at > cursor:
            gaps.append(Gap(account, cursor, min(interval.started_at, end)))
        cursor = max(cursor, interval.end_at)
        if cursor >= end:
            break
    if cursor < end:
        gaps.append(Gap(account, cursor, end))
    return [gap for gap in gaps if gap.end > gap.start]


def coverage(
    conn: psycopg.Connection[Any],
    start: datetime,
    end: datetime,
    accounts: Sequence[str] | None = None,
    *,
    also_known: bool = False,
    as_of: datetime | None = None,
) -> Coverage:
    """Coverage over [start, end) of the given accounts; of every account ever covered when
    ``accounts`` is None, or of both with ``also_known``. One round trip (pipelined).

    With ``as_of``: coverage as known then (``end`` no later than it; see _as_known_at)."""
    every = accounts is None or also_known
    given = sorted(set(accounts or ()))
    if as_of is not None:
        end = max(start, min(end, as_of))
    with (
        conn.pipeline(),
        conn.cursor() as known_cur,
        conn.cursor(row_factory=args_row(Interval)) as cur,
    ):
        if every:
            if as_of is None:
                known_cur.execute(_KNOWN_ACCOUNTS)
            else:
                known_cur.execute(_KNOWN_BY, {"t": as_of})
        cur.execute(_INTERVALS, {"from": start, "to": end, "all": every, "accounts": given})
        known = [row[0] for row in known_cur.fetchall()] if every else []
        rows = cur.fetchall()
    if as_of is not None:
        rows = _as_known_at(conn, rows, as_of)
    by_account: dict[str, list[Interval]] = {name: [] for name in [*known, *given]}
    for row in rows:
        by_account.setdefault(row.account, []).append(row)
    return Coverage(
        start,
        end,
        [
            AccountCoverage(name, found, gaps_of(name, found, start, end))
            for name, found in sorted(by_account.items())
        ],
    )


def _as_known_at(
    conn: psycopg.Connection[Any], rows: list[Interval], as_of: datetime
) -> list[Interval]:
    """Intervals as they could be known at ``as_of``: started by then, ended no later than
    then, and for an account with events received before then but stored after, ended no
    later than the first of those (its worker's drain progress is kept only as its latest
    value, so this is what the events say was missing at the time). None is live."""
    started = [row for row in rows if row.started_at <= as_of]
    accounts = sorted({row.account for row in started})
    late: dict[str, datetime] = {}
    if accounts:
        with conn.cursor() as cur:
            cur.execute(_STORED_LATE, {"t": as_of, "accounts": accounts})
            late = {row[0]: row[1] for row in cur.fetchall()}
    clipped = []
    for row in started:
        end_at = min(row.end_at, as_of, late.get(row.account, as_of))
        if end_at > row.started_at:
            clipped.append(
                Interval(
                    row.account,
                    row.worker_id,
                    row.channels,
                    row.started_at,
                    end_at,
                    False,
                    row.end_reason if row.end_at <= end_at else None,
                )
            )
    return clipped
