"""Fenced leases with real workers: worker A is frozen (SIGSTOP) past its lease, worker B
takes its accounts, A is resumed (SIGCONT). Nothing A writes for those accounts after losing
the lease is stored (coverage, session log, snapshots are exactly as they were before the
resume), the coverage record has no overlap and no double claim, and every delivered
notification is stored."""

from __future__ import annotations

import itertools
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import URL

from tests.ingest.support import Sim, WorkerProcess, delivered_all_stored, query, wait_for
from tests.ingest.support import write_config as worker_config
from tests.simulator.support import fast_config

pytestmark = pytest.mark.slow
AGENTS = ["agent001", "agent002"]
LEASE = {"leases": True, "lease_ttl": 3, "lease_renew": 0.5}


def _fences_of(db: URL, worker: str) -> list[int]:
    rows = query(
        db,
        "SELECT DISTINCT fence FROM coverage_intervals WHERE worker_id = %s AND fence IS NOT NULL",
        (worker,),
    )
    return [int(r[0]) for r in rows]


def _written_under(db: URL, fences: list[int]) -> dict[str, list[tuple[Any, ...]]]:
    """Everything stored for the accounts under these lease fences."""
    return {
        "coverage": query(
            db,
            "SELECT id, account, started_at, heartbeat_at, ended_at, end_reason"
            " FROM coverage_intervals WHERE fence = ANY(%s) ORDER BY id",
            (fences,),
        ),
        "session_log": query(
            db, "SELECT id, event FROM session_log WHERE fence = ANY(%s) ORDER BY id", (fences,)
        ),
        "snapshots": query(
            db,
            "SELECT receipt_id FROM events WHERE kind = 'snapshot'"
            " AND (payload -> 'snapshot' ->> 'fence')::bigint = ANY(%s) ORDER BY id",
            (fences,),
        ),
    }


def _open_on(db: URL, worker: str) -> int:
    return int(
        query(
            db,
            "SELECT count(DISTINCT account) FROM coverage_intervals"
            " WHERE worker_id = %s AND ended_at IS NULL AND account = ANY(%s)",
            (worker, AGENTS),
        )[0][0]
    )


def test_a_worker_frozen_past_its_lease_writes_nothing_after_resuming(
    tmp_path: Path, fresh_db: URL
) -> None:
    truth = tmp_path / "truth.ndjson"
    config = fast_config(
        agents=2, rate=20, timeout_ms=1000, max_interval_ms=1500, ground_truth=truth
    )
    with Sim(config) as sim:
        a = WorkerProcess(
            worker_config(
                tmp_path / "a.toml", sim.url, AGENTS, tmp_path / "a.sqlite3", id="worker-a", **LEASE
            ),
            fresh_db,
            tmp_path / "a.log",
        ).start()
        b = WorkerProcess(
            worker_config(
                tmp_path / "b.toml", sim.url, AGENTS, tmp_path / "b.sqlite3", id="worker-b", **LEASE
            ),
            fresh_db,
            tmp_path / "b.log",
        )
        try:
            wait_for("A subscribed both", lambda: _open_on(fresh_db, "worker-a") == 2)
            wait_for(
                "A's snapshots stored",
                lambda: bool(
                    _written_under(fresh_db, _fences_of(fresh_db, "worker-a"))["snapshots"]
                ),
            )
            assert a.proc is not None
            os.kill(a.proc.pid, signal.SIGSTOP)  # the worker only: its drain process goes on
            b.start()
            wait_for("B subscribed both", lambda: _open_on(fresh_db, "worker-b") == 2)
            wait_for("A's intervals closed by B", lambda: _open_on(fresh_db, "worker-a") == 0)
            # The fences A lost; once back, A may get one account again by a new hand-over
            # (B gives back its surplus when it sees A alive): that one has a new fence.
            lost = _fences_of(fresh_db, "worker-a")
            before = _written_under(fresh_db, lost)
            os.kill(a.proc.pid, signal.SIGCONT)
            log_a = tmp_path / "a.log"
            wait_for(
                "A noticed it lost both leases",
                lambda: '"lost": ["agent001", "agent002"]' in log_a.read_text(),
            )
            assert a.terminate() == 0  # its last flush and drain are attempts too
            assert _written_under(fresh_db, lost) == before
            wait_for(
                "every delivered notification stored", lambda: delivered_all_stored(fresh_db, truth)
            )
            assert b.terminate() == 0
        finally:
            for worker in (a, b):
                if worker.proc is not None and worker.proc.poll() is None:
                    os.kill(worker.proc.pid, signal.SIGCONT)
                worker.ensure_dead()
    rows = query(
        fresh_db,
        "SELECT account, worker_id, started_at, coalesce(ended_at, heartbeat_at), ended_at"
        " FROM coverage_intervals ORDER BY account, started_at",
    )
    assert all(r[4] is not None for r in rows), "an interval was left open"
    for account in AGENTS:
        mine = [r for r in rows if r[0] == account]
        assert {r[1] for r in mine} == {"worker-a", "worker-b"}
        for earlier, later in itertools.pairwise(mine):
            assert earlier[3] <= later[2], f"overlap on {account}: {earlier} / {later}"
    fences = query(fresh_db, "SELECT DISTINCT worker_id, fence FROM coverage_intervals")
    by_fence: dict[int, set[str]] = {}
    for worker, fence in fences:
        by_fence.setdefault(fence, set()).add(worker)
    assert all(len(w) == 1 for w in by_fence.values()), f"a fence claimed twice: {fences}"
