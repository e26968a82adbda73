"""The `auditor` command."""

from __future__ import annotations

import importlib
import os
import sys
from datetime import datetime
from pathlib import Path

import click
import psycopg
from rich.console import Console

from auditor.config import DATABASE_URL, Settings
from auditor.db import connect, sa_connection
from auditor.errors import UserError
from auditor.importer import run_import
from auditor.roles import GROUPS, grant_login


def _settings() -> Settings:
    return Settings.from_env(os.environ)


# Subcommands living in their own modules, imported only when used: `auditor token list` must
# not import the CometD client, the simulator, the signing library or pandas' neighbours.
_LAZY = {
    "bi": "auditor.bi.cli:bi",
    "checkpoint": "auditor.cli_proofs:checkpoint_group",
    "demo": "auditor.demo:demo",
    "evidence": "auditor.cli_proofs:evidence_group",
    "hold": "auditor.retention.cli:hold_group",
    "ingest": "auditor.ingest.cli:ingest",
    "keys": "auditor.cli_proofs:keys_group",
    "projection": "auditor.cli_projection:projection_group",
    "retention": "auditor.retention.cli:retention_group",
    "seal": "auditor.cli_evidence:seal_command",
    "serve": "auditor.cli_api:serve",
    "simulate": "auditor.simulator.cli:simulate",
    "timeline": "auditor.cli_timeline:timeline_command",
    "token": "auditor.cli_api:token",
    "verify": "auditor.cli_evidence:verify_command",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_LAZY})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _LAZY:
            module, attribute = _LAZY[cmd_name].split(":")
            command: click.Command = getattr(importlib.import_module(module), attribute)
            return command
        return super().get_command(ctx, cmd_name)


@click.group(cls=_LazyGroup)
@click.version_option(package_name="auditor")
def cli() -> None:
    """auditor: the audit and history store for GWS Open Media notifications.

    Commands that use the database read AUDITOR_DATABASE_URL.
    """


@cli.group()
def db() -> None:
    """Schema: migrations, drift check."""


@db.command("upgrade")
@click.option("--partitions-ahead", default=3, show_default=True, type=click.IntRange(0, 60))
def db_upgrade(partitions_ahead: int) -> None:
    """Apply the migrations up to head and create the next months' event partitions."""
    from auditor.store import schema  # alembic: only the db commands need it

    settings = _settings()
    with sa_connection(settings.database_url) as connection:
        schema.upgrade(connection)
        created = schema.ensure_partitions_ahead(connection, partitions_ahead)
        report = schema.check(connection)
    click.echo(f"database at {', '.join(report.current)}")
    if created:
        click.echo(f"partitions created: {', '.join(created)}")


@db.command("check")
def db_check() -> None:
    """One migration head, the database at it, no drift between models and migrations."""
    from auditor.store import schema

    with sa_connection(_settings().database_url) as connection:
        report = schema.check(connection)
    click.echo(f"heads: {', '.join(report.heads) or '-'}")
    click.echo(f"database: {', '.join(report.current) or 'not migrated'}")
    for line in report.drift:
        click.echo(f"drift: {line}")
    if not report.ok:
        click.echo("schema check failed", err=True)
        sys.exit(1)
    click.echo("schema ok")


def _read_password(password_env: str | None, password_file: Path | None) -> str:
    if password_env is not None and password_file is not None:
        raise UserError("--password-env and --password-file: give one, not both")
    if password_env is not None:
        value = os.environ.get(password_env)
        if not value:
            raise UserError(f"--password-env {password_env}: that variable is not set or empty")
        return value
    if password_file is not None:
        try:
            text = password_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"--password-file {password_file}: {exc.__class__.__name__}") from None
        # One trailing newline is the file's, not the password's (echo pw > file).
        return text[:-1] if text.endswith("\n") else text
    if not sys.stdin.isatty():
        raise UserError(
            "no terminal to ask for the password; give --password-env or --password-file"
        )
    return str(click.prompt("password", hide_input=True, confirmation_prompt=True))


@db.command("grant-login")
@click.argument("role", type=click.Choice(sorted(GROUPS)))
@click.option("--user", "user", required=True, help="the login to create or update")
@click.option("--password-env", metavar="VAR", help="read the password from this variable")
@click.option(
    "--password-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="read the password from this file (one trailing newline is dropped)",
)
@click.option(
    "--connection-limit",
    type=click.IntRange(1, 10_000),
    help="connections the login may hold at once (default: writer 32, api 64, reader 16)",
)
def db_grant_login(
    role: str,
    user: str,
    password_env: str | None,
    password_file: Path | None,
    connection_limit: int | None,
) -> None:
    """Create or update the login USER as a member of exactly one group role.

    ROLE is writer (the worker, imports), api (the query API) or reader (BI, SQL). Run it as
    the owner that ran `auditor db upgrade`. Without --password-env or --password-file the
    password is asked for on the terminal; it is never shown, logged or sent to the server
    (only its SCRAM verifier is).
    """
    password = _read_password(password_env, password_file)
    with connect(_settings().database_url) as conn:
        try:
            login = grant_login(conn, role, user, password, connection_limit=connection_limit)
        except psycopg.errors.InsufficientPrivilege as exc:
            raise UserError(
                f"not allowed to manage roles ({exc.diag.message_primary}); "
                "run this as the owner that ran `auditor db upgrade`"
            ) from None
        conn.commit()
    done = "created" if login.created else "updated"
    click.echo(f"login {login.user!r} {done}: member of {login.group} only")
    if login.revoked_from:
        click.echo(f"removed from {', '.join(login.revoked_from)}")


@cli.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--account", default="import", show_default=True, help="account for raw lines")
@click.option(
    "--received-at",
    type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S%z"]),
    help="time stamped on raw lines (default: the file's modification time)",
)
@click.option("--batch-size", default=2000, show_default=True, type=click.IntRange(1, 100_000))
def import_command(file: Path, account: str, received_at: datetime | None, batch_size: int) -> None:
    """Import notifications from FILE (NDJSON, or a JSON array).

    Malformed lines are quarantined and counted; they never abort the import.
    """
    settings = _settings()
    console = Console(stderr=True)
    total = run_import(
        settings,
        file,
        account=account,
        received_at=received_at,
        batch_size=batch_size,
        console=console,
    )
    click.echo(
        f"imported {total.stored}, duplicates {total.duplicates}, "
        f"quarantined {total.quarantined} (of {total.received} read)"
    )


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
    except psycopg.errors.InsufficientPrivilege as exc:
        # A login without a right this command needs (docs/security.md says which role runs
        # what): a setting to change, not a crash.
        reason = (exc.diag.message_primary or str(exc)).strip()
        click.echo(
            f"auditor: {reason}: the login in {DATABASE_URL} may not do this"
            " (docs/security.md: which role runs which command)",
            err=True,
        )
        sys.exit(2)
    except psycopg.OperationalError as exc:
        # The server went away mid-command (shut down, restarted, the connection killed):
        # not the user's doing, and nothing a traceback would help with. Each command's
        # transactions are whole, so rerunning it is safe.
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        click.echo(f"auditor: the database connection was lost: {reason}", err=True)
        sys.exit(1)
