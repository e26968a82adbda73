"""Human-readable terminal output (rich tables) for the CLI."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table

from auditor.store.queries import TimelineEntry, UserDataDiff

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


def timeline_table(interaction_id: str, entries: list[TimelineEntry]) -> Table:
    table = Table(title=f"Timeline of interaction {interaction_id}", title_justify="left")
    for name in ("#", "received at (UTC)", "account", "notification", "state", "ref", "userData"):
        table.add_column(name, overflow="fold")
    for n, entry in enumerate(entries, start=1):
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


def print_timeline(console: Console, interaction_id: str, entries: list[TimelineEntry]) -> None:
    console.print(timeline_table(interaction_id, entries))
