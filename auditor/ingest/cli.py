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

    worker: Worker | None = None

    async def main() -> int:
        nonlocal worker
        worker = Worker(config)
        return await worker.run()

    code = asyncio.run(main())
    if worker is not None and worker.watchdog is not None:
        worker.watchdog.cancel()
    sys.exit(code)
