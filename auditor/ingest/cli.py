"""`auditor ingest`: run the ingestion worker."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

import click

from auditor.ingest import config as worker_config
from auditor.ingest import logs
from auditor.ingest.worker import Worker
from auditor.roles import check_database_role


@click.command("ingest")
@click.option("--config", "config_path", help="worker TOML file (default: $AUDITOR_CONFIG)")
@click.option(
    "--allow-owner",
    is_flag=True,
    help="development only: run even as a superuser or the tables' owner",
)
def ingest(config_path: str | None, allow_owner: bool) -> None:
    """Record GWS notifications: one CometD session per configured agent account.

    Secrets come from the environment (accounts[].password_env, AUDITOR_DATABASE_URL).
    The database user must be a login in auditor_writer (`auditor db grant-login writer`).
    SIGTERM/SIGINT drain the spool to PostgreSQL and exit 0.
    """
    config = worker_config.load(config_path, os.environ)
    checked = allow_owner or check_database_role(config.database_url)
    logs.setup()
    if not checked:
        logging.getLogger("auditor.ingest").warning(
            "PostgreSQL unreachable at start: the database role is not checked"
        )

    async def main() -> int:
        return await Worker(config).run()

    sys.exit(asyncio.run(main()))
