"""Reads from a hot standby: a primary and a streaming standby from the embedded PostgreSQL
binaries (pg_basebackup -R); the API reads from the standby, writes its access log and the
tokens' last use to the primary, and never claims coverage past the standby's replay."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask.testing import FlaskClient
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import URL

from auditor import tokens
from auditor.config import ApiSettings, Settings, libpq_conninfo, parse_database_url
from auditor.errors import ConfigError
from auditor.pgserver import EmbeddedPostgres
from auditor.store import integrity, schema
from auditor.store.writer import store_batch
from tests.helpers import om_message, receipt, wait_for
from tests.logins import as_login, create_logins
from web import create_app


@dataclass
class Pair:
    primary: URL
    standby: URL


def _one(url: URL, sql: str, *params: Any) -> Any:
    with psycopg.connect(libpq_conninfo(url), autocommit=True) as conn:
        row = conn.execute(sql, params).fetchone()
    return None if row is None else row[0]


def _caught_up(pair: Pair) -> bool:
    lsn = _one(pair.primary, "SELECT pg_current_wal_lsn()::text")
    return bool(_one(pair.standby, "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", lsn))


@pytest.fixture
def pair() -> Iterator[Pair]:
    # Not under pytest's tmp_path: the server's own user must reach the directory.
    base = Path(tempfile.mkdtemp(prefix="auditor-test-replica-"))
    primary = EmbeddedPostgres(base / "primary", durable=False).start()
    try:
        admin = parse_database_url(primary.url("postgres"))
        with psycopg.connect(libpq_conninfo(admin), autocommit=True) as conn:
            conn.execute("CREATE DATABASE auditor")
        url = admin.set(database="auditor")
        engine = create_engine(url, poolclass=pool.NullPool)
        with engine.begin() as connection:
            schema.upgrade(connection)
        engine.dispose()
        create_logins(url)
        standby = primary.start_standby(base / "standby")
        try:
            found = Pair(url, parse_database_url(standby.url("auditor")))
            wait_for("the standby to replay the schema", lambda: _caught_up(found))
            yield found
        finally:
            standby.stop()
    finally:
        primary.stop()
        shutil.rmtree(base, ignore_errors=True)


def _client(pair: Pair) -> tuple[FlaskClient, dict[str, str], Callable[[], None]]:
    settings = Settings(
        database_url=as_login(pair.primary, "api"),
        read_database_url=as_login(pair.standby, "api"),
        api=ApiSettings(secret=secrets.token_urlsafe(32), pool_size=2),
    )
    app = create_app(settings)
    app.config["TESTING"] = True
    with psycopg.connect(libpq_conninfo(pair.primary)) as conn:
        secret = tokens.create(conn, "replica-test", "admin")
        conn.commit()
    return (
        app.test_client(),
        {"Authorization": f"Bearer {secret}"},
        app.extensions["auditor_db"].dispose,
    )


def _store(pair: Pair, interaction: str, state: str, at: int) -> None:
    with psycopg.connect(libpq_conninfo(as_login(pair.primary, "writer"))) as conn:
        store_batch(conn, [receipt(om_message(interaction, state), at=at)])
        conn.commit()


@pytest.mark.slow
def test_the_api_reads_from_the_standby_and_writes_its_log_to_the_primary(pair: Pair) -> None:
    client, auth, dispose = _client(pair)
    try:
        _store(pair, "rep-1", "Invited", 0)
        wait_for("the standby to replay the events", lambda: _caught_up(pair))
        answer = client.get("/api/v1/interactions/rep-1/timeline", headers=auth)
        assert answer.status_code == 200, answer.get_json()
        assert [e["state"] for e in answer.get_json()["events"]] == ["Invited"]
        # Written on the primary (the standby is read-only: a write there would be a 503).
        assert _one(pair.primary, "SELECT count(*) FROM access_log") >= 1
        assert _one(pair.primary, "SELECT last_used_at IS NOT NULL FROM api_tokens")
        # Reads went to the standby: its sessions show the API's connections.
        assert _one(
            pair.standby,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'auditor-api'",
        )

        # Hold replay back; the primary goes on (a live interval, new events).
        started = datetime.now(UTC) - timedelta(minutes=1)
        with psycopg.connect(libpq_conninfo(pair.primary), autocommit=True) as conn:
            conn.execute(
                "INSERT INTO coverage_intervals (account, worker_id, channels, started_at,"
                " heartbeat_at) VALUES ('agent001', 'w1', %s, %s, now())",
                (["/v2/me/openmedia"], started),
            )
        wait_for("the standby to replay the interval", lambda: _caught_up(pair))
        _one(pair.standby, "SELECT pg_wal_replay_pause()")
        wait_for(
            "replay to pause",
            lambda: _one(pair.standby, "SELECT pg_get_wal_replay_pause_state()") == "paused",
        )
        replayed = _one(pair.standby, "SELECT pg_last_xact_replay_timestamp()")
        wait_for(  # the primary's clock moves past the replay position
            "the primary's clock past the replay position",
            lambda: _one(pair.primary, "SELECT now() > %s + interval '0.1 s'", replayed),
        )
        _store(pair, "rep-1", "Processing", 1)
        with psycopg.connect(libpq_conninfo(pair.primary), autocommit=True) as conn:
            conn.execute("UPDATE coverage_intervals SET heartbeat_at = now()")
        asked_to = datetime.now(UTC)

        body = client.get(
            "/api/v1/coverage",
            headers=auth,
            query_string={"from": started.isoformat(), "to": asked_to.isoformat()},
        ).get_json()
        assert body["complete"] is False
        [gap] = body["gaps"]
        assert datetime.fromisoformat(gap["from"]) == replayed
        assert replayed < datetime.fromisoformat(gap["to"]) <= asked_to
        timeline = client.get("/api/v1/interactions/rep-1/timeline", headers=auth).get_json()
        assert [e["state"] for e in timeline["events"]] == ["Invited"]  # not replayed yet

        _one(pair.standby, "SELECT pg_wal_replay_resume()")
        wait_for("the standby to catch up", lambda: _caught_up(pair))
        body = client.get(
            "/api/v1/coverage",
            headers=auth,
            query_string={"from": started.isoformat(), "to": asked_to.isoformat()},
        ).get_json()
        assert body["complete"] is True, body

        # Failover: the standby is promoted and the writer goes on there; the record's chain
        # continues from what was replayed, unbroken.
        _one(pair.standby, "SELECT pg_promote()")
        wait_for("the promotion", lambda: not _one(pair.standby, "SELECT pg_is_in_recovery()"))
        _store(Pair(pair.standby, pair.standby), "rep-1", "Completed", 2)
        with psycopg.connect(libpq_conninfo(pair.standby)) as conn:
            report = integrity.verify(conn, with_unsealed=False)
            conn.rollback()
        assert report.ok, report.problem
        assert report.checked == 3
        timeline = client.get("/api/v1/interactions/rep-1/timeline", headers=auth).get_json()
        assert [e["state"] for e in timeline["events"]] == ["Invited", "Processing", "Completed"]
    finally:
        dispose()


def test_a_malformed_read_database_url_is_one_error_naming_the_setting() -> None:
    environ = {"AUDITOR_DATABASE_URL": "postgresql://u@127.0.0.1/auditor"}
    assert Settings.from_env(environ).read_database_url is None
    standby = Settings.from_env({**environ, "AUDITOR_READ_DATABASE_URL": "postgresql://u@h2/a"})
    assert standby.read_database_url is not None
    assert standby.read_database_url.host == "h2"
    with pytest.raises(ConfigError, match="AUDITOR_READ_DATABASE_URL"):
        Settings.from_env({**environ, "AUDITOR_READ_DATABASE_URL": "mysql://u@h2/a"})
