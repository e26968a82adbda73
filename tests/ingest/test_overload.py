"""Overload: admission control, a shared failure budget, saturation reported, and SIGTERM in
time whatever the state. The worker is a real subprocess against the real simulator and a
real PostgreSQL; every wait is on a condition (the simulator's counters, the database)."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import URL

from auditor.ports import free_port
from auditor.simulator.config import agent_names
from tests.ingest.support import Sim, query, wait_for, worker_process, write_config
from tests.simulator.support import fast_config

pytestmark = pytest.mark.slow


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (127.0.0.1)
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def open_accounts(db: URL, since: datetime | None = None) -> set[str]:
    rows = query(
        db,
        "SELECT DISTINCT account FROM coverage_intervals WHERE ended_at IS NULL"
        " AND started_at > %s",
        (since or datetime(2000, 1, 1, tzinfo=UTC),),
    )
    return {r[0] for r in rows}


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match is not None, name
    return float(match.group(1))


def test_accounts_beyond_max_sessions_are_gaps_with_a_reason_and_held_sessions_never_fall(
    tmp_path: Path, fresh_db: URL
) -> None:
    agents = agent_names(12)
    port = free_port()
    config = fast_config(agents=12, rate=40, timeout_ms=500, max_interval_ms=1500)
    with Sim(config) as sim:
        path = write_config(
            tmp_path / "worker.toml",
            sim.url,
            agents,
            tmp_path / "spool.sqlite3",
            max_sessions=8,
            metrics_port=port,
        )
        with worker_process(path, fresh_db, tmp_path / "worker.log") as worker:
            wait_for("8 sessions subscribed", lambda: len(open_accounts(fresh_db)) == 8)
            held = open_accounts(fresh_db)
            # Watch the held sessions through six long-poll cycles each (and the waiting
            # accounts' admission rounds meanwhile): none may fall.
            start = sim.stats()["connects"]
            lowest = len(held)
            while sim.stats()["connects"] - start < 6 * len(held):
                now_open = open_accounts(fresh_db)
                lowest = min(lowest, len(now_open & held))
                time.sleep(0.05)
            assert lowest == 8
            assert open_accounts(fresh_db) == held
            left_out = set(agents) - held

            def logged() -> dict[str, str]:
                rows = query(
                    fresh_db, "SELECT account, detail FROM session_log WHERE event = 'not_served'"
                )
                return {str(a): str(d) for a, d in rows}

            wait_for("every account left out logged", lambda: set(logged()) == left_out)
            assert all("max_sessions (8) reached" in d for d in logged().values())
            never = query(
                fresh_db,
                "SELECT count(*) FROM coverage_intervals WHERE account = ANY(%s)",
                (sorted(left_out),),
            )
            assert never[0][0] == 0  # a gap: never covered

            status, text = get(f"http://127.0.0.1:{port}/readyz")
            body: dict[str, Any] = json.loads(text)
            assert status == 503
            assert any(p.startswith("saturated: not served") for p in body["problems"])
            assert set(body["not_subscribed"]) == left_out
            assert all("max_sessions" in r for r in body["not_subscribed"].values())
            assert body["states"]["subscribed"] == 8
            status, text = get(f"http://127.0.0.1:{port}/metrics")
            assert metric(text, "auditor_saturated") == 1.0
            assert metric(text, "auditor_sessions_connected") == 8.0
            assert worker.terminate() == 0


def test_all_sessions_dropped_at_once_come_back_in_time_without_a_storm(
    tmp_path: Path, fresh_db: URL
) -> None:
    count, rate = 150, 50.0
    agents = agent_names(count)
    port = free_port()
    config = fast_config(agents=count, rate=0, timeout_ms=1000, max_interval_ms=3000)
    with Sim(config) as sim:
        path = write_config(
            tmp_path / "worker.toml",
            sim.url,
            agents,
            tmp_path / "spool.sqlite3",
            setup_rate=rate,
            max_setups=10,
            metrics_port=port,
        )
        with worker_process(path, fresh_db, tmp_path / "worker.log") as worker:
            wait_for("all subscribed", lambda: len(open_accounts(fresh_db)) == count, 90)
            wait_for("ready", lambda: get(f"http://127.0.0.1:{port}/readyz")[0] == 200, 30)
            before = sim.stats()
            dropped_at = datetime.now(UTC)
            started = time.monotonic()
            # At least one per account (a session replaced under load may still linger).
            assert sim.control("restart")["sessions_lost"] >= count
            peak = 0.0
            while len(open_accounts(fresh_db, dropped_at)) < count:
                # Stated bound: the set-up rate's time for every account, plus 30 s.
                assert time.monotonic() - started < count / rate + 30, "not back in time"
                _, text = get(f"http://127.0.0.1:{port}/metrics")
                peak = max(peak, metric(text, "auditor_setups_in_progress"))
                time.sleep(0.2)
            after = sim.stats()
            # No storm: about one handshake per account, never more than max_setups at once.
            assert after["handshakes"] - before["handshakes"] <= 1.5 * count
            assert peak <= 10
            status, text = get(f"http://127.0.0.1:{port}/readyz")
            assert status == 200, text
            assert json.loads(text)["states"]["subscribed"] == count
            assert get(f"http://127.0.0.1:{port}/healthz")[0] == 200
            assert worker.terminate() == 0


def test_sigterm_under_overload_ends_the_worker_within_shutdown_timeout(
    tmp_path: Path, fresh_db: URL
) -> None:
    count = 120
    agents = agent_names(count)
    config = fast_config(agents=count, rate=20, timeout_ms=1000, max_interval_ms=3000)
    with Sim(config) as sim:
        path = write_config(
            tmp_path / "worker.toml",
            sim.url,
            agents,
            tmp_path / "spool.sqlite3",
            setup_rate=10,
            max_setups=4,
            shutdown_timeout=4,
        )
        with worker_process(path, fresh_db, tmp_path / "worker.log") as worker:
            wait_for("some sessions subscribed", lambda: len(open_accounts(fresh_db)) >= 10)
            # Overloaded: most accounts queue for admission, and now every response stalls
            # (held long-polls, logins and handshakes in flight hang).
            sim.control("stall", {"seconds": 8})
            assert worker.proc is not None
            started = time.monotonic()
            worker.proc.send_signal(15)
            code = worker.proc.wait(30)
            took = time.monotonic() - started
            assert took <= 4.0 + 0.5, took
            assert code == 0
        wait_for("the stall is over", lambda: sim.stats()["stall_remaining"] == 0, 15)


def test_sessions_beyond_polite_disconnects_close_without_the_disconnect_message(
    tmp_path: Path, fresh_db: URL
) -> None:
    # Thousands of /meta/disconnect at once overran the shutdown's budget on a busy loop:
    # beyond polite_disconnects a session closes its socket only, and still ends its interval.
    count = 6
    agents = agent_names(count)
    with Sim(fast_config(agents=count)) as sim:
        path = write_config(
            tmp_path / "worker.toml",
            sim.url,
            agents,
            tmp_path / "spool.sqlite3",
            polite_disconnects=2,
        )
        with worker_process(path, fresh_db, tmp_path / "worker.log") as worker:
            wait_for("every session subscribed", lambda: len(open_accounts(fresh_db)) == count)
            assert worker.terminate() == 0
        assert sim.stats()["disconnects"] == 2
    rows = query(fresh_db, "SELECT ended_at IS NOT NULL, end_reason FROM coverage_intervals")
    assert len(rows) == count
    assert set(rows) == {(True, "shutdown")}
