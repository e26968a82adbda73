"""The `auditor` command."""

from __future__ import annotations

import sys

import click

from auditor.errors import UserError
from auditor.simulator.cli import simulate


@click.group()
@click.version_option(package_name="auditor")
def cli() -> None:
    """auditor: the audit and history store for GWS Open Media notifications."""


cli.add_command(simulate)


def main() -> None:
    """Entry point: user errors are one line on stderr and exit status 2, never a traceback."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except UserError as exc:
        click.echo(f"auditor: {exc}", err=True)
        sys.exit(2)
