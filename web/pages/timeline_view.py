"""Turning a timeline page (auditor.store.timeline) into what the template draws: events and
coverage gaps in one sequence, each gap where it falls; state changes per account; Error
notifications tied to the operation they answer; findings by event."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from auditor.store import coverage_queries
from auditor.store.timeline import TimelineEntry


@dataclass
class Row:
    """One entry of the drawn timeline: an event, or a coverage gap (``gap`` set)."""

    at: datetime
    entry: TimelineEntry | None = None
    gap: coverage_queries.Gap | None = None
    previous_state: str | None = None
    operation_id: int | None = None  # for an Error: the event of the same referenceId
    findings: list[dict[str, Any]] = field(default_factory=list)


def is_error(entry: TimelineEntry) -> bool:
    return entry.error_code is not None or (entry.notification_type or "").lower() == "error"


def rows(
    entries: list[TimelineEntry],
    gaps: list[coverage_queries.Gap],
    *,
    window_start: datetime,
    window_end: datetime | None,
    findings: dict[int, list[dict[str, Any]]],
) -> list[Row]:
    """Events in id order, with each gap that starts inside [window_start, window_end) placed
    before the first event received after its start (None: the page is the last one)."""
    drawn: list[Row] = []
    last_state: dict[str, str] = {}
    operations: dict[str, int] = {}
    for entry in entries:
        row = Row(entry.received_at, entry=entry, findings=findings.get(entry.event_id, []))
        if entry.state is not None:
            row.previous_state = last_state.get(entry.account)
            last_state[entry.account] = entry.state
        if entry.reference_id is not None:
            if is_error(entry):
                row.operation_id = operations.get(entry.reference_id)
            else:
                operations.setdefault(entry.reference_id, entry.event_id)
        drawn.append(row)
    shown = sorted(
        (
            g
            for g in gaps
            if g.start >= window_start and (window_end is None or g.start < window_end)
        ),
        key=lambda g: (g.start, g.account),
    )
    merged: list[Row] = []
    pending = list(shown)
    for row in drawn:
        while pending and pending[0].start < row.at:
            gap = pending.pop(0)
            merged.append(Row(gap.start, gap=gap))
        merged.append(row)
    merged.extend(Row(g.start, gap=g) for g in pending)
    return merged
