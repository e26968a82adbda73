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
    statement timeout so a runaway query cannot hold a worker forever."""

    def __init__(self, settings: Settings) -> None:
        self._conninfo = settings.conninfo
        self._options = (
            f"-c TimeZone=UTC -c statement_timeout={settings.api.statement_timeout_ms}"
            " -c application_name=auditor-api"
        )
        self._pool = QueuePool(
            cast(Any, self._connect),
            pool_size=settings.api.pool_size,
            max_overflow=settings.api.pool_size,
            reset_on_return="rollback",
        )

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(
            self._conninfo, autocommit=True, connect_timeout=5, options=self._options
        )

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        fairy = self._pool.connect()
        connection = cast(psycopg.Connection[Any], fairy.driver_connection)
        if connection.closed or connection.broken:  # the server went away since last use
            fairy.invalidate()
            fairy = self._pool.connect()
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
