"""Human-readable terminal output (rich tables) for the CLI."""

from __future__ import annotations

import json
from datetime import UTC
from typing import Any

from rich.console import Console
from rich.table import Table

from auditor.store.coverage_queries import Gap
from auditor.store.timeline import TimelineEntry, UserDataDiff

_MAX_DIFF_LINES = 5


def _short(value: Any, width: int = 28) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


def describe_diff(diff: UserDataDiff | None) -> str:
    if diff is None:
        return ""
    if diff.empty:
        return "(unchanged)"
    parts = [f"+{k}={_short(v)}" for k, v in diff.added.items()]
    parts += [f"~{k}: {_short(c['from'])} → {_short(c['to'])}" for k, c in diff.changed.items()]
    parts += [f"-{k}" for k in diff.removed]
    if len(parts) > _MAX_DIFF_LINES:
        parts = [*parts[: _MAX_DIFF_LINES - 1], f"… {len(parts) - _MAX_DIFF_LINES + 1} more"]
    return "\n".join(parts)


def timeline_table(
    interaction_id: str, entries: list[TimelineEntry], *, first_number: int = 1
) -> Table:
    title = f"Timeline of interaction {interaction_id}"
    if first_number > 1:
        title += f" (continued from #{first_number})"
    table = Table(title=title, title_justify="left")
    for name in ("#", "received at (UTC)", "account", "notification", "state", "ref", "userData"):
        table.add_column(name, overflow="fold")
    for n, entry in enumerate(entries, start=first_number):
        what = entry.notification_type or entry.message_type or "?"
        if entry.kind != "notification":
            what = f"{entry.kind}: {what}"
        if entry.error_code or entry.error_message:
            what += f"\n{entry.error_code or ''} {entry.error_message or ''}".rstrip()
        table.add_row(
            str(n),
            entry.received_at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
            entry.account,
            what,
            entry.state or "",
            entry.reference_id or "",
            describe_diff(entry.user_data_diff),
        )
    return table


def print_timeline(
    console: Console, interaction_id: str, entries: list[TimelineEntry], *, first_number: int = 1
) -> None:
    console.print(timeline_table(interaction_id, entries, first_number=first_number))


def print_gaps(console: Console, gaps: list[Gap]) -> None:
    """The coverage gaps of the accounts involved, over the interaction's lifetime."""
    if not gaps:
        console.print("coverage: complete over the interaction's lifetime")
        return
    console.print("coverage gaps (events there may be missing):")
    for gap in gaps:
        start = gap.start.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        end = gap.end.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        console.print(f"  {gap.account}: {start} .. {end} UTC")
