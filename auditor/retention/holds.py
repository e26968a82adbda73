"""Legal holds: predicates over events that retention must not purge.

A hold names any of interaction ids, referenceIds, an account, a mediaType and a received
time range [from, to); an event is held when every part given matches (the database's
auditor_holds_in_range() is the one definition of "matches"). Holds and their releases are
append-only rows that enter the record (sources `hold` and `release`): the CLI seals them at
once, rows placed through the API are sealed by the worker's sealer within a minute.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from auditor.errors import UserError

MAX_IDS = 10_000
MAX_TEXT = 2_000


@dataclass(frozen=True)
class HoldSpec:
    reason: str
    interaction_ids: Sequence[str] | None = None
    reference_ids: Sequence[str] | None = None
    account: str | None = None
    media_type: str | None = None
    received_from: datetime | None = None
    received_to: datetime | None = None

    def problems(self) -> dict[str, str]:
        """What is wrong, per field (empty when the hold may be placed)."""
        found: dict[str, str] = {}
        if not self.reason.strip(" "):  # as the database's btrim() check
            found["reason"] = "is required: say why the records are held"
        elif len(self.reason) > MAX_TEXT:
            found["reason"] = f"is longer than {MAX_TEXT} characters"
        for name in ("interaction_ids", "reference_ids"):
            values = getattr(self, name)
            if values is None:
                continue
            if not values or any(not v for v in values):
                found[name] = "must list at least one id, none empty"
            elif len(values) > MAX_IDS:
                found[name] = f"at most {MAX_IDS} ids per hold"
        for name in ("account", "media_type"):
            value = getattr(self, name)
            if value is not None and (not value or len(value) > MAX_TEXT):
                found[name] = "must not be empty"
        for name in ("received_from", "received_to"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                found[name] = "needs a time zone (e.g. 2024-01-01T00:00:00Z)"
        if (
            self.received_from is not None
            and self.received_to is not None
            and "received_from" not in found
            and "received_to" not in found
            and self.received_to <= self.received_from
        ):
            found["received_to"] = "must be after received_from"
        if not any(
            v is not None
            for v in (
                self.interaction_ids,
                self.reference_ids,
                self.account,
                self.media_type,
                self.received_from,
                self.received_to,
            )
        ):
            found["predicate"] = (
                "give at least one of interaction ids, referenceIds, account, mediaType, "
                "or a time range"
            )
        return found


@dataclass(frozen=True)
class Hold:
    id: int
    placed_at: datetime
    placed_by: str
    reason: str
    interaction_ids: list[str] | None
    reference_ids: list[str] | None
    account: str | None
    media_type: str | None
    received_from: datetime | None
    received_to: datetime | None
    released_at: datetime | None
    released_by: str | None
    release_reason: str | None

    @property
    def active(self) -> bool:
        return self.released_at is None

    def as_json(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat().replace("+00:00", "Z")

        return {
            "id": self.id,
            "placed_at": iso(self.placed_at),
            "placed_by": self.placed_by,
            "reason": self.reason,
            "interaction_ids": self.interaction_ids,
            "reference_ids": self.reference_ids,
            "account": self.account,
            "media_type": self.media_type,
            "from": iso(self.received_from),
            "to": iso(self.received_to),
            "active": self.active,
            "released_at": iso(self.released_at),
            "released_by": self.released_by,
            "release_reason": self.release_reason,
        }


_SELECT = """
SELECT h.id, h.placed_at, h.placed_by, h.reason, h.interaction_ids, h.reference_ids,
       h.account, h.media_type, h.received_from, h.received_to,
       r.released_at, r.released_by, r.reason
FROM legal_holds AS h LEFT JOIN hold_releases AS r ON r.hold_id = h.id
"""


def place(conn: psycopg.Connection[Any], spec: HoldSpec, placed_by: str) -> int:
    """Insert the hold in the caller's transaction; returns its id. Raises UserError."""
    problems = spec.problems()
    if problems:
        raise UserError("; ".join(f"{k}: {v}" for k, v in problems.items()))
    row = conn.execute(
        "INSERT INTO legal_holds (placed_by, reason, interaction_ids, reference_ids, account,"
        " media_type, received_from, received_to) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
        " RETURNING id",
        (
            placed_by,
            spec.reason.strip(),
            None if spec.interaction_ids is None else list(spec.interaction_ids),
            None if spec.reference_ids is None else list(spec.reference_ids),
            spec.account,
            spec.media_type,
            spec.received_from,
            spec.received_to,
        ),
    ).fetchone()
    assert row is not None
    return int(row[0])


class UnknownHold(UserError):
    pass


def release(conn: psycopg.Connection[Any], hold_id: int, released_by: str, reason: str) -> int:
    """Release an active hold in the caller's transaction; returns the release's id."""
    if not reason.strip():
        raise UserError("reason: is required: say why the hold ends")
    found = get(conn, hold_id)
    if found is None:
        raise UnknownHold(f"no legal hold {hold_id}")
    if not found.active:
        raise UserError(f"legal hold {hold_id} was released already ({found.released_at})")
    row = conn.execute(
        "INSERT INTO hold_releases (hold_id, released_by, reason) VALUES (%s, %s, %s)"
        " ON CONFLICT (hold_id) DO NOTHING RETURNING id",
        (hold_id, released_by, reason.strip()),
    ).fetchone()
    if row is None:  # released by someone else meanwhile
        raise UserError(f"legal hold {hold_id} was released already")
    return int(row[0])


def get(conn: psycopg.Connection[Any], hold_id: int) -> Hold | None:
    row = conn.execute(_SELECT + " WHERE h.id = %s", (hold_id,)).fetchone()
    return None if row is None else Hold(*row)


def listing(conn: psycopg.Connection[Any], *, active_only: bool = False) -> list[Hold]:
    where = " WHERE r.id IS NULL" if active_only else ""
    return [Hold(*row) for row in conn.execute(_SELECT + where + " ORDER BY h.id").fetchall()]
