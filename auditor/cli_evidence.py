"""`auditor seal` and `auditor verify`: the hash-chained record from the command line."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click
import psycopg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from auditor.config import Settings
from auditor.db import connect
from auditor.errors import ConfigError, UserError


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    )


@click.command("seal")
@click.option(
    "--backfill",
    is_flag=True,
    help="also seal events and quarantine entries stored before the record existed",
)
def seal_command(backfill: bool) -> None:
    """Give unsealed rows their place in the record (the worker does this every 30 s).

    Closed coverage intervals and access-log rows are sealed in batches shortly after they
    are written; `--backfill` also seals the rows stored before migration 2026_12_01_evidence,
    oldest first, in one transaction.
    """
    from auditor.store import sealer

    sources = sealer.BACKFILL_SOURCES if backfill else sealer.PERIODIC_SOURCES
    console = Console(stderr=True)
    with connect(Settings.from_env(os.environ).database_url) as conn, conn.transaction():
        counts = sealer.unsealed_counts(conn, sources)
        with _progress(console) as bar:
            task = bar.add_task("seal", total=sum(counts.values()))
            result = sealer.seal(conn, sources, lambda _s, n: bar.advance(task, n))
    sealed = ", ".join(f"{n} {source}" for source, n in result.sealed.items())
    click.echo(f"sealed {result.total} rows ({sealed}); the record ends at {result.head}")


def _checkpoint_problems(
    conn: psycopg.Connection[Any], against: Path, public_key: Path | None
) -> tuple[int, list[str]]:
    """The kept checkpoint's tree size, and what does not match it (signature, Merkle root,
    chain head): a consistent rewrite of the record that verify alone cannot see."""
    from auditor.cli_proofs import load_public_option
    from auditor.evidence.checkpoints import verify_against

    try:
        kept = json.loads(against.read_text(encoding="utf-8"))
        size = int(kept["tree_size"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError("--against", f"not a checkpoint JSON file ({exc})") from None
    public = None if public_key is None else load_public_option(public_key)
    return size, verify_against(conn, kept, public)


@click.command("verify")
@click.option("--from", "start", type=click.IntRange(min=1), help="first position to check")
@click.option("--to", "end", type=click.IntRange(min=1), help="last position to check")
@click.option(
    "--against",
    type=click.Path(path_type=Path, dir_okay=False),
    help="a checkpoint kept outside the database (auditor checkpoint latest --json)",
)
@click.option(
    "--public-key",
    type=click.Path(path_type=Path, dir_okay=False),
    help="the public key that must have signed the --against checkpoint",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1, max=64),
    default=1,
    show_default=True,
    help="processes that re-hash the rows (each with its own connection, in one snapshot);"
    " 1: this process, reading the next rows on a second connection while it hashes",
)
def verify_command(
    start: int | None,
    end: int | None,
    against: Path | None,
    public_key: Path | None,
    jobs: int,
) -> None:
    """Recompute every leaf from the stored rows and the hash chain; exit 1 if broken.

    Prints the first broken position and what is wrong with it (altered, missing,
    reordered, inserted), and how many rows are not sealed yet. With --against, also proves
    the record up to that checkpoint is the one it signed (a rewrite of the whole tail, which
    the chain alone cannot show, fails here).
    """
    from auditor.config import libpq_conninfo
    from auditor.store import integrity

    console = Console(stderr=True)
    url = Settings.from_env(os.environ).database_url
    with connect(url) as conn:
        kept_problems: list[str] = []
        if against is not None:
            size, kept_problems = _checkpoint_problems(conn, against, public_key)
            for line in kept_problems:
                click.echo(f"checkpoint {against}: {line}")
            if not kept_problems:
                click.echo(f"checkpoint {against}: positions 1..{size} are the ones it signed")
        try:
            first, stop = integrity.resolve_range(conn, start, end)
        except integrity.BadRange as exc:
            raise UserError(f"--from/--to: {exc}") from None
        began = time.perf_counter()
        with _progress(console) as bar:
            task = bar.add_task("verify", total=stop - first + 1)
            report = integrity.verify(
                conn,
                start,
                end,
                lambda n: bar.advance(task, n),
                workers=jobs,
                conninfo=libpq_conninfo(url),
            )
        seconds = time.perf_counter() - began
        conn.rollback()
    rate = f", {report.rows / seconds:,.0f} rows/s" if seconds > 0 and report.rows else ""
    # rows: the stored rows recomputed; a record format-2 position holds a batch of events
    click.echo(
        f"checked positions {report.start}..{report.end}: {report.rows} rows"
        f" ({report.checked} record rows){rate}"
    )
    for source, count in report.unsealed.items():
        click.echo(f"not sealed yet: {count} {source} rows")
    for purge in report.purged:
        click.echo(f"purged by retention: {purge}")
    if report.purged_positions:
        click.echo(
            f"{report.purged_positions} positions of purged events: chain checked, rows gone"
            " (each named by a purge receipt in the record)"
        )
    if report.problem is not None:
        problem = report.problem
        click.echo(f"BROKEN at position {problem.position}: {problem.kind}: {problem.detail}")
        sys.exit(1)
    if kept_problems:
        click.echo("BROKEN: the record differs from the kept checkpoint")
        sys.exit(1)
    click.echo("record intact")
