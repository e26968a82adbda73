"""The access log tells the truth (issue 9, item 3): every request leaves a row, exports say
how they ended, credentials never reach it, the client's address is there, and the API role
writes it only through auditor_log_access."""

from __future__ import annotations

import ipaddress
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb
from sqlalchemy.engine import URL

from auditor import tokens
from tests.api.conftest import Api, in_transaction
from tests.helpers import om_message, receipt
from web import export
from web.client import REDACTED


def _rows(api: Api) -> list[dict[str, Any]]:
    with api.db() as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute("SELECT * FROM access_log ORDER BY id").fetchall()


def _load(api: Api, count: int) -> None:
    api.store([receipt(om_message(f"i{n}", "Routing"), at=n) for n in range(count)])


def _auth(api: Api, role: str = "exporter") -> dict[str, str]:
    return {"Authorization": f"Bearer {api.tokens[role]}"}


def test_head_on_the_api_is_refused_and_logged(api: Api) -> None:
    for path in ("/api/v1/events", "/api/v1/events/export"):
        response = api.client.head(path, headers=_auth(api))
        assert response.status_code == 405
        assert response.headers["Allow"] == "GET"
    rows = _rows(api)
    assert [(r["method"], r["endpoint"], r["status"], r["outcome"]) for r in rows] == [
        ("HEAD", "/api/v1/events", 405, "answered"),
        ("HEAD", "/api/v1/events/export", 405, "answered"),
    ]


def test_a_completed_export_has_a_second_row_with_its_rows_and_hash(committed_api: Api) -> None:
    api = committed_api  # exports hold a slot (an advisory lock) and stream past the request
    _load(api, 5)
    body = api.get("/api/v1/events/export", role="exporter").get_data(as_text=True)
    trailer = body.splitlines()[-1]
    started, ended = _rows(api)
    assert (started["outcome"], started["rows_returned"], started["status"]) == (
        "started",
        None,
        200,
    )
    assert (ended["outcome"], ended["rows_returned"], ended["follows"]) == (
        "completed",
        5,
        started["id"],
    )
    assert ended["sha256"] in trailer
    assert ended["token_name"] == "test-exporter"
    assert ended["at"] >= started["at"]


