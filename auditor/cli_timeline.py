"""`auditor timeline`: one interaction's timeline a page at a time, from the same store function
the API uses (auditor.store.timeline), so both show the same events, diffs and gaps."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime

import click
from rich.console import Console

from auditor.config import Settings
from auditor.db import connect
from auditor.errors import UserError
from auditor.render import print_gaps, print_timeline
from auditor.store import timeline

AS_OF_FORMAT = "an ISO 8601 time with an offset, e.g. 2026-11-02T09:00:00+00:00"


def parse_as_of(text: str, now: datetime | None = None) -> datetime:
    """--as-of: a time with an offset, not in the future (a UserError naming the option)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f"--as-of {text!r}: expected {AS_OF_FORMAT}") from None
    if value.tzinfo is None:
        raise UserError(f"--as-of {text!r}: has no offset; expected {AS_OF_FORMAT}")
    if value > (now or datetime.now(UTC)):
        raise UserError(f"--as-of {text!r}: is in the future; nothing is known about it yet")
    return value


def _more(console: Console, interaction_id: str, after: int, interactive: bool) -> bool:
    """Ask whether to load the next page (a terminal), else say how to get it."""
    if not interactive:
        console.print(f"more: auditor timeline {interaction_id} --after {after} (or --all)")
        return False
    answer = click.prompt(
        "more? [Enter: next page, q: stop]", default="", show_default=False, err=True
    )
    return answer.strip().lower() not in ("q", "quit", "n", "no")


@click.command("timeline")
@click.argument("interaction_id")
@click.option(
    "--limit",
    type=click.IntRange(1, timeline.MAX_PAGE),
    default=timeline.DEFAULT_PAGE,
    show_default=True,
    help="events per page",
)
@click.option("--after", type=click.IntRange(0), help="start after this event id")
@click.option("--all", "every", is_flag=True, help="print every page without asking")
@click.option(
    "--as-of", "as_of_text", metavar="TIME", help="as known at TIME (events stored by then)"
)
def timeline_command(
    interaction_id: str, limit: int, after: int | None, every: bool, as_of_text: str | None
) -> None:
    """Print the timeline of one interaction across all agents' sessions, a page at a time
    (on a terminal, asks before loading the next; --all prints them all), with user-data
    changes and the coverage gaps of the accounts involved."""
    as_of = parse_as_of(as_of_text) if as_of_text is not None else None
    console = Console()
    interactive = not every and sys.stdin.isatty() and sys.stdout.isatty()
    number = 1
    with connect(Settings.from_env(os.environ).database_url) as conn:
        for page in timeline.timeline_pages(
            conn, interaction_id, limit=limit, as_of=as_of, after=after
        ):
            if number == 1:
                if not page.entries:
                    break
                if as_of is not None:
                    console.print(f"as known at {as_of.astimezone(UTC).isoformat()}")
                print_gaps(console, page.gaps)
            print_timeline(console, interaction_id, page.entries, first_number=number)
            number += len(page.entries)
            conn.rollback()  # no transaction held open while a person reads
            more = page.next_after
            if (
                more is not None
                and not every
                and not _more(console, interaction_id, more, interactive)
            ):
                break
    if number == 1:
        known = "" if as_of is None else f" stored by {as_of_text}"
        raise UserError(f"no events{known} for interaction {interaction_id!r}")
