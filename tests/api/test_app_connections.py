"""The app's connection source: the factory create_app takes, the request's connection in
web/db.py, and the test transaction the API tests run in (tests/transactional.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import URL

from auditor.config import libpq_conninfo
from tests.api.conftest import Api, api_settings
from tests.logins import LOGINS
from tests.serving import serve
from tests.transactional import OneTransaction
from web import create_app
from web.db import Connections


def _user(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute("SELECT current_user").fetchone()
    assert row is not None
    return str(row[0])


def test_create_app_takes_its_connections_from_the_factory_it_is_given(
    conn: psycopg.Connection[Any], session_db: URL
) -> None:
    settings = api_settings(session_db)
    made: list[Connections] = []

    def factory(given: Any) -> Connections:
        assert given is settings
        made.append(OneTransaction(conn, LOGINS["api"]))
        return made[0]

    app = create_app(settings, factory)
    assert app.test_client().get("/readyz").status_code == 200
    assert len(made) == 1


def test_what_the_app_writes_is_in_the_tests_transaction_and_nowhere_else(api: Api) -> None:
    assert api.get("/api/v1/events", role="reader").status_code == 200
    assert [row[:4] for row in api.access_log()] == [
        ("test-reader", "reader", "GET", "/api/v1/events")
    ]
    with psycopg.connect(libpq_conninfo(api.url)) as other:  # nothing was committed
        assert other.execute("SELECT count(*) FROM access_log").fetchone() == (0,)
        assert other.execute("SELECT count(*) FROM api_tokens").fetchone() == (0,)


def test_requests_run_as_the_api_login_and_the_test_as_the_owner(
    conn: psycopg.Connection[Any],
) -> None:
    owner = _user(conn)
    source = OneTransaction(conn, LOGINS["api"])
    with source.connection() as request:
        assert _user(request) == LOGINS["api"]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            request.execute("SELECT token_hash FROM api_tokens")  # the API's rights, not ours
    assert _user(conn) == owner


def test_a_failed_statement_in_a_request_leaves_the_tests_transaction_usable(
    conn: psycopg.Connection[Any],
) -> None:
    conn.execute("CREATE TEMP TABLE kept (n int)")
    conn.execute("INSERT INTO kept VALUES (1)")
    source = OneTransaction(conn, LOGINS["api"])
    with source.connection() as request, pytest.raises(psycopg.errors.UndefinedTable):
        request.execute("SELECT * FROM no_such_table")
        # caught, as the app catches some (the access log's failure is a 503)

    def a_request_that_raises() -> None:
        with source.connection() as request:
            request.execute("SELECT * FROM no_such_table")

    with pytest.raises(psycopg.errors.UndefinedTable):
        a_request_that_raises()
    assert conn.execute("SELECT n FROM kept").fetchall() == [(1,)]


def test_a_connection_that_outlives_its_request_ends_quietly_and_keeps_the_role_till_then(
    conn: psycopg.Connection[Any],
) -> None:
    owner = _user(conn)
    source = OneTransaction(conn, LOGINS["api"])
    request = source.connection()
    stream = source.connection()  # an export's: taken inside the request
    request.__enter__()
    stream.__enter__()
    request.__exit__(None, None, None)  # the request ends before its export's stream
    assert _user(conn) == LOGINS["api"]  # the stream still reads as the API
    stream.__exit__(None, None, None)  # its savepoint went with the request's
    assert _user(conn) == owner


def test_a_server_that_exits_before_it_is_ready_fails_at_once_with_its_log(
    session_db: URL, tmp_path: Path
) -> None:
    with pytest.raises(RuntimeError, match="exited with 2") as failed:  # noqa: SIM117
        with serve(session_db, tmp_path / "serve.log"):  # the owner: serve refuses it
            raise AssertionError("auditor serve must refuse the owner")
    assert "auditor:" in str(failed.value)  # the server's own one-line reason
