"""The app with tokens of every role and data builders: inside the test's transaction on the
session's database (``api``), or on a database of its own for what needs real commits
(``committed_api``: exports, several sessions, the database ending a session)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from psycopg import sql
from sqlalchemy.engine import URL

from auditor import tokens
from auditor.config import ApiSettings, Settings, libpq_conninfo
from auditor.store.receipts import Receipt
from auditor.store.writer import store_batch
from tests.logins import LOGINS, as_login
from tests.transactional import OneTransaction, savepoint
from web import create_app


@dataclass
class Api:
    app: Flask
    client: FlaskClient
    url: URL
    tokens: dict[str, str]  # role -> secret
    shared: psycopg.Connection[Any] | None = None  # the test's transaction, if the app is in it

    @contextmanager
    def db(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        """A connection as the owner: the test's own (in a savepoint) when the app runs in
        the test's transaction, else a new one in autocommit."""
        if self.shared is not None:
            with savepoint(self.shared) as connection:
                yield connection
            return
        with psycopg.connect(libpq_conninfo(self.url), autocommit=True) as connection:
            yield connection

    def get(self, path: str, role: str | None = "admin", **params: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        return self.client.get(path, query_string=params or None, headers=headers)

    def store(self, receipts: list[Receipt]) -> None:
        if self.shared is not None:
            with savepoint(self.shared) as conn:
                store_batch(conn, receipts)
            return
        with psycopg.connect(libpq_conninfo(self.url)) as conn:
            store_batch(conn, receipts)
            conn.commit()

    def cover(
        self,
        account: str,
        start: datetime,
        end: datetime | None,
        heartbeat: datetime | None = None,
    ) -> None:
        """A coverage interval, as the worker writes it."""
        with self.db() as conn:
            conn.execute(
                "INSERT INTO coverage_intervals (account, worker_id, channels, started_at,"
                " heartbeat_at, ended_at, end_reason) VALUES (%s, 'w1', %s, %s, %s, %s, %s)",
                (
                    account,
                    ["/v2/me/openmedia"],
                    start,
                    heartbeat or end or start,
                    end,
                    "disconnected" if end else None,
                ),
            )

    def access_log(self) -> list[tuple[Any, ...]]:
        with self.db() as conn:
            return conn.execute(
                "SELECT token_name, role, method, endpoint, filters, status, rows_returned"
                " FROM access_log ORDER BY id"
            ).fetchall()


def api_settings(url: URL, **api: Any) -> Settings:
    """The app connects as the API's login, as deployed; the tests seed data as the owner."""
    return Settings(
        database_url=as_login(url, "api"),
        api=ApiSettings(secret=secrets.token_urlsafe(32), **{"pool_size": 2, **api}),
    )


def in_transaction(
    connection: psycopg.Connection[Any], url: URL, prefix: str = "test", **api: Any
) -> Api:
    """The app inside ``connection``'s transaction, with a token of every role made in it."""
    settings = api_settings(url, **api)
    connection.execute("SET TIME ZONE 'UTC'")  # as the API's own connections are
    timeout = settings.api.statement_timeout_ms
    connection.execute(sql.SQL("SET statement_timeout = {}").format(timeout))
    app = create_app(settings, lambda _: OneTransaction(connection, LOGINS["api"]))
    app.config["TESTING"] = True
    made = {role: tokens.create(connection, f"{prefix}-{role}", role) for role in tokens.ROLES}
    return Api(app, app.test_client(), url, made, connection)


def committed(url: URL, prefix: str = "test", **api: Any) -> Api:
    """The app on its own pool over ``url``: every request commits as in production."""
    app = create_app(api_settings(url, **api))
    app.config["TESTING"] = True
    with psycopg.connect(libpq_conninfo(url)) as conn:
        made = {role: tokens.create(conn, f"{prefix}-{role}", role) for role in tokens.ROLES}
        conn.commit()
    return Api(app, app.test_client(), url, made)


@pytest.fixture
def api(conn: psycopg.Connection[Any], session_db: URL) -> Api:
    return in_transaction(conn, session_db)


@pytest.fixture
def committed_api(fresh_db: URL) -> Iterator[Api]:
    api = committed(fresh_db)
    yield api
    api.app.extensions["auditor_db"].dispose()