def test_an_export_cut_by_the_client_says_so_with_the_rows_handed_on(
    committed_api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = committed_api  # exports hold a slot (an advisory lock) and stream past the request
    monkeypatch.setattr(export, "FETCH_ROWS", 2)
    _load(api, 10)
    response = api.client.get("/api/v1/events/export", headers=_auth(api))
    chunks = iter(response.response)
    next(chunks), next(chunks)  # two chunks of two rows: the first is surely sent
    response.close()  # the client went away
    ended = _rows(api)[-1]
    assert (ended["outcome"], ended["rows_returned"], ended["sha256"]) == ("cut", 2, None)


def test_an_export_that_fails_on_the_server_says_so_with_the_error_class(
    committed_api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = committed_api  # exports hold a slot (an advisory lock) and stream past the request
    monkeypatch.setattr(export, "FETCH_ROWS", 2)
    _load(api, 10)
    response = api.client.get("/api/v1/events/export", headers=_auth(api))
    chunks = iter(response.response)
    next(chunks)
    with api.db() as conn:  # the database ends the export's session under it
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'auditor-api' AND state = 'idle in transaction'"
        )
    with pytest.raises(psycopg.Error) as failure:
        list(chunks)
    response.close()
    ended = _rows(api)[-1]
    assert (ended["outcome"], ended["error"]) == ("failed", type(failure.value).__name__)
    assert ended["rows_returned"] == 2  # the first chunk: the server came back for more


def test_credentials_in_the_query_string_are_redacted(api: Api) -> None:
    secret = api.tokens["reader"]
    api.client.get(f"/api/v1/events?access_token={secret}&limit=5")  # no header: 401
    api.client.get(f"/api/v1/events?x={secret}&password=hunter2", headers=_auth(api, "reader"))
    first, second = _rows(api)
    assert first["filters"] == {"access_token": REDACTED, "limit": "5"}
    assert second["filters"] == {"x": REDACTED, "password": REDACTED}
    assert secret not in str(_rows(api))
    assert "hunter2" not in str(_rows(api))


def test_a_token_name_filter_is_not_mistaken_for_a_credential(api: Api) -> None:
    api.get("/api/v1/access-log", token="test-reader")
    assert _rows(api)[-1]["filters"] == {"token": "test-reader"}


def test_the_client_address_comes_from_the_socket(api: Api) -> None:
    api.client.get(
        "/api/v1/events",
        headers={**_auth(api, "reader"), "X-Forwarded-For": "203.0.113.9"},
        environ_base={"REMOTE_ADDR": "198.51.100.4"},
    )
    assert str(_rows(api)[-1]["client"]) == "198.51.100.4"  # no trusted proxy: header ignored


def test_behind_a_trusted_proxy_the_client_is_the_forwarded_address(
    conn: psycopg.Connection[Any], session_db: URL
) -> None:
    api = in_transaction(conn, session_db, trusted_proxies=(ipaddress.ip_network("10.0.0.0/8"),))
    for peer in ("10.1.2.3", "198.51.100.4"):
        api.client.get(
            "/api/v1/events",
            headers={**_auth(api, "reader"), "X-Forwarded-For": "203.0.113.9, 10.9.9.9"},
            environ_base={"REMOTE_ADDR": peer},
        )
    assert [str(r["client"]) for r in _rows(api)] == ["203.0.113.9", "198.51.100.4"]


def test_unauthenticated_rows_are_bounded_in_size(api: Api) -> None:
    query = "&".join(f"p{n}={'v' * 1000}" for n in range(40))
    api.client.get("/api/v1/" + "x" * 5000 + "?" + query)
    row = _rows(api)[-1]
    assert row["token_name"] is None
    assert len(row["endpoint"].encode()) <= 512
    assert len(str(Jsonb(row["filters"]).obj).encode()) <= 4096
    assert row["filters"]["_left_out"] > 30
    assert all(len(v) <= 256 for k, v in row["filters"].items() if k != "_left_out")


# --- what the database itself enforces (as the API role) ---------------------------------


@pytest.fixture
def as_api(conn: psycopg.Connection[Any]) -> tuple[psycopg.Connection[Any], str]:
    secret = tokens.create(conn, "db-check", "exporter")
    conn.execute("SET ROLE auditor_api")
    return conn, tokens.token_hash(secret)


def _log(conn: psycopg.Connection[Any], token_hash: str | None, **over: Any) -> int:
    args = {
        "method": "GET",
        "endpoint": "/api/v1/events",
        "filters": Jsonb({}),
        "status": 200,
        "rows": 1,
        "client": "127.0.0.1",
        "outcome": "answered",
        "follows": None,
        **over,
    }
    row = conn.execute(
        "SELECT auditor_log_access(%s, %s, %s, %s, %s, %s, %s, %s, %s, NULL, NULL)",
        (token_hash, *args.values()),
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_the_api_role_cannot_insert_rows_or_read_token_hashes(
    as_api: tuple[psycopg.Connection[Any], str],
) -> None:
    conn, _ = as_api
    with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
        conn.execute(
            "INSERT INTO access_log (at, token_name, method, endpoint, status)"
            " VALUES ('2020-01-01', 'someone', 'GET', '/x', 200)"
        )
    with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
        conn.execute("SELECT token_hash FROM api_tokens")


def test_the_function_stamps_the_time_and_names_the_token_from_its_hash(
    as_api: tuple[psycopg.Connection[Any], str],
) -> None:
    conn, token_hash = as_api
    row_id = _log(conn, token_hash)
    conn.execute("RESET ROLE")
    at, name, role, now = conn.execute(
        "SELECT at, token_name, role, clock_timestamp() FROM access_log WHERE id = %s", (row_id,)
    ).fetchone() or (None, None, None, None)
    assert (name, role) == ("db-check", "exporter")
    assert (now - at).total_seconds() < 60


def test_the_function_refuses_an_unknown_hash_and_a_foreign_follows(
    as_api: tuple[psycopg.Connection[Any], str],
) -> None:
    conn, token_hash = as_api
    with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
        _log(conn, "0" * 64)
    answered = _log(conn, token_hash)
    with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
        _log(conn, token_hash, outcome="completed", follows=answered)  # not a started row
    started = _log(conn, token_hash, outcome="started")
    with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
        _log(conn, None, outcome="cut", follows=started)  # another (no) token's name
    _log(conn, token_hash, outcome="cut", follows=started)


def test_the_function_refuses_a_large_unauthenticated_row(
    as_api: tuple[psycopg.Connection[Any], str],
) -> None:
    conn, _ = as_api
    with pytest.raises(psycopg.errors.ProgramLimitExceeded), conn.transaction():
        _log(conn, None, endpoint="/" + "x" * 600, status=401)
    with pytest.raises(psycopg.errors.ProgramLimitExceeded), conn.transaction():
        _log(conn, None, filters=Jsonb({"p": "v" * 3000}), status=401)
    _log(conn, None, status=401)
