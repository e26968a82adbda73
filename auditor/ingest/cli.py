"""`auditor ingest`: run the ingestion worker."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
from typing import Any

import click

from auditor.ingest import config as worker_config
from auditor.ingest import cpuprofile, logs
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

    # What is loaded now (modules, classes) lives as long as the process: moved out of the
    # collector's sight, it is not re-scanned by every full collection of a heap that
    # thousands of sessions make large (those collections stall the event loop).
    gc.freeze()
    # Thousands of sessions make a heap of millions of objects, and every automatic full
    # collection scanned all of it: half of the event loop's time while sessions were set
    # up. Young generations are still collected automatically; the full collection runs on
    # the worker's schedule (Worker._collect_garbage).
    gc.set_threshold(10_000, 10, 1_000_000_000)
    worker: Worker | None = None

    async def main() -> int:
        nonlocal worker
        worker = Worker(config)
        return await worker.run()

    uvloop: Any = None
    if config.event_loop == "uvloop":
        try:
            import uvloop
        except ImportError:  # a dependency, but an environment may predate it
            logging.getLogger("auditor.ingest").warning(
                "uvloop is not installed: running on asyncio's own event loop"
            )
    with cpuprofile.profiled(os.environ):  # AUDITOR_CPROFILE=PATH: off by default
        if uvloop is not None:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                code = runner.run(main())
        else:
            code = asyncio.run(main())
    if worker is not None and worker.watchdog is not None:
        worker.watchdog.cancel()
    sys.exit(code)
