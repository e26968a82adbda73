"""Failover with a worker running: a primary and a streaming standby from the embedded
binaries, a real worker (the writer's login) against the simulator whose database URL names
both hosts with target_session_attrs=read-write. The primary dies while the standby is
behind, the standby is promoted, the worker finds it by itself and drains its spool there.

Synchronous replication is what makes "nothing lost" hold: a commit the standby does not have
is never acknowledged, so the worker keeps it in its spool. The asynchronous case is tested
too, to show what it loses (docs/scale.md, "Failover")."""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import URL

from auditor.config import libpq_conninfo, parse_database_url
from auditor.errors import ConfigError
from auditor.pgserver import EmbeddedPostgres
from auditor.store import schema
from tests.ingest.support import (
    Comparison,
    Sim,
    WorkerProcess,
    canonical,
    compare,
    ground_truth,
    notifications_per_account,
    parse_ts,
    query,
    stored,
    stream_on_and_settle,
    subscribed_since,
    wait_for,
    write_config,
)
from tests.ingest.test_faults import AFTER, AGENTS, BEFORE
from tests.ingest.test_postgres_outage import spooled
from tests.logins import create_logins


@dataclass
class Cluster:
    primary: EmbeddedPostgres
    standby: EmbeddedPostgres
    both: URL  # the multi-host URL the worker and the test use: whichever is the primary

    def stored_on_primary(self) -> int:
        url = parse_database_url(self.primary.url("auditor"))
        return int(query(url, "SELECT count(*) FROM events")[0][0])


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    # Not under pytest's tmp_path: the server's own user must reach the directory.
    base = Path(tempfile.mkdtemp(prefix="auditor-test-failover-"))
    primary = EmbeddedPostgres(base / "primary", durable=False).start()
    standby: EmbeddedPostgres | None = None
    try:
        admin = parse_database_url(primary.url("postgres"))
        with psycopg.connect(libpq_conninfo(admin), autocommit=True) as conn:
            conn.execute("CREATE DATABASE auditor")
        engine = create_engine(admin.set(database="auditor"), poolclass=pool.NullPool)
        with engine.begin() as connection:
            schema.upgrade(connection)
        engine.dispose()
        create_logins(admin.set(database="auditor"))
        standby = primary.start_standby(base / "standby")
        # libpq's own multi-host form, as docs/scale.md tells operators to write it.
        both = parse_database_url(
            f"postgresql://postgres@127.0.0.1:{primary.port},127.0.0.1:{standby.port}"
            "/auditor?target_session_attrs=read-write"
        )
        yield Cluster(primary, standby, both)
    finally:
        for server in (standby, primary):
            if server is not None and server.is_running():
                server.stop()
        shutil.rmtree(base, ignore_errors=True)


def _fail_over_while_the_standby_is_behind(
    tmp_path: Path, sim: Sim, cluster: Cluster, synchronous: bool
) -> tuple[Comparison, str]:
    if synchronous:
        cluster.primary.make_synchronous(cluster.standby)
    db = cluster.both
    spool = tmp_path / "spool.sqlite3"
    config = write_config(tmp_path / "worker.toml", sim.url, AGENTS, spool)
    process = WorkerProcess(config, db, tmp_path / "worker.log").start()
    try:
        start = datetime.now(UTC)
        wait_for("all sessions subscribed", lambda: subscribed_since(db, AGENTS, start))
        wait_for(
            f"{BEFORE} notifications stored for every agent",
            lambda: notifications_per_account(db, AGENTS),
            until=lambda stored: min(stored.values()) >= BEFORE,
        )
        # The standby falls behind (stopped: it receives nothing), traffic goes on.
        cluster.standby.stop()
        if synchronous:
            # Commits wait for the standby: what arrives stays in the spool.
            wait_for(
                "notifications held in the spool", lambda: spooled(spool), until=lambda n: n >= 20
            )
        else:
            # The primary acknowledges commits the standby will never see.
            stored = cluster.stored_on_primary()
            wait_for(
                "commits the standby does not have",
                cluster.stored_on_primary,
                until=lambda n: n >= stored + 20,
            )
        cluster.primary.kill()  # the primary dies (SIGKILL, as a crash)
        cluster.standby.start()  # comes back as a standby with what it had...
        cluster.standby.promote()  # ...and is promoted: the worker must find it by itself
        truth = stream_on_and_settle(
            db, sim, AGENTS, AFTER, fault="failover", all_stored=synchronous
        )
        wait_for("the spool drained", lambda: spooled(spool), until=lambda n: n == 0)
        assert process.terminate() == 0
    finally:
        process.ensure_dead()
    sim.__exit__(None, None, None)  # flush and close the ground truth
    return compare(db, truth), (tmp_path / "worker.log").read_text()


