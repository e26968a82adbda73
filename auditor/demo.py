"""`auditor demo`: everything on one machine, nothing installed by hand.

For now: an embedded PostgreSQL under .demo/, the migrations, the bundled sample
notifications imported, and one interaction's timeline printed.
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

import click
import psycopg
from rich.console import Console

from auditor.config import Settings, libpq_conninfo, parse_database_url
from auditor.db import connect, sa_connection
from auditor.importer import run_import
from auditor.pgserver import EmbeddedPostgres
from auditor.render import print_timeline
from auditor.store import queries, schema

DEMO_DATABASE = "auditor"


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


def _showcase_interaction(settings: Settings) -> str:
    """The interaction seen by the most sessions (a transfer), longest first."""
    with connect(settings.database_url) as conn:
        row = conn.execute(
            "SELECT interaction_id FROM interactions"
            " ORDER BY cardinality(accounts) DESC, event_count DESC, interaction_id LIMIT 1"
        ).fetchone()
    assert row is not None, "the sample holds interactions"
    return str(row[0])


@click.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".demo"),
    show_default=True,
)
@click.option("--wait/--exit", default=True, help="keep PostgreSQL running until Ctrl-C")
def demo(data_dir: Path, wait: bool) -> None:
    """Start an embedded PostgreSQL, migrate, import the sample, show a timeline."""
    console = Console()
    console.rule("auditor demo")
    server = EmbeddedPostgres(data_dir / "pg")
    console.print(f"starting embedded PostgreSQL in {server.data_dir} …")
    server.start()
    try:
        settings = _ensure_database(server)
        with sa_connection(settings.database_url) as connection:
            schema.upgrade(connection)
            schema.ensure_partitions_ahead(connection)
        console.print(f"database ready: {server.url(DEMO_DATABASE)}")
        total = run_import(
            settings,
            sample_path(),
            account="import",
            received_at=None,
            batch_size=500,
            console=console,
        )
        console.print(
            f"sample imported: {total.stored} new events, {total.duplicates} already stored, "
            f"{total.quarantined} quarantined"
        )
        interaction_id = _showcase_interaction(settings)
        with connect(settings.database_url) as conn:
            print_timeline(console, interaction_id, queries.timeline(conn, interaction_id))
        if wait:
            console.print(
                "\nPostgreSQL keeps running; press Ctrl-C to stop. Meanwhile, in another terminal:"
                f"\n  export AUDITOR_DATABASE_URL={server.url(DEMO_DATABASE)}"
                f"\n  .venv/bin/auditor timeline {interaction_id}"
                "\n  .venv/bin/auditor import auditor/data/sample.ndjson   # again: all duplicates"
            )
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        console.print("\nstopping …")
    finally:
        server.stop()
        console.print(f"PostgreSQL stopped; data kept in {data_dir}/ (make demo reuses it)")
