"""`auditor bi ...`: the BI views' documentation."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import click
import psycopg

from auditor.bi import refresh
from auditor.bi.docs import render
from auditor.config import Settings
from auditor.db import connect
from auditor.errors import UserError

DEFAULT_DOCS = Path("docs/bi.md")


@click.group()
def bi() -> None:
    """BI views (schema bi): documentation from the catalog, summary refresh."""


@bi.command("docs")
@click.option(
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    default=DEFAULT_DOCS,
    show_default=True,
    help="file to write (- for stdout)",
)
@click.option("--check", is_flag=True, help="write nothing; exit 1 if the file is stale")
def docs_command(output: Path, check: bool) -> None:
    """Render docs/bi.md from the catalog (views, columns, types, comments) of the database
    AUDITOR_DATABASE_URL names, plus the finding rules and the sample queries."""
    settings = Settings.from_env(os.environ)
    # The catalog is the same on a hot standby: read there when one is configured.
    with connect(settings.read_database_url or settings.database_url) as conn:
        text = render(conn)
    if str(output) == "-":
        click.echo(text, nl=False)
        return
    if check:
        try:
            current = output.read_text(encoding="utf-8")
        except OSError as exc:
            raise UserError(f"cannot read {output}: {exc.strerror}") from None
        if current != text:
            click.echo(f"{output} is stale: run `auditor bi docs`", err=True)
            sys.exit(1)
        click.echo(f"{output} is up to date")
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write {output}: {exc.strerror}") from None
    click.echo(f"wrote {output}")


@bi.command("refresh")
@click.option(
    "--batch",
    default=refresh.DEFAULT_PACED_BATCH,
    show_default=True,
    type=click.IntRange(1, 1_000_000),
    help="events per transaction",
)
@click.option(
    "--follow",
    type=click.FloatRange(0.1, 3600),
    help="keep going: look for new events every this many seconds (until Ctrl-C)",
)
@click.option(
    "--duty",
    default=refresh.DEFAULT_DUTY,
    show_default=True,
    type=click.FloatRange(0, 1, min_open=True),
    help="share of the time to work while the writer stores events (1: never yield)",
)
def refresh_command(batch: int, follow: float | None, duty: float) -> None:
    """Bring the BI summaries up to the stored events (one transaction per batch; readers
    never wait). While the writer is storing events the refresh works only DUTY of the time;
    when it is idle, at full speed. Without it the views stay exact, only slower."""
    settings = Settings.from_env(os.environ)
    pacer = refresh.Pacer(duty)
    with connect(settings.database_url, autocommit=False) as conn:
        while True:
            t0 = time.perf_counter()
            total = _catch_up(conn, batch, pacer)
            if total or follow is None:
                rate = total / max(time.perf_counter() - t0, 1e-9)
                click.echo(f"refreshed {total} events ({rate:,.0f}/s)")
            if follow is None:
                return
            time.sleep(follow)


def _catch_up(conn: psycopg.Connection[Any], batch: int, pacer: refresh.Pacer) -> int:
    """Batches until none is left, each committed, paced while the writer is busy."""
    total = 0
    while True:
        before = refresh.writer_position(conn)
        started = time.monotonic()
        consumed = refresh.refresh_once(conn, batch)
        stored = refresh.writer_position(conn) - before
        conn.commit()
        if not consumed:
            return total
        total += consumed
        pause = pacer.pause(time.monotonic() - started, stored)
        if pause:
            time.sleep(pause)
