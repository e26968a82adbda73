"""What the projection shows for one agent account: the worker's snapshots ("Absent" items)
and reconciliation sweeps compare it with what GWS lists (auditor/ingest/snapshot.py,
sweep.py). Functions take a connection and never commit.

Only states received before a given time count: an item that changed after the GET that
is compared with them is live, not drift.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg

_ACTIVE = (
    "SELECT interaction_id FROM interactions WHERE account_states ? %s"
    " AND account_states -> %s ->> 'state' NOT IN ('Completed', 'Absent')"
    " AND (account_states -> %s ->> 'at')::timestamptz < %s::timestamptz"
    " AND media_type = ANY(%s)"
)
_PROJECTED = (
    "SELECT interaction_id, account_states -> %(a)s ->> 'state',"
    " (account_states -> %(a)s ->> 'at')::timestamptz < %(before)s"
    " FROM interactions WHERE account_states ? %(a)s AND ("
    "  interaction_id = ANY(%(listed)s) OR (media_type = ANY(%(media)s)"
    "  AND account_states -> %(a)s ->> 'state' NOT IN ('Completed', 'Absent')))"
)


def active_items(
    conn: psycopg.Connection[Any], account: str, since: str, media_types: Sequence[str]
) -> set[str]:
    """Items of these media types the account's latest state, received before `since`,
    shows open (not Completed, not Absent)."""
    rows = conn.execute(_ACTIVE, (account, account, account, since, list(media_types)))
    return {str(r[0]) for r in rows.fetchall()}


def projected_states(
    conn: psycopg.Connection[Any],
    account: str,
    listed: list[str],
    before: datetime,
    media_types: Sequence[str],
) -> dict[str, tuple[str | None, bool]]:
    """Interaction id -> (the account's latest state, whether it was received before
    `before`), for the listed items and the account's open ones."""
    rows = conn.execute(
        _PROJECTED, {"a": account, "before": before, "listed": listed, "media": list(media_types)}
    ).fetchall()
    return {str(r[0]): (r[1], bool(r[2])) for r in rows}
