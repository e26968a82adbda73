"""`auditor serve` (the query API under gunicorn) and `auditor token` (API bearer tokens).

auditor never imports web/ or flask: serve replaces this process with gunicorn, which loads
web.wsgi:app in each worker."""

from __future__ import annotations

import os
import sys
import tempfile

import click

from auditor import tokens
from auditor.config import Settings
from auditor.db import connect
from auditor.roles import refuse_privileged


def _settings() -> Settings:
    return Settings.from_env(os.environ)


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--threads",
    default=8,
    show_default=True,
    type=click.IntRange(1, 256),
    help="requests each worker serves at once (slow clients hold none; see docs/api.md)",
)
@click.option(
    "--timeout",
    default=120,
    show_default=True,
    type=click.IntRange(5, 86_400),
    help="seconds a worker may be unresponsive before gunicorn restarts it",
)
@click.option(
    "--allow-owner",
    is_flag=True,
    help="development only: run even as a superuser or the tables' owner",
)
def serve(
    host: str, port: int, workers: int, threads: int, timeout: int, allow_owner: bool
) -> None:
    """Serve the query API with gunicorn (reads AUDITOR_DATABASE_URL, AUDITOR_API_SECRET).

    The database user must be a login in auditor_api (`auditor db grant-login api`), not a
    superuser or the owner of the tables.
    """
    settings = _settings()
    settings.api.require_secret()
    # Check the database now: a wrong URL is one line here, not a crash in every worker.
    with connect(settings.database_url) as conn:
        if not allow_owner:
            refuse_privileged(conn, "api", "API")
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # /metrics adds up all workers through this directory (prometheus-client multiprocess)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="auditor-metrics-")
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "--workers",
        str(workers),
        # gthread, hardened against slow and idle clients (web/server.py, docs/api.md)
        "--worker-class",
        "web.server.HardenedWorker",
        "--threads",
        str(threads),
        "--timeout",
        str(timeout),
        "--access-logfile",
        "-",
        "--logger-class",
        "web.server.RedactingLogger",  # no credentials in gunicorn's logs
        "--config",
        "python:web.gunicorn_hooks",  # /metrics on AUDITOR_API_METRICS_ADDRESS, if set
        # gunicorn's control socket has one default path per user: two servers would collide
        "--no-control-socket",
        # The app is imported once, in the master (~2 s of CPU), and each worker (first start
        # or a restart after a timeout) is a fork of it instead of a fresh import. Safe: the
        # app connects on first use (web/db.py), and prometheus-client resets its multiprocess
        # values in a forked child.
        "--preload",
        "web.wsgi:app",
    ]
    click.echo(
        f"serving the query API on http://{host}:{port} with {workers} worker(s)"
        f" x {threads} thread(s)",
        err=True,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)  # noqa: S606 (a fixed argv, no shell involved)


@click.group("token")
def token() -> None:
    """API bearer tokens: create (the secret is shown once), list, revoke."""


@token.command("create")
@click.option("--name", required=True, help="who or what holds the token")
@click.option("--role", required=True, type=click.Choice(tokens.ROLES))
def token_create(name: str, role: str) -> None:
    """Create a token; its secret is printed once and stored only as a sha256 hash."""
    with connect(_settings().database_url) as conn:
        secret = tokens.create(conn, name, role)
        conn.commit()
    click.echo(f"created token {name!r} ({role}); it is shown only now:", err=True)
    click.echo(secret)


@token.command("list")
def token_list() -> None:
    """List tokens (never their secrets)."""
    with connect(_settings().database_url) as conn:
        found = tokens.list_tokens(conn)
    if not found:
        click.echo("no tokens")
    for t in found:
        status = f"revoked {t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "active"
        used = f"last used {t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never used"
        click.echo(f"{t.name}\t{t.role}\tcreated {t.created_at:%Y-%m-%d %H:%M}\t{status}\t{used}")


@token.command("revoke")
@click.argument("name")
def token_revoke(name: str) -> None:
    """Revoke the token NAME at once."""
    with connect(_settings().database_url) as conn:
        done = tokens.revoke(conn, name)
        conn.commit()
    if not done:
        raise click.ClickException(f"no active token named {name!r}")
    click.echo(f"revoked {name!r}")
