"""Fair-share leasing in-process, on the real PostgreSQL as the writer's login: each worker's
tick runs in a transaction of its own that commits (as the worker's lease task does), so
lease expiry and hand-over follow the database's clock. Two Leases objects stand for two
workers; the lease task applies what each committed tick decided to a recording set of
sessions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import URL

from auditor.config import libpq_conninfo, parse_database_url
from auditor.ingest.config import Account, WorkerConfig
from auditor.ingest.coverage import Coverage
from auditor.ingest.lease_task import LeaseTask
from auditor.ingest.leases import PRESENCE, Changes, Leases, PgLeaseStorage, fair_share
from auditor.ingest.metrics import Metrics
from auditor.store import leases as lease_sql
from auditor.store.leases import BusyLease
from tests.inprocess.fakes import FakeClock

ACCOUNTS = [f"agent{i:03d}" for i in range(1, 7)]
Conn = psycopg.Connection[Any]


@pytest.fixture
def connect(fresh_db: URL, login_url: Callable[[URL, str], URL]) -> Iterator[Callable[[], Conn]]:
    opened: list[Conn] = []

    def open_() -> Conn:
        conn = psycopg.connect(libpq_conninfo(login_url(fresh_db, "writer")))
        opened.append(conn)
        return conn

    yield open_
    for conn in opened:
        conn.close()


def _tick(leases: Leases, conn: Conn) -> Changes:
    """What the lease task does each round: one transaction, then apply."""
    with conn.transaction():
        changes = leases.tick(PgLeaseStorage(conn))
    leases.applied(changes)
    return changes


def _expire(conn: Conn, worker: str) -> None:
    """The lease TTL passing for a worker that stopped renewing (it froze)."""
    with conn.transaction():
        conn.execute(
            "UPDATE account_leases SET expires_at = now() - interval '1 second'"
            " WHERE worker_id = %s",
            (worker,),
        )


def test_the_share_is_the_accounts_over_the_live_workers_capped_by_max_sessions() -> None:
    assert fair_share(6, 1) == 6
    assert fair_share(6, 2) == 3
    assert fair_share(7, 2) == 4
    assert fair_share(7, 3) == 3
    assert fair_share(10, 1, max_sessions=4) == 4
    assert fair_share(10, 4, max_sessions=4) == 3


def test_a_newcomer_gets_its_fair_share_and_the_survivor_takes_over_a_frozen_worker(
    connect: Callable[[], Conn], fresh_db: URL
) -> None:
    w1, w2 = Leases("w1", ACCOUNTS, 15), Leases("w2", ACCOUNTS, 15)
    c1, c2 = connect(), connect()

    alone = _tick(w1, c1)
    assert alone.gained == set(ACCOUNTS)
    first_fences = dict(w1.fences)
    assert len(set(first_fences.values())) == 6

    arriving = _tick(w2, c2)  # w1 holds everything and is alive: nothing to take yet
    assert not arriving
    assert w2.held == set()

    giving = _tick(w1, c1)  # w1 sees w2's presence: share 3, the surplus goes back
    assert len(giving.released) == 3
    assert w1.held == set(ACCOUNTS) - giving.released
    assert set(w1.fences) == w1.held

    taking = _tick(w2, c2)
    assert taking.gained == giving.released
    for account in taking.gained:  # a hand-over: a new, higher token
        assert w2.fences[account] > first_fences[account]
    assert w1.held.isdisjoint(w2.held)

    steady = [_tick(w1, c1), _tick(w2, c2)]
    assert not any(steady)  # renewals keep everything and every token
    assert w2.fences == {a: w2.fences[a] for a in taking.gained}

    _expire(c1, "w1")  # w1 froze past its leases
    survivor = _tick(w2, c2)
    assert survivor.gained == w1.held
    assert w2.held == set(ACCOUNTS)
    back = _tick(w1, c1)  # w1 resumes: it learns it lost them and takes nothing
    assert back.lost == set(survivor.gained)
    assert not back.gained
    assert w1.held == set()
    with psycopg.connect(libpq_conninfo(fresh_db)) as owner:
        holders: dict[str, str] = dict(
            owner.execute(
                "SELECT account, worker_id FROM account_leases WHERE account NOT LIKE %s",
                (PRESENCE + "%",),
            ).fetchall()
        )
    assert holders == dict.fromkeys(ACCOUNTS, "w2")


def test_a_lease_its_holder_is_writing_under_is_skipped_not_waited_for(
    connect: Callable[[], Conn], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lease_sql, "CLAIM_LOCK_TIMEOUT", "50ms")  # 2 s in production
    w1, w2 = Leases("w1", ACCOUNTS[:1], 15), Leases("w2", ACCOUNTS[:1], 15)
    c1, c2 = connect(), connect()
    _tick(w1, c1)
    _expire(c1, "w1")
    # w1 writes a coverage row under its token: the fence check holds the lease row's lock
    # until w1's transaction ends (a worker frozen inside a flush).
    c1.execute(
        "INSERT INTO coverage_intervals (account, worker_id, channels, started_at,"
        " heartbeat_at, fence) VALUES (%s, 'w1', '{/c}', now(), now(), %s)",
        (ACCOUNTS[0], w1.fences[ACCOUNTS[0]]),
    )
    with pytest.raises(BusyLease), c2.transaction():
        PgLeaseStorage(c2).try_claim(ACCOUNTS[0], "w2", 15)
    assert not _tick(w2, c2)  # the tick goes on without it
    c1.rollback()
    assert _tick(w2, c2).gained == {ACCOUNTS[0]}


class _Sessions:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def start_account(self, name: str) -> None:
        self.calls.append(("start", name))

    async def stop_account(self, name: str, reason: str) -> None:
        self.calls.append(("stop", f"{name}: {reason}"))


def test_the_lease_task_applies_a_tick_to_the_sessions_and_the_coverage_fences(
    tmp_path: Path,
) -> None:
    config = WorkerConfig(
        database_url=parse_database_url("postgresql://u@localhost/db"),
        base_url="http://127.0.0.1:1",
        accounts=tuple(Account(a, "pw") for a in ACCOUNTS),
        spool_path=tmp_path / "unused.sqlite3",
        worker_id="w1",
    )
    coverage, sessions = Coverage("w1"), _Sessions()
    task = LeaseTask(config, coverage, Metrics(), sessions, FakeClock())
    changes = Changes(
        gained={"agent003"}, lost={"agent001"}, released={"agent002"}, fences={"agent003": 9}
    )
    asyncio.run(task.apply(changes))
    assert sessions.calls == [
        ("stop", "agent001: lease lost"),
        ("stop", "agent002: lease released (fair share)"),
        ("start", "agent003"),
    ]
    assert coverage.fences == {"agent003": 9}
    events = [(op.account, op.event, op.detail) for op in coverage._ops]  # type: ignore[union-attr]
    assert events == [
        ("agent001", "lease_lost", None),
        ("agent002", "lease_released", None),
        ("agent003", "lease_acquired", "fence 9"),
    ]
