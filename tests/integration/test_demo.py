"""`make demo` stays true: the whole system comes up, records live traffic, and stops cleanly."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

AUDITOR = str(Path(sys.executable).with_name("auditor"))


def run_demo(data_dir: Path, seconds: int) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITOR_")}
    env["COLUMNS"] = "200"
    return subprocess.run(
        [AUDITOR, "demo", "--seconds", str(seconds), "--data-dir", str(data_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.mark.slow
def test_demo_runs_postgres_simulator_worker_and_api_then_stops_cleanly(tmp_path: Path) -> None:
    result = run_demo(tmp_path / "demo", seconds=3)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "bundled sample: 232 new events" in out
    assert "Timeline of interaction" in out
    token = re.search(r"export TOKEN=(\S+)", out)
    url = re.search(r"export AUDITOR_DATABASE_URL=(\S+)", out)
    assert token
    assert url
    assert "stopping the worker" in out
    assert "PostgreSQL stopped" in out
    assert "Traceback" not in result.stderr
    # The data stays; a second run starts the same cluster again and finds the sample stored.
    again = run_demo(tmp_path / "demo", seconds=1)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "bundled sample: 0 new events" in again.stdout
    live = re.search(r"export AUDITOR_DATABASE_URL=(\S+)", again.stdout)
    assert live
    assert not _reachable(live.group(1)), "the demo's PostgreSQL must be stopped on exit"


def _reachable(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False
