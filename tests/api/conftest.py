"""The app on a fresh database of its own, tokens of every role, data builders."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.engine import URL

from auditor import tokens
from auditor.config import ApiSettings, Settings, libpq_conninfo
from auditor.store.receipts import Receipt
from auditor.store.writer import store_batch
from tests.logins import as_login
from web import create_app


@dataclass
class Api:
    app: Flask
    client: FlaskClient
    url: URL
    tokens: dict[str, str]  # role -> secret

    def db(self) -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(libpq_conninfo(self.url), autocommit=True)

    def get(self, path: str, role: str | None = "admin", **params: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        return self.client.get(path, query_string=params or None, headers=headers)

    def store(self, receipts: list[Receipt]) -> None:
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


@pytest.fixture
def api(fresh_db: URL) -> Iterator[Api]:
    # The app connects as the API's login, as deployed; the tests seed data as the owner.
    settings = Settings(
        database_url=as_login(fresh_db, "api"),
        api=ApiSettings(secret=secrets.token_urlsafe(32), pool_size=2),
    )
    app = create_app(settings)
    app.config["TESTING"] = True
    made = {}
    with psycopg.connect(libpq_conninfo(fresh_db)) as conn:
        for role in tokens.ROLES:
            made[role] = tokens.create(conn, f"test-{role}", role)
        conn.commit()
    yield Api(app, app.test_client(), fresh_db, made)
    app.extensions["auditor_db"].dispose()
