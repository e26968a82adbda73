"""`auditor ingest`: run the ingestion worker."""

from __future__ import annotations

import asyncio
import os
import sys

import click

from auditor.ingest import config as worker_config
from auditor.ingest import logs
from auditor.ingest.worker import Worker


@click.command("ingest")
@click.option("--config", "config_path", help="worker TOML file (default: $AUDITOR_CONFIG)")
def ingest(config_path: str | None) -> None:
    """Record GWS notifications: one CometD session per configured agent account.

    Secrets come from the environment (accounts[].password_env, AUDITOR_DATABASE_URL).
    SIGTERM/SIGINT drain the spool to PostgreSQL and exit 0.
    """
    config = worker_config.load(config_path, os.environ)
    logs.setup()

    async def main() -> int:
        return await Worker(config).run()

    sys.exit(asyncio.run(main()))
