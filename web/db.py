"""A small pool of psycopg connections per process (gunicorn worker), made lazily; and the
connection each request uses.

``create_app`` takes a connection factory (``Settings -> Connections``): in production the
pool below; in tests, one connection inside the test's own transaction
(tests/transactional.py), so a test's writes and the app's reads share one transaction that
is rolled back at the end. A request takes its connection on first use and hands it back at
teardown (``install``)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

import psycopg
from flask import Flask, current_app, g
from psycopg_pool import ConnectionPool

from auditor.config import Settings

Pool = ConnectionPool[psycopg.Connection[Any]]
EXTENSION = "auditor_db"
log = logging.getLogger("auditor.api")


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


class Connections(Protocol):
    """What the app needs from its connection source."""

    has_replica: bool

    def connection(self) -> AbstractContextManager[psycopg.Connection[Any]]:
        """For reads: the standby when one is configured."""
        ...

    def primary(self) -> AbstractContextManager[psycopg.Connection[Any]]:
        """For writes (the access log, the tokens' last use): always the primary."""
        ...

    def dispose(self) -> None: ...


ConnectionFactory = Callable[[Settings], Connections]


def install(app: Flask, connections: Connections) -> None:
    """The app's connection source, and the hand-back of each request's connections."""
    app.extensions[EXTENSION] = connections
    app.teardown_request(_release)


def database() -> Connections:
    connections: Connections = current_app.extensions[EXTENSION]
    return connections


def conn() -> psycopg.Connection[Any]:
    """The request's connection for reads (handed back at teardown): the hot standby's when
    AUDITOR_READ_DATABASE_URL is set."""
    if "conn" not in g:
        g.conn_ctx = database().connection()
        g.conn = g.conn_ctx.__enter__()
    connection: psycopg.Connection[Any] = g.conn
    return connection


def primary_conn() -> psycopg.Connection[Any]:
    """The request's connection to the primary, for what it writes (the access log, the
    token's last use); the same connection as conn() when there is no standby."""
    if not database().has_replica:
        return conn()
    if "primary" not in g:
        g.primary_ctx = database().primary()
        g.primary = g.primary_ctx.__enter__()
    connection: psycopg.Connection[Any] = g.primary
    return connection


def _release(_: BaseException | None) -> None:
    for name in ("conn", "primary"):
        ctx = g.pop(f"{name}_ctx", None)
        g.pop(name, None)
        if ctx is not None:
            try:
                ctx.__exit__(None, None, None)
            except psycopg.Error:
                log.exception("database error while finishing a request")
