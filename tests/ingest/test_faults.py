"""The worker as a real subprocess against the simulator and a real PostgreSQL: what is stored
equals the ground truth (0 missing, 0 duplicated) under each fault, losses the protocol makes
unavoidable fall inside coverage gaps, and snapshots restore each item's current state."""

from __future__ import annotations

import os
import signal
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from auditor.ports import free_port
from tests.ingest.support import (
    Sim,
    WorkerProcess,
    alive,
    compare,
    current_items,
    notifications_per_account,
    projected_states,
    query,
    stream_on_and_settle,
    subscribed_since,
    wait_for,
    write_config,
)

AGENTS = ["agent001", "agent002", "agent003"]
# Notifications stored per agent before the fault and after it (at 20/s per agent): together
# more than the 100 delivered that every run must see.
BEFORE, AFTER = 20, 15

pytestmark = pytest.mark.slow


def run_with_fault(
    tmp_path: Path,
    sim: Sim,
    db: URL,
    fault: Callable[[WorkerProcess], WorkerProcess],
    renewed: list[str] | None = AGENTS,
    transport: str = "long-polling",
    **worker: object,
) -> None:
    config = write_config(
        tmp_path / "worker.toml",
        sim.url,
        AGENTS,
        tmp_path / "spool.sqlite3",
        transport,
        **worker,
    )
    process = WorkerProcess(config, db, tmp_path / "worker.log").start()
    try:
        start = datetime.now(UTC)
        wait_for("all sessions subscribed", lambda: subscribed_since(db, AGENTS, start))
        # Mid-stream: every agent's notifications are flowing into the store.
        wait_for(
            f"{BEFORE} notifications stored for every agent",
            lambda: notifications_per_account(db, AGENTS),
            until=lambda stored: min(stored.values()) >= BEFORE,
        )
        before_fault = datetime.now(UTC)
        process = fault(process)
        wait_for(
            "sessions back after the fault",
            lambda: subscribed_since(db, renewed or AGENTS, before_fault if renewed else start),
            timeout=60,
        )
        truth = stream_on_and_settle(db, sim, AGENTS, AFTER, fault="fault")
        assert process.terminate() == 0
    finally:
        process.ensure_dead()
    states = {agent: current_items(sim.url, agent) for agent in AGENTS}
    sim.__exit__(None, None, None)  # flush and close the ground truth
    result = compare(db, truth)
    assert result.delivered > 100
    assert (result.missing, result.duplicated, result.unexpected) == (0, 0, 0), result
    assert result.undeliverable_stored == 0, result
    assert result.undeliverable_covered == 0, result  # every loss lies inside a gap
    for agent, items in states.items():
        projected = projected_states(db, agent)
        assert {i: projected.get(i) for i in items} == items, agent
        # Nothing the gap hid stays "active": items gone meanwhile are Completed or Absent.
        active = {i for i, state in projected.items() if state not in ("Completed", "Absent")}
        assert active <= set(items), agent


def test_without_faults_every_delivered_notification_is_stored_once(
    tmp_path: Path, sim: Sim, fresh_db: URL
) -> None:
    run_with_fault(tmp_path, sim, fresh_db, lambda p: p, renewed=None)


def test_worker_sigkilled_mid_stream_then_restarted_loses_nothing_delivered(
    tmp_path: Path, sim: Sim, fresh_db: URL
) -> None:
    def kill_and_restart(process: WorkerProcess) -> WorkerProcess:
        drain = process.children()
        assert drain, "the worker runs its drain in a child process"
        process.kill()
        # The drain process sees its stdin close and exits after at most one batch.
        wait_for("the drain process to exit", lambda: not any(alive(p) for p in drain), 15)
        return WorkerProcess(process.config, process.db, process.log_path).start()

    run_with_fault(tmp_path, sim, fresh_db, kill_and_restart)
    reasons = query(fresh_db, "SELECT end_reason FROM coverage_intervals")
    assert ("worker lost (heartbeat stopped)",) in reasons


