"""`auditor projection check` and `auditor projection rebuild`: the interactions projection
recomputed from the events (auditor.store.projection_rebuild)."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import click
import psycopg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from auditor.config import Settings
from auditor.db import connect
from auditor.store import projection_rebuild

_SHOWN = 50  # differences listed one per line; the rest are counted


def _bar(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def _run(rebuild: bool, chunk: int, by_id: bool, jobs: int) -> projection_rebuild.Report:
    console = Console(stderr=True)
    url = Settings.from_env(os.environ).database_url

    def another() -> psycopg.Connection[Any]:
        return connect(url, autocommit=False)

    with connect(url, autocommit=False) as conn, _bar(console) as bar:
        # The bar counts events; the total is known once the partitions are counted.
        task = bar.add_task("rebuild" if rebuild else "check", total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        how = {"by_partition": not by_id, "jobs": jobs, "connect": another}
        if rebuild:
            return projection_rebuild.rebuild(conn, advance, chunk, **how)  # type: ignore[arg-type]
        report = projection_rebuild.check(conn, advance, chunk, **how)  # type: ignore[arg-type]
        conn.rollback()
        return report


def _print(report: projection_rebuild.Report, seconds: float) -> None:
    for difference in report.differences[:_SHOWN]:
        click.echo(difference.describe())
    if len(report.differences) > _SHOWN:
        click.echo(f"... and {len(report.differences) - _SHOWN} more")
    rate = report.events / seconds if seconds > 0 else 0.0
    carried = (
        f", {report.baseline} of them with events in months retention dropped (their share"
        " kept in projection_baseline)"
        if report.baseline
        else ""
    )
    click.echo(
        f"{report.events} events up to id {report.built_upto} give {report.interactions}"
        f" interactions{carried} ({rate:,.0f} events/s); {len(report.differences)} differences"
        " from the live projection"
    )


_CHUNK = click.option(
    "--chunk",
    default=projection_rebuild.DEFAULT_CHUNK,
    show_default=True,
    type=click.IntRange(1_000, 100_000_000),
    help="events folded per statement (about)",
)
_BY_ID = click.option(
    "--by-id",
    is_flag=True,
    help="fold event-id ranges over the whole table instead of partition by partition"
    " (faster only when an interaction's events are spread over many months' partitions;"
    " docs/scale.md)",
)
_JOBS = click.option(
    "--jobs",
    default=projection_rebuild.DEFAULT_JOBS,
    show_default=True,
    type=click.IntRange(1, 64),
    help="database sessions folding at once, in one snapshot (one core each)",
)


@click.group("projection")
def projection_group() -> None:
    """The interactions projection: compare with, or rebuild from, the stored events."""


@projection_group.command("check")
@_CHUNK
@_BY_ID
@_JOBS
def check_command(chunk: int, by_id: bool, jobs: int) -> None:
    """Recompute the projection from the events into a scratch table and list every
    difference from the live one; exit 1 if there is any. Writes nothing: any login that
    reads events and interactions (reader, api, writer) may run it."""
    began = time.perf_counter()
    report = _run(False, chunk, by_id, jobs)
    _print(report, time.perf_counter() - began)
    if report.differences:
        sys.exit(1)


@projection_group.command("rebuild")
@_CHUNK
@_BY_ID
@_JOBS
def rebuild_command(chunk: int, by_id: bool, jobs: int) -> None:
    """Recompute the projection beside the live one and correct every difference in one
    transaction; readers never wait, the writer only for that last transaction. Run it as
    the writer's login (docs/scale.md)."""
    began = time.perf_counter()
    report = _run(True, chunk, by_id, jobs)
    _print(report, time.perf_counter() - began)
    click.echo(f"corrected {report.fixed}, removed {report.removed}")
