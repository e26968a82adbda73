"""Reconciliation sweeps: a state change GWS never notified (the simulator's silent change) is
found by the next sweep, recorded as a snapshot event with a reason, and counted."""

from __future__ import annotations

import re
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from auditor.ingest.sweep import compare
from auditor.ports import free_port
from tests.ingest.support import (
    Sim,
    WorkerProcess,
    current_items,
    projected_states,
    query,
    subscribed_since,
    wait_for,
    write_config,
)

AGENTS = ["agent001", "agent002", "agent003"]


def _metric(port: int, name: str) -> float:
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


@pytest.mark.slow
def test_a_silent_state_change_is_recorded_by_the_next_sweep(
    tmp_path: Path, sim: Sim, fresh_db: URL
) -> None:
    port = free_port()
    config = write_config(
        tmp_path / "worker.toml",
        sim.url,
        AGENTS,
        tmp_path / "spool.sqlite3",
        metrics_port=port,
        sweep_interval=0.5,
    )
    process = WorkerProcess(config, fresh_db, tmp_path / "worker.log").start()
    try:
        start = datetime.now(UTC)
        wait_for("all sessions subscribed", lambda: subscribed_since(fresh_db, AGENTS, start))

        def paused_holding_an_item() -> bool:
            # The item seen before the pause may end before the pause lands: then try again.
            sim.control("pause")
            if current_items(sim.url, "agent001"):
                return True
            sim.control("resume")
            return False

        wait_for("agent001 paused while holding an item", paused_holding_an_item)
        wait_for(
            "the projection to settle",
            lambda: all(
                projected_states(fresh_db, "agent001").get(i) == s
                for i, s in current_items(sim.url, "agent001").items()
            ),
        )
        [(item, state), *_] = current_items(sim.url, "agent001").items()
        drifted = "Processing" if state != "Processing" else "Invited"
        sim.control("silent", {"agent": "agent001", "item": item, "state": drifted})

        def recorded() -> bool:
            rows = query(
                fresh_db,
                "SELECT payload -> 'snapshot' ->> 'reason' FROM events"
                " WHERE kind = 'snapshot' AND interaction_id = %s AND account = 'agent001'"
                " AND (payload -> 'snapshot' ->> 'sweep')::boolean AND state = %s",
                (item, drifted),
            )
            return bool(rows) and all(f"GWS says {drifted!r}" in r[0] for r in rows)

        wait_for("the sweep to record the drift", recorded, timeout=30)
        wait_for(
            "the projection to follow",
            lambda: projected_states(fresh_db, "agent001")[item] == drifted,
        )
        assert _metric(port, 'auditor_sweep_differences_total{kind="state"}') >= 1
        assert process.terminate() == 0
    finally:
        process.ensure_dead()


def test_compare_names_each_kind_of_difference() -> None:
    listed = [
        {"id": "same", "state": "Processing"},
        {"id": "drift", "state": "Processing"},
        {"id": "new", "state": "Invited"},
        {"id": "newer-than-get", "state": "Invited"},
    ]
    projected: dict[str, tuple[str | None, bool]] = {
        "same": ("Processing", True),
        "drift": ("Invited", True),
        "newer-than-get": ("Completed", False),
        "gone": ("Processing", True),
        "gone-but-new": ("Processing", False),
        "closed": ("Completed", True),
    }
    found = {(d.kind, d.item["id"]) for d in compare("agent001", listed, projected)}
    assert found == {("state", "drift"), ("unknown", "new"), ("absent", "gone")}
