"""A small pool of psycopg connections per process (gunicorn worker), made lazily."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from auditor.config import Settings

Pool = ConnectionPool[psycopg.Connection[Any]]


class Database:
    """Connections are in autocommit (each read is its own snapshot), UTC, and bounded by a
    statement timeout so a runaway query cannot hold a worker forever.

    With AUDITOR_READ_DATABASE_URL, ``connection()`` reaches the hot standby (reads) and
    ``primary()`` the primary (the access log, the tokens' last use); without it both are
    the same pool."""

    WAIT_SECONDS = 30.0  # for a free connection; then the request is a 503 (web/errors.py)

    def __init__(self, settings: Settings) -> None:
        self._opening = threading.Lock()
        self._options = (
            f"-c TimeZone=UTC -c statement_timeout={settings.api.statement_timeout_ms}"
            " -c application_name=auditor-api"
        )
        self._pool = self._make_pool(settings.read_conninfo, settings)
        self._primary = (
            self._pool
            if settings.read_database_url is None
            else self._make_pool(settings.conninfo, settings)
        )
        self.has_replica = settings.read_database_url is not None

    def _make_pool(self, conninfo: str, settings: Settings) -> Pool:
        # psycopg's own pool (psycopg_pool) rather than SQLAlchemy's QueuePool around psycopg
        # connections: it knows psycopg's connection states (a broken or in-transaction
        # connection handed back is discarded or rolled back), retires connections after
        # max_lifetime, reconnects in the background, and costs no more per checkout
        # (bench/api_pool.py). Opened on first use: nothing connects at import, and each
        # gunicorn worker makes its own after the fork.
        return ConnectionPool(
            conninfo,
            kwargs={"autocommit": True, "connect_timeout": 5, "options": self._options},
            min_size=0,
            max_size=2 * settings.api.pool_size,
            open=False,
            timeout=self.WAIT_SECONDS,
            name="auditor-api",
        )

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """For reads: the standby when one is configured."""
        with self._from(self._pool) as connection:
            yield connection

    @contextmanager
    def primary(self) -> Iterator[psycopg.Connection[Any]]:
        """For writes (access log, token use): always the primary."""
        with self._from(self._primary) as connection:
            yield connection

    def _from(self, pool: Pool) -> AbstractContextManager[psycopg.Connection[Any]]:
        if pool.closed:
            with self._opening:
                if pool.closed:
                    pool.open()
        return pool.connection()

    def dispose(self) -> None:
        self._pool.close()
        if self._primary is not self._pool:
            self._primary.close()
