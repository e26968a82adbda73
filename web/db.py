"""A small pool of psycopg connections per process (gunicorn worker), made lazily."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import psycopg
from sqlalchemy.pool import QueuePool

from auditor.config import Settings


class Database:
    """Connections are in autocommit (each read is its own snapshot), UTC, and bounded by a
    statement timeout so a runaway query cannot hold a worker forever.

    With AUDITOR_READ_DATABASE_URL, ``connection()`` reaches the hot standby (reads) and
    ``primary()`` the primary (the access log, the tokens' last use); without it both are
    the same pool."""

    def __init__(self, settings: Settings) -> None:
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

    def _make_pool(self, conninfo: str, settings: Settings) -> QueuePool:
        def connect() -> psycopg.Connection[Any]:
            return psycopg.connect(
                conninfo, autocommit=True, connect_timeout=5, options=self._options
            )

        return QueuePool(
            cast(Any, connect),
            pool_size=settings.api.pool_size,
            max_overflow=settings.api.pool_size,
            reset_on_return="rollback",
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

    @contextmanager
    def _from(self, pool: QueuePool) -> Iterator[psycopg.Connection[Any]]:
        fairy = pool.connect()
        connection = cast(psycopg.Connection[Any], fairy.driver_connection)
        if connection.closed or connection.broken:  # the server went away since last use
            fairy.invalidate()
            fairy = pool.connect()
            connection = cast(psycopg.Connection[Any], fairy.driver_connection)
        try:
            yield connection
        finally:
            if connection.closed or connection.broken:
                fairy.invalidate()
            else:
                fairy.close()

    def dispose(self) -> None:
        self._pool.dispose()
        if self._primary is not self._pool:
            self._primary.dispose()
