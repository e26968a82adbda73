"""The API's connection pool (psycopg_pool): bounded, and a request that cannot get a
connection in time is a 503 problem, never a 500."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from contextlib import ExitStack

import pytest
from sqlalchemy.engine import URL

from auditor.config import ApiSettings, Settings
from web import create_app
from web.db import Database


def test_a_request_finding_every_connection_busy_is_a_503_problem(
    session_db: URL, login_url: Callable[[URL, str], URL], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Database, "WAIT_SECONDS", 0.2)
    settings = Settings(
        database_url=login_url(session_db, "api"),
        api=ApiSettings(secret=secrets.token_urlsafe(32), pool_size=1),
    )
    app = create_app(settings)
    database: Database = app.extensions["auditor_db"]
    try:
        with ExitStack() as held:
            for _ in range(2):  # pool_size 1 grows to 2, no further
                connection = held.enter_context(database.connection())
                assert connection.execute("SELECT 1").fetchone() == (1,)
            answer = app.test_client().get(
                "/api/v1/coverage", headers={"Authorization": "Bearer not-checked-yet"}
            )
        assert answer.status_code == 503
        assert answer.mimetype == "application/problem+json"
        # once handed back, the connections serve again
        with database.connection() as connection:
            assert connection.execute("SELECT 1").fetchone() == (1,)
    finally:
        database.dispose()
