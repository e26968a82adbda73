"""`auditor retention` and `auditor hold` as an operator runs them, under the retention login;
`auditor verify` under the verifier login names the purge. Bad input: one line, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import URL

from auditor.config import libpq_conninfo
from tests.cli_runner import run_auditor
from tests.logins import as_login
from tests.retention.support import partitions, store_month

AUDITOR = str(Path(sys.executable).with_name("auditor"))


def _run(url: URL | None, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITOR_")}
    env["COLUMNS"] = "200"
    if url is not None:
        env["AUDITOR_DATABASE_URL"] = url.render_as_string(hide_password=False)
    env.update(extra)
    return run_auditor(args, env=env)


@pytest.fixture
def stored(fresh_db: URL) -> URL:
    with psycopg.connect(libpq_conninfo(fresh_db)) as conn:
        store_month(conn, 2023, 1, ["K-1", "K-2", "K-3"])
        store_month(conn, 2023, 2, ["K-4"], account="agent002")
        conn.commit()
    return fresh_db


def test_plan_apply_hold_release_and_verify_from_the_command_line(stored: URL) -> None:
    retention = as_login(stored, "retention")
    plan = _run(retention, "retention", "plan", "--older-than", "24mo")
    assert plan.returncode == 0, plan.stderr
    assert "DROP events_2023_01" in plan.stdout
    assert " 3 rows" in plan.stdout
    assert "2 of " in plan.stdout

    held = _run(
        retention,
        "hold",
        "place",
        "--reason",
        "case 9",
        "--account",
        "agent002",
        "--from",
        "2023-02-01T00:00:00+0000",
        "--to",
        "2023-03-01T00:00:00+0000",
        "--by",
        "counsel",
    )
    assert held.returncode == 0, held.stderr
    hold_id = held.stdout.split()[2]

    dry = _run(retention, "retention", "apply", "--older-than", "2y")
    assert dry.returncode == 0, dry.stderr
    assert "dry run" in dry.stdout
    with psycopg.connect(libpq_conninfo(stored)) as conn:
        assert "events_2023_01" in partitions(conn)

    applied = _run(retention, "retention", "apply", "--yes", AUDITOR_RETENTION_MONTHS="24")
    assert applied.returncode == 0, applied.stderr
    assert "dropped events_2023_01 (3 rows)" in applied.stdout
    assert f"kept events_2023_02 (1 rows): under legal hold: hold {hold_id}" in applied.stdout
    assert "retention dropped events_2023_01" in applied.stderr  # the run's log

    released = _run(retention, "hold", "release", hold_id, "--reason", "closed")
    assert released.returncode == 0, released.stderr
    listed = _run(retention, "hold", "list")
    assert f"{hold_id}: released" in listed.stdout
    again = _run(retention, "retention", "apply", "--yes", AUDITOR_RETENTION_MONTHS="24")
    assert "dropped events_2023_02 (1 rows)" in again.stdout

    verified = _run(as_login(stored, "verifier"), "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "purged by retention: events_2023_01" in verified.stdout
    assert "purged by retention: events_2023_02" in verified.stdout
    assert "record intact" in verified.stdout
    with psycopg.connect(libpq_conninfo(stored)) as conn:
        runs = conn.execute("SELECT dry_run FROM retention_runs ORDER BY id").fetchall()
    assert runs == [(True,), (False,), (False,)]


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (("retention", "plan", "--older-than", "soon"), {}, "--older-than"),
        (("retention", "plan", "--older-than", "0mo"), {}, "--older-than"),
        (("retention", "plan"), {"AUDITOR_RETENTION_MONTHS": "two"}, "AUDITOR_RETENTION_MONTHS"),
        (
            ("retention", "plan"),
            {"AUDITOR_RETENTION_MONTHS_BY_MEDIA_TYPE": "email"},
            "AUDITOR_RETENTION_MONTHS_BY_MEDIA_TYPE",
        ),
        (("retention", "apply"), {}, "AUDITOR_RETENTION_MONTHS"),
        (("hold", "place", "--reason", "r"), {}, "predicate"),
        (("hold", "place", "--reason", " ", "--account", "a"), {}, "reason"),
    ],
)
def test_bad_input_is_one_line_naming_what_to_fix(
    session_db: URL, args: tuple[str, ...], env: dict[str, str], named: str
) -> None:
    done = _run(as_login(session_db, "retention"), *args, **env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert named in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