@pytest.mark.slow
def test_with_a_synchronous_standby_the_worker_fails_over_and_loses_nothing(
    tmp_path: Path, sim: Sim, cluster: Cluster
) -> None:
    result, log = _fail_over_while_the_standby_is_behind(tmp_path, sim, cluster, True)
    assert result.delivered > 100
    assert (result.missing, result.duplicated, result.unexpected) == (0, 0, 0), result
    assert "PostgreSQL unavailable" in log
    assert "PostgreSQL reachable again" in log
    # The stored events are on the promoted standby, the only server left.
    promoted = parse_database_url(cluster.standby.url("auditor"))
    assert query(promoted, "SELECT pg_is_in_recovery()") == [(False,)]


@pytest.mark.slow
def test_with_an_asynchronous_standby_a_failover_loses_acknowledged_commits(
    tmp_path: Path, sim: Sim, cluster: Cluster
) -> None:
    result, _ = _fail_over_while_the_standby_is_behind(tmp_path, sim, cluster, False)
    # Acknowledged by the old primary, gone from the worker's spool, never replicated.
    assert result.missing >= 20, result
    assert (result.duplicated, result.unexpected) == (0, 0), result
    # And coverage does not show it: the sessions stayed up, so the worker's heartbeat on the
    # new primary extends intervals over the time whose events were lost.
    assert sim.config.ground_truth is not None
    lost = _lost(cluster.both, sim.config.ground_truth)
    assert len(lost) == result.missing
    intervals = query(
        cluster.both,
        "SELECT account, started_at, coalesce(ended_at, heartbeat_at) FROM coverage_intervals",
    )
    assert all(any(a == agent and s <= at < e for a, s, e in intervals) for agent, at in lost)


def _lost(db: URL, truth_path: Path) -> list[tuple[str, datetime]]:
    """(agent, generated at) of every delivered notification not stored."""
    truth = [t for t in ground_truth(truth_path) if t["status"] == "delivered"]
    missing = Counter((t["agent"], canonical(t["message"])) for t in truth) - stored(db)
    lost = []
    for t in truth:
        key = (t["agent"], canonical(t["message"]))
        if missing[key] > 0:  # a message delivered twice and stored once is one loss
            missing[key] -= 1
            lost.append((t["agent"], parse_ts(t["generated_at"])))
    return lost


def test_a_multi_host_database_url_reaches_libpq_as_host_and_port_lists() -> None:
    url = parse_database_url(
        "postgresql://w:pw@db1:5432,db2/auditor?target_session_attrs=read-write"
    )
    assert psycopg.conninfo.conninfo_to_dict(libpq_conninfo(url)) == {
        "user": "w",
        "password": "pw",
        "dbname": "auditor",
        "host": "db1,db2",
        "port": "5432,",
        "target_session_attrs": "read-write",
    }
    with pytest.raises(ConfigError, match=r"AUDITOR_DATABASE_URL.*port"):
        parse_database_url("postgresql://w@db1:x,db2/auditor")
    with pytest.raises(ConfigError, match=r"AUDITOR_DATABASE_URL.*empty host"):
        parse_database_url("postgresql://w@db1,:5432/auditor")