def test_drain_process_killed_mid_stream_is_restarted_and_loses_nothing(
    tmp_path: Path, sim: Sim, fresh_db: URL
) -> None:
    def kill_drain(process: WorkerProcess) -> WorkerProcess:
        [drain] = process.children()
        os.kill(drain, signal.SIGKILL)
        wait_for("a new drain process", lambda: [p for p in process.children() if p != drain])
        return process

    run_with_fault(tmp_path, sim, fresh_db, kill_drain, renewed=None)
    log = (tmp_path / "worker.log").read_text()
    assert "drain process exited; restarting" in log


def test_simulator_restart_rehandshakes_and_snapshots(
    tmp_path: Path, sim: Sim, fresh_db: URL
) -> None:
    run_with_fault(tmp_path, sim, fresh_db, lambda p: (sim.control("restart"), p)[1])
    events = {r[0] for r in query(fresh_db, "SELECT event FROM session_log")}
    assert {"login", "handshake", "subscribed", "rehandshake", "snapshot"} <= events


def test_expired_session_402_is_rehandshaken(tmp_path: Path, sim: Sim, fresh_db: URL) -> None:
    run_with_fault(
        tmp_path,
        sim,
        fresh_db,
        lambda p: (sim.control("expire", {"agent": "agent002"}), p)[1],
        renewed=["agent002"],
    )
    # agent002 alone had a gap: two intervals, the first ended by the 402.
    rows = query(
        fresh_db,
        "SELECT account, count(*) FROM coverage_intervals GROUP BY account ORDER BY account",
    )
    assert dict(rows)["agent002"] >= 2


def test_network_stall_longer_than_the_long_poll_timeout(
    tmp_path: Path, sim: Sim, fresh_db: URL
) -> None:
    run_with_fault(tmp_path, sim, fresh_db, lambda p: (sim.control("stall", {"seconds": 4}), p)[1])


def test_websocket_transport_stores_every_delivered_notification(
    tmp_path: Path, sim: Sim, fresh_db: URL
) -> None:
    run_with_fault(tmp_path, sim, fresh_db, lambda p: p, renewed=None, transport="websocket")


def test_sigint_closes_intervals_and_metrics_are_served(
    tmp_path: Path, sim: Sim, fresh_db: URL
) -> None:
    port = free_port()
    config = write_config(
        tmp_path / "w.toml", sim.url, AGENTS, tmp_path / "s.sqlite3", metrics_port=port
    )
    process = WorkerProcess(config, fresh_db, tmp_path / "worker.log").start()
    try:
        start = datetime.now(UTC)
        wait_for("subscribed", lambda: subscribed_since(fresh_db, AGENTS, start))

        def metrics() -> dict[str, float]:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as response:
                text = response.read().decode()
            values: dict[str, float] = {}
            for line in text.splitlines():
                if line and not line.startswith("#"):
                    name = line.split("{")[0].split()[0]
                    values[name] = values.get(name, 0.0) + float(line.split()[-1])
            return values

        wait_for("received and stored", lambda: metrics().get("auditor_stored_total", 0) > 20)
        values = metrics()
        assert values["auditor_sessions_connected"] == 3
        assert (
            values["auditor_received_total"] + values["auditor_snapshot_items_total"]
            >= values["auditor_stored_total"]
        )
        assert values["auditor_spool_depth"] >= 0
        assert process.proc is not None
        process.proc.send_signal(signal.SIGINT)
        assert process.proc.wait(30) == 0
    finally:
        process.ensure_dead()
    rows = query(fresh_db, "SELECT ended_at IS NOT NULL, end_reason FROM coverage_intervals")
    assert rows == [(True, "shutdown")] * 3


def test_expired_http_session_and_cometd_session_recover_without_loss(
    tmp_path: Path, sim: Sim, fresh_db: URL
) -> None:
    run_with_fault(
        tmp_path,
        sim,
        fresh_db,
        lambda p: (sim.control("expire", {"agent": "agent003", "http": True}), p)[1],
        renewed=["agent003"],
    )
