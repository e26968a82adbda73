"""`auditor bi ...`: the BI views' documentation."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from auditor.bi.docs import render
from auditor.config import Settings
from auditor.db import connect
from auditor.errors import UserError

DEFAULT_DOCS = Path("docs/bi.md")


@click.group()
def bi() -> None:
    """BI views (schema bi): documentation from the database catalog."""


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
    with connect(settings.database_url) as conn:
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
