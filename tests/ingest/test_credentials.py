"""Wrong credentials: reported (session_log, log line), retried slowly, the other accounts
unaffected; no password ever appears in the logs."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from tests.ingest.support import (
    PASSWORD,
    Sim,
    WorkerProcess,
    notifications_per_account,
    query,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.slow
WRONG = "Wr0ng-Pa55word-4711"


def test_bad_credentials_are_reported_and_retried_without_disturbing_others(
    tmp_path: Path, sim: Sim, fresh_db: URL
) -> None:
    config = write_config(
        tmp_path / "w.toml", sim.url, ["agent001", "agent002"], tmp_path / "spool.sqlite3"
    )
    text = config.read_text() + '\n[[accounts]]\nname = "agent003"\npassword_env = "GWS_BAD"\n'
    config.write_text(text)
    process = WorkerProcess(config, fresh_db, tmp_path / "worker.log", {"GWS_BAD": WRONG})
    process.start()
    try:
        wait_for(
            "two login failures and two sessions",
            lambda: (
                query(
                    fresh_db,
                    "SELECT (SELECT count(*) FROM session_log WHERE account = 'agent003'"
                    " AND event = 'login_failed'),"
                    " (SELECT count(DISTINCT account) FROM coverage_intervals)",
                )[0]
                == (2, 2)
            ),
        )
        wait_for(
            "notifications stored for both good accounts",
            lambda: notifications_per_account(fresh_db, ["agent001", "agent002"]),
            until=lambda stored: min(stored.values()) > 0,
        )
        assert process.terminate() == 0
    finally:
        process.ensure_dead()
    accounts = {r[0] for r in query(fresh_db, "SELECT DISTINCT account FROM events")}
    assert accounts == {"agent001", "agent002"}
    log = (tmp_path / "worker.log").read_text()
    assert "login rejected" in log
    assert WRONG not in log
    assert PASSWORD not in log
