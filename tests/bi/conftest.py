"""A database of its own holding the hand-made lifecycles (committed: the BI login reads it
over its own connections), and a login role in auditor_bi."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from sqlalchemy.engine import URL

from auditor.config import libpq_conninfo
from auditor.store.writer import store_batch
from tests.bi import fixture


def _admin(server_url: URL, statement: str) -> None:
    with psycopg.connect(libpq_conninfo(server_url), autocommit=True) as conn:
        conn.execute(statement)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def bi_db(server_url: URL, template_db: str) -> Iterator[URL]:
    name = f"auditor_bi_{uuid.uuid4().hex[:12]}"
    _admin(server_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}" STRATEGY FILE_COPY')
    url = server_url.set(database=name)
    with psycopg.connect(libpq_conninfo(url)) as conn:
        result = store_batch(conn, fixture.receipts())
        assert result.quarantined == 0
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO coverage_intervals"
                " (account, worker_id, channels, started_at, heartbeat_at, ended_at, end_reason)"
                " VALUES (%s, %s, ARRAY['/v2/me/openmedia'], %s, %s, %s, 'stopped')",
                [(a, w, s, e, e) for a, w, s, e in fixture.COVERAGE],
            )
    yield url
    _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def bi_login(bi_db: URL, login_url: Callable[[URL, str], URL]) -> URL:
    """The session's login in auditor_bi (made by `auditor db grant-login bi`)."""
    return login_url(bi_db, "bi")


@pytest.fixture
def bi_conn(bi_login: URL) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(libpq_conninfo(bi_login)) as conn:
        yield conn
