"""`auditor demo`: the whole system on one machine, nothing installed by hand.

An embedded PostgreSQL under .demo/, the migrations, the bundled sample imported, then a
simulated GWS with live agents, the ingestion worker recording them, and the query API with
an admin token, until Ctrl-C. Child processes log to .demo/logs/.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import click
import psycopg
from rich.console import Console
from sqlalchemy.engine import URL

from auditor import tokens
from auditor.config import Settings, libpq_conninfo, parse_database_url
from auditor.db import connect, sa_connection
from auditor.errors import UserError
from auditor.evidence import keys
from auditor.importer import run_import
from auditor.pgserver import EmbeddedPostgres
from auditor.ports import free_ports
from auditor.render import print_timeline
from auditor.roles import GROUPS, grant_login
from auditor.store import schema, timeline

DEMO_DATABASE = "auditor"
AGENTS = 8
MEDIA_TYPES = ("email", "workitem")
GWS_PASSWORD = "secret"  # noqa: S105 (the simulator's demo agents' password)
DEMO_LOGINS = {
    "writer": "demo_worker",
    "api": "demo_api",
    "reader": "demo_reader",
    "bi": "demo_bi",
    "verifier": "demo_verifier",
}


def sample_path() -> Path:
    return Path(str(resources.files("auditor") / "data" / "sample.ndjson"))


def _ensure_database(server: EmbeddedPostgres) -> Settings:
    admin = parse_database_url(server.url("postgres"))
    with psycopg.connect(libpq_conninfo(admin), autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (DEMO_DATABASE,)
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DEMO_DATABASE}"')
    return Settings(database_url=parse_database_url(server.url(DEMO_DATABASE)))


def _worker_config(path: Path, gws_url: str, metrics_port: int) -> None:
    accounts = "\n".join(
        f'[[accounts]]\nname = "agent{n:03d}"\npassword_env = "GWS_PASSWORD"\n'
        for n in range(1, AGENTS + 1)
    )
    media = ", ".join(f'"{m}"' for m in MEDIA_TYPES)
    path.write_text(
        f'[gws]\nbase_url = "{gws_url}"\nmedia_types = [{media}]\n\n'
        f'[worker]\nspool = "spool.sqlite3"\nmetrics_port = {metrics_port}\n\n{accounts}'
    )


def _service_logins(owner: Settings) -> dict[str, URL]:
    """One login per service, each in its own group role, with a new password every run.

    The owner (the cluster's superuser here) runs the migrations and creates tokens; the
    worker, the imports, the API and the printed SQL examples each use their own login."""
    passwords = {role: secrets.token_urlsafe(24) for role in DEMO_LOGINS}
    with connect(owner.database_url) as conn:
        for role, user in DEMO_LOGINS.items():
            grant_login(conn, role, user, passwords[role])
        conn.commit()
    return {
        role: owner.database_url.set(username=user, password=passwords[role])
        for role, user in DEMO_LOGINS.items()
    }


class _Children:
    """Child processes started in order, stopped in reverse (SIGTERM, then SIGKILL)."""

    def __init__(self, logs: Path, env: dict[str, str]) -> None:
        self.logs = logs
        self.env = env
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        command = [str(Path(sys.executable).with_name("auditor")), *args]
        with (self.logs / f"{name}.log").open("ab") as log:  # the child keeps its own copy
            proc = subprocess.Popen(
                command, env={**self.env, **(env or {})}, stdout=log, stderr=log
            )
        self.procs.append((name, proc))

    def check(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                log = self.logs / f"{name}.log"
                # The log's last line names the cause (a port taken, a traceback's last line):
                # where the demo runs unattended (CI) the log itself may be gone afterwards.
                raise UserError(
                    f"demo: the {name} stopped (exit {proc.returncode}): {_last_line(log)}; "
                    f"see {log}"
                )

    def stop(self, console: Console) -> None:
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                console.print(f"stopping the {name} …")
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _last_line(path: Path, limit: int = 300) -> str:
    try:
        with path.open("rb") as log:
            log.seek(max(0, log.seek(0, 2) - 4096))
            lines = log.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return lines[-1][:limit] if lines else "(empty log)"


def _wait_http(url: str, children: _Children, seconds: float = 120) -> None:
    # A deadline for a service that is broken, not the expected wait: on a loaded machine
    # (a test run beside other work) the API took more than 30 s to import and boot.
    deadline = time.monotonic() + seconds
    while True:
        children.check()
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 (loopback URL we built)
                return
        except OSError:
            if time.monotonic() > deadline:
                raise UserError(f"demo: {url} did not answer within {seconds:.0f} s") from None
            time.sleep(0.2)


def _live_interaction(url: URL) -> str | None:
    with connect(url) as conn:
        row = conn.execute(
            "SELECT interaction_id FROM interactions WHERE last_seen_at > now() - interval '1 hour'"
            " ORDER BY event_count DESC, last_seen_at DESC LIMIT 1"
        ).fetchone()
    return str(row[0]) if row else None


@contextlib.contextmanager
def _embedded_postgres(data_dir: Path, console: Console) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(data_dir / "pg")
    console.print(f"starting embedded PostgreSQL in {server.data_dir} …")
    server.start()
    try:
        yield server
    finally:
        server.stop()
        console.print(f"PostgreSQL stopped; data kept in {data_dir}/ (make demo reuses it)")


@click.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".demo"),
    show_default=True,
)
@click.option(
    "--seconds",
    type=click.IntRange(1),
    help="stop by itself after this many seconds (default: run until Ctrl-C)",
)
def demo(data_dir: Path, seconds: int | None) -> None:
    """PostgreSQL, sample data, a simulated GWS, the worker and the API, on this machine."""
    console = Console()
    console.rule("auditor demo")
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir = data_dir.resolve()
    logs = data_dir / "logs"
    logs.mkdir(exist_ok=True)
    with _embedded_postgres(data_dir, console) as server:
        settings = _ensure_database(server)
        with sa_connection(settings.database_url) as connection:
            schema.upgrade(connection)
            schema.ensure_partitions_ahead(connection)
        logins = _service_logins(settings)
        reader_file, bi_file = data_dir / "reader.url", data_dir / "bi.url"
        verifier_file = data_dir / "verifier.url"
        for role, path in (("reader", reader_file), ("bi", bi_file), ("verifier", verifier_file)):
            path.touch(mode=0o600)
            path.chmod(0o600)
            path.write_text(libpq_conninfo(logins[role]) + "\n")
        console.print(
            f"database ready: {server.url(DEMO_DATABASE)} (owner: migrations, tokens); logins "
            + ", ".join(f"{u} ({GROUPS[r]})" for r, u in DEMO_LOGINS.items())
        )
        total = run_import(
            Settings(database_url=logins["writer"]),
            sample_path(),
            account="import",
            received_at=None,
            batch_size=500,
            console=console,
        )
        console.print(
            f"bundled sample: {total.stored} new events, {total.duplicates} already stored"
        )

        sim_port, api_port, metrics_port = free_ports(3)
        gws_url = f"http://127.0.0.1:{sim_port}"
        api_url = f"http://127.0.0.1:{api_port}"
        worker_metrics = f"http://127.0.0.1:{metrics_port}/metrics"
        _worker_config(data_dir / "worker.toml", gws_url, metrics_port)
        env = {
            **os.environ,
            "AUDITOR_API_SECRET": secrets.token_urlsafe(48),
            "GWS_PASSWORD": GWS_PASSWORD,
            "AUDITOR_SIM_PASSWORD": GWS_PASSWORD,
        }
        env.pop("AUDITOR_DATABASE_URL", None)
        children = _Children(logs, env)
        try:
            children.start(
                "simulator",
                "simulate",
                "--port",
                str(sim_port),
                "--agents",
                str(AGENTS),
                "--rate",
                "4",
                "--media-types",
                ",".join(MEDIA_TYPES),
                "--ground-truth",
                str(data_dir / "ground-truth.ndjson"),
            )
            _wait_http(f"{gws_url}/api/v2/diagnostics/version", children)
            children.start(
                "worker",
                "ingest",
                "--config",
                str(data_dir / "worker.toml"),
                env={
                    "AUDITOR_DATABASE_URL": libpq_conninfo(logins["writer"]),
                    # the worker signs a checkpoint of the record every minute (docs/evidence.md)
                    "AUDITOR_SIGNING_KEY_FILE": str(_signing_key(data_dir)),
                    "AUDITOR_CHECKPOINT_INTERVAL": "60",
                },
            )
            children.start(
                "api",
                "serve",
                "--port",
                str(api_port),
                "--workers",
                "2",
                env={
                    "AUDITOR_DATABASE_URL": libpq_conninfo(logins["api"]),
                    # the overview page shows the worker's status from its metrics
                    "AUDITOR_API_WORKER_METRICS_URL": worker_metrics,
                },
            )
            _wait_http(f"{api_url}/healthz", children)
            with connect(settings.database_url) as conn:
                name = f"demo-{datetime.now(UTC):%Y%m%d-%H%M%S}"
                token = tokens.create(conn, name, "admin")
                reader_token = tokens.create(conn, f"{name}-reader", "reader")
                conn.commit()
            console.print(
                f"\nsimulated GWS  {gws_url}  ({AGENTS} agents, ~4 notifications/s)"
                f"\nworker         recording every agent; metrics {worker_metrics}"
                f"\nquery API      {api_url}/docs   (admin token {name!r} below)"
                f"\npages          {api_url}/ui/   (reader token {name + '-reader'!r}: open this"
                " login link in a browser, then Sign in)",
                soft_wrap=True,
                highlight=False,
                markup=False,
            )
            _copyable(console, f"{api_url}/ui/login?token={reader_token}")
            console.print("\nCommands to copy (one per line):", highlight=False, markup=False)
            _copyable(
                console,
                f"export TOKEN={token}",
                f'export AUDITOR_DATABASE_URL="$(cat {reader_file})"   # a read-only login',
                f"# BI tools: connect with the URL in {bi_file} (schema bi, docs/bi.md)",
                ".venv/bin/auditor checkpoint latest --json   # a signed checkpoint to keep",
                f'AUDITOR_DATABASE_URL="$(cat {verifier_file})" .venv/bin/auditor verify',
                f'curl -H "Authorization: Bearer $TOKEN" "{api_url}/api/v1/events?limit=5"',
                f'curl -H "Authorization: Bearer $TOKEN" "{api_url}/api/v1/access-log?limit=5"',
            )
            deadline = time.monotonic() + 8
            interaction = None
            while time.monotonic() < deadline and interaction is None:
                children.check()
                time.sleep(1)
                interaction = _live_interaction(logins["reader"])
            if interaction is not None:
                with connect(logins["reader"]) as conn:
                    page = timeline.timeline_page(conn, interaction)
                if page is not None:
                    print_timeline(console, interaction, page.entries)
                _copyable(
                    console,
                    f'curl -H "Authorization: Bearer $TOKEN"'
                    f' "{api_url}/api/v1/interactions/{interaction}/timeline"',
                    f".venv/bin/auditor timeline {interaction}",
                )
                console.print("\nThis timeline in the browser (live):", markup=False)
                _copyable(console, f"{api_url}/ui/interactions/{interaction}")
            console.print(
                "\nRunning; press Ctrl-C to stop."
                if seconds is None
                else f"\nRunning for {seconds} s."
            )
            end = None if seconds is None else time.monotonic() + seconds
            while end is None or time.monotonic() < end:
                children.check()
                time.sleep(0.5)
        except KeyboardInterrupt:
            console.print("\nCtrl-C")
        finally:
            children.stop(console)


def _copyable(console: Console, *lines: str) -> None:
    """Lines to copy into a shell or a browser: each whole on its own line, never wrapped or
    indented by the console however narrow the terminal (the terminal may fold it visually;
    copying still gives one line)."""
    for line in lines:
        console.print(line, soft_wrap=True, highlight=False, markup=False)


def _signing_key(data_dir: Path) -> Path:
    """The demo's checkpoint signing key, made once and kept with the demo's data."""
    path = data_dir / "signing-key.pem"
    if not path.exists():
        keys.create(path)
    return path
