"""Scale-out: two workers share six accounts 3 + 3; when one is SIGKILLed the other holds all
six within 30 s, and coverage shows the hand-over."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from tests.ingest.support import Sim, WorkerProcess, query, wait_for, write_config
from tests.simulator.support import fast_config

pytestmark = pytest.mark.slow
SIX = [f"agent00{i}" for i in range(1, 7)]


def _held(db: URL) -> dict[str, int]:
    rows = query(
        db,
        "SELECT worker_id, count(*) FROM account_leases WHERE expires_at > now()"
        " AND account NOT LIKE '~worker/%%' GROUP BY worker_id",
    )
    return dict(rows)


def test_two_workers_split_accounts_and_the_survivor_takes_over(
    tmp_path: Path, fresh_db: URL
) -> None:
    with Sim(fast_config(agents=6, rate=30, timeout_ms=1000, max_interval_ms=1500)) as sim:
        workers: list[WorkerProcess] = []
        try:
            for name in ("a", "b"):
                config = write_config(
                    tmp_path / f"{name}.toml",
                    sim.url,
                    SIX,
                    tmp_path / f"{name}.sqlite3",
                    leases=True,
                    lease_ttl=4,
                    lease_renew=0.5,
                    id=f"worker-{name}",
                )
                workers.append(WorkerProcess(config, fresh_db, tmp_path / f"{name}.log").start())
                if name == "a":  # b starts while a holds everything: a must give back its surplus
                    wait_for(
                        "a holds all six", lambda: _held(fresh_db), until={"worker-a": 6}.__eq__
                    )
            wait_for(
                "3 + 3",
                lambda: _held(fresh_db),
                30,
                until={"worker-a": 3, "worker-b": 3}.__eq__,
            )
            wait_for(
                "six subscribed sessions",
                lambda: (
                    query(
                        fresh_db,
                        "SELECT count(DISTINCT account) FROM coverage_intervals"
                        " WHERE ended_at IS NULL",
                    )[0][0]
                    == 6
                ),
            )
            victim = {
                r[0]
                for r in query(
                    fresh_db, "SELECT account FROM account_leases WHERE worker_id = 'worker-a'"
                )
            } - {"~worker/worker-a"}
            workers[0].kill()
            killed_at = time.monotonic()
            wait_for("b holds all six", lambda: _held(fresh_db), 30, until={"worker-b": 6}.__eq__)
            assert time.monotonic() - killed_at < 30
            wait_for(
                "b subscribed the taken accounts",
                lambda: (
                    query(
                        fresh_db,
                        "SELECT count(DISTINCT account) FROM coverage_intervals"
                        " WHERE worker_id = 'worker-b' AND ended_at IS NULL",
                    )[0][0]
                    == 6
                ),
            )
            assert workers[1].terminate() == 0
        finally:
            for worker in workers:
                worker.ensure_dead()
    rows = query(
        fresh_db,
        "SELECT account, worker_id, end_reason FROM coverage_intervals"
        " WHERE account = ANY(%s) ORDER BY started_at",
        (sorted(victim),),
    )
    for account in victim:
        mine = [(w, r) for a, w, r in rows if a == account]
        assert ("worker-a", "worker lost (heartbeat stopped)") in mine, mine
        assert ("worker-b", "shutdown") in mine, mine
