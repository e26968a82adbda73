"""Read side: questions asked of the store. Functions take a connection and never commit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from auditor.notifications import openmedia_of


@dataclass(frozen=True)
class UserDataDiff:
    added: dict[str, Any]
    changed: dict[str, dict[str, Any]]  # key -> {"from": old, "to": new}
    removed: list[str]

    @property
    def empty(self) -> bool:
        return not (self.added or self.changed or self.removed)


def user_data_diff(before: dict[str, Any] | None, after: dict[str, Any] | None) -> UserDataDiff:
    """What changed between two full userData snapshots (GWS sends the whole map each time)."""
    old = before or {}
    new = after or {}
    return UserDataDiff(
        added={k: v for k, v in new.items() if k not in old},
        changed={k: {"from": old[k], "to": v} for k, v in new.items() if k in old and old[k] != v},
        removed=sorted(k for k in old if k not in new),
    )


@dataclass(frozen=True)
class TimelineEntry:
    event_id: int
    received_at: datetime
    account: str
    kind: str
    channel: str | None
    message_type: str | None
    notification_type: str | None
    state: str | None
    reference_id: str | None
    capabilities: list[Any] | None
    user_data: dict[str, Any] | None
    user_data_diff: UserDataDiff | None  # None when the event carried no userData
    error_code: str | None
    error_message: str | None
    payload: dict[str, Any]


_TIMELINE = """
SELECT id, received_at, account, kind, channel, message_type, notification_type, state,
       reference_id, error_code, error_message, payload
FROM events WHERE interaction_id = %s ORDER BY id
"""


def timeline(conn: psycopg.Connection[Any], interaction_id: str) -> list[TimelineEntry]:
    """Every event of one interaction, in arrival order across all agents' sessions."""
    entries = []
    previous: dict[str, Any] | None = None
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(_TIMELINE, (interaction_id,))
        for row in cur:
            resource = openmedia_of(row["payload"])
            caps = resource.get("capabilities")
            data = resource.get("userData")
            user_data = data if isinstance(data, dict) else None
            diff = None
            if user_data is not None:
                diff = user_data_diff(previous, user_data)
                previous = user_data
            entries.append(
                TimelineEntry(
                    event_id=row["id"],
                    received_at=row["received_at"],
                    account=row["account"],
                    kind=row["kind"],
                    channel=row["channel"],
                    message_type=row["message_type"],
                    notification_type=row["notification_type"],
                    state=row["state"],
                    reference_id=row["reference_id"],
                    capabilities=caps if isinstance(caps, list) else None,
                    user_data=user_data,
                    user_data_diff=diff,
                    error_code=row["error_code"],
                    error_message=row["error_message"],
                    payload=row["payload"],
                )
            )
    return entries


def interaction(conn: psycopg.Connection[Any], interaction_id: str) -> dict[str, Any] | None:
    """The projection row of one interaction."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT * FROM interactions WHERE interaction_id = %s", (interaction_id,))
        return cur.fetchone()
