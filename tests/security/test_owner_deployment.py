"""The deployment of docs/security.md, on a cluster of its own: an owner that is not a
superuser (only CREATEROLE) migrates its database, creates the services' logins, and the
services' start-up check tells the owner from a login."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner, Result
from sqlalchemy.engine import URL

from auditor.cli import cli
from auditor.config import libpq_conninfo, parse_database_url
from auditor.errors import ConfigError
from auditor.pgserver import EmbeddedPostgres
from auditor.roles import refuse_privileged

pytestmark = pytest.mark.slow


@pytest.fixture
def own_cluster() -> Iterator[EmbeddedPostgres]:
    # Its own cluster: the group roles must not exist yet, so that the owner creates them.
    data_dir = Path(tempfile.mkdtemp(prefix="auditor-owner-pg-"))
    server = EmbeddedPostgres(data_dir, durable=False).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def _auditor(url: URL, *args: str, **env: str) -> Result:
    full_env = {"AUDITOR_DATABASE_URL": url.render_as_string(hide_password=False), **env}
    return CliRunner().invoke(cli, list(args), env=full_env)


def test_a_createrole_owner_migrates_and_makes_logins_that_the_services_accept(
    own_cluster: EmbeddedPostgres,
) -> None:
    superuser = parse_database_url(own_cluster.url("postgres"))
    with psycopg.connect(libpq_conninfo(superuser), autocommit=True) as conn:
        conn.execute("CREATE ROLE auditor_owner LOGIN CREATEROLE PASSWORD 'owner-pw'")
        conn.execute("CREATE DATABASE auditor OWNER auditor_owner")
    owner = superuser.set(database="auditor", username="auditor_owner", password="owner-pw")

    upgraded = _auditor(owner, "db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    checked = _auditor(owner, "db", "check")
    assert checked.exit_code == 0, checked.output
    for role, user in (("writer", "svc_worker"), ("api", "svc_api"), ("reader", "bi_alice")):
        made = _auditor(
            owner,
            "db",
            "grant-login",
            role,
            "--user",
            user,
            "--password-env",
            "PW",
            PW=f"{user}-pw",
        )
        assert made.exit_code == 0, made.output

    with (
        psycopg.connect(libpq_conninfo(owner)) as conn,
        pytest.raises(ConfigError, match="owns the audited tables"),
    ):
        refuse_privileged(conn, "api", "API")
    api = owner.set(username="svc_api", password="svc_api-pw")
    with psycopg.connect(libpq_conninfo(api)) as conn:
        refuse_privileged(conn, "api", "API")
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone()
    worker = owner.set(username="svc_worker", password="svc_worker-pw")
    with psycopg.connect(libpq_conninfo(worker)) as conn:
        refuse_privileged(conn, "writer", "worker")
        # The partition function runs with the owner's rights, for a writer without DDL.
        assert conn.execute("SELECT auditor_ensure_event_partition('2031-01-01')").fetchone() == (
            True,
        )
        conn.commit()
    bi = owner.set(username="bi_alice", password="bi_alice-pw")
    with psycopg.connect(libpq_conninfo(bi)) as conn:
        conn.execute("SELECT count(*) FROM events")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT count(*) FROM access_log")
