"""The `auditor` command as a user runs it: real process, real database, one-line errors.
(A process forked from tests/cli_runner.py's zygote; `--help` is checked with the installed
script too.)"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import URL

from auditor.config import libpq_conninfo
from auditor.demo import sample_path
from tests.cli_runner import run_auditor

AUDITOR = str(Path(sys.executable).with_name("auditor"))


def run(*args: str, url: URL | str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "AUDITOR_DATABASE_URL"}
    env["COLUMNS"] = "200"
    if url is not None:
        env["AUDITOR_DATABASE_URL"] = (
            url if isinstance(url, str) else url.render_as_string(hide_password=False)
        )
    return run_auditor(args, env=env)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0]


def test_malformed_database_url_stops_with_one_line_naming_the_setting() -> None:
    assert_one_line_error(run("db", "check", url="mysql://x@y/z"), "AUDITOR_DATABASE_URL")
    assert_one_line_error(run("timeline", "X", url="postgresql://u@h:port/db"), "port")


def test_missing_database_url_stops_with_one_line() -> None:
    assert_one_line_error(run("import", "x.ndjson"), "AUDITOR_DATABASE_URL", "not set")


def test_unreachable_database_stops_with_one_line_naming_the_setting_and_cause() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql://nobody:hunter2@127.0.0.1:{port}/auditor"
    for args in (("db", "upgrade"), ("timeline", "X"), ("import", str(sample_path()))):
        result = run(*args, url=url)
        assert_one_line_error(result, "AUDITOR_DATABASE_URL", "cannot connect", str(port))
        assert "hunter2" not in result.stderr


def test_import_of_a_missing_or_unreadable_file_stops_with_one_line(
    fresh_db: URL, tmp_path: Path
) -> None:
    assert_one_line_error(run("import", str(tmp_path / "nope.ndjson"), url=fresh_db), "no such")
    assert_one_line_error(run("import", str(tmp_path), url=fresh_db), "directory")


def test_db_upgrade_on_an_empty_database_then_check_passes(server_url: URL) -> None:
    name = f"auditor_cli_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(libpq_conninfo(server_url), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    try:
        url = server_url.set(database=name)
        upgraded = run("db", "upgrade", url=url)
        assert upgraded.returncode == 0, upgraded.stderr
        assert "partitions created: events_" in upgraded.stdout
        checked = run("db", "check", url=url)
        assert checked.returncode == 0, checked.stderr
        assert "schema ok" in checked.stdout
    finally:
        with psycopg.connect(libpq_conninfo(server_url), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')  # type: ignore[arg-type]


def test_import_counts_stored_duplicates_and_quarantined_and_never_aborts(
    fresh_db: URL, tmp_path: Path
) -> None:
    lines = sample_path().read_text().splitlines()[:30]
    broken = ["{not json", '{"received_at": "yesterday", "account": "a", "raw": "{}"}']
    data = tmp_path / "mixed.ndjson"
    data.write_text("\n".join([*lines[:10], broken[0], *lines[10:], broken[1], ""]) + "\n")
    first = run("import", str(data), url=fresh_db)
    assert first.returncode == 0, first.stderr
    assert "imported 30, duplicates 0, quarantined 2 (of 32 read)" in first.stdout
    again = run("import", str(data), url=fresh_db)
    assert "imported 0, duplicates 32, quarantined 0 (of 32 read)" in again.stdout
    with psycopg.connect(libpq_conninfo(fresh_db)) as conn:
        reasons = [r[0] for r in conn.execute("SELECT reason FROM quarantine ORDER BY id")]
    assert reasons[0].startswith("not JSON")
    assert "not a valid receipt" in reasons[1]


def test_import_of_a_json_array_of_raw_notifications(fresh_db: URL, tmp_path: Path) -> None:
    messages = [json.loads(line)["message"] for line in sample_path().read_text().splitlines()]
    data = tmp_path / "array.json"
    data.write_text(json.dumps(messages[:12]))
    result = run("import", str(data), "--account", "agent042", url=fresh_db)
    assert "imported 12, duplicates 0, quarantined 0" in result.stdout
    with psycopg.connect(libpq_conninfo(fresh_db)) as conn:
        accounts = conn.execute("SELECT DISTINCT account FROM events").fetchall()
    assert accounts == [("agent042",)]
    assert "duplicates 12" in run("import", str(data), "--account", "agent042", url=fresh_db).stdout


def test_timeline_prints_every_event_of_the_interaction_with_user_data_changes(
    fresh_db: URL,
) -> None:
    assert run("import", str(sample_path()), url=fresh_db).returncode == 0
    with psycopg.connect(libpq_conninfo(fresh_db)) as conn:
        row = conn.execute(
            "SELECT interaction_id, event_count FROM interactions"
            " WHERE cardinality(accounts) = 2 LIMIT 1"
        ).fetchone()
    assert row is not None
    result = run("timeline", row[0], url=fresh_db)
    assert result.returncode == 0, result.stderr
    assert f"Timeline of interaction {row[0]}" in result.stdout
    assert result.stdout.count("StatusChange") + result.stdout.count("PropertiesUpdated") == row[1]
    assert "Completed" in result.stdout
    assert "+CaseId=" in result.stdout


def test_timeline_of_an_unknown_interaction_is_a_one_line_error(fresh_db: URL) -> None:
    assert_one_line_error(run("timeline", "NOPE", url=fresh_db), "NOPE")


@pytest.mark.parametrize("args", [("--help",), ("db", "--help"), ("import", "--help")])
def test_help_works(args: tuple[str, ...]) -> None:
    result = run(*args)
    assert result.returncode == 0
    assert "Usage:" in result.stdout
    # The installed script itself says the same.
    script = subprocess.run([AUDITOR, *args], capture_output=True, text=True, timeout=120)
    assert (script.returncode, script.stdout, script.stderr) == (0, result.stdout, result.stderr)


def test_token_commands_import_neither_the_cometd_client_nor_the_simulator() -> None:
    """Subcommands are imported when used (auditor.cli._LAZY): a token command starts light."""
    heavy = ("aiohttp", "aiocometd_noloop", "auditor.simulator", "alembic", "cryptography")
    probe = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from auditor.cli import cli\n"
        "assert CliRunner().invoke(cli, ['token', 'list', '--help']).exit_code == 0\n"
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == ""


def test_a_connection_lost_mid_command_is_one_line_not_a_traceback(fresh_db: URL) -> None:
    env = {k: v for k, v in os.environ.items() if k != "AUDITOR_DATABASE_URL"}
    env["AUDITOR_DATABASE_URL"] = fresh_db.render_as_string(hide_password=False)
    follower = subprocess.Popen(
        [AUDITOR, "bi", "refresh", "--follow", "0.1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with psycopg.connect(libpq_conninfo(fresh_db), autocommit=True) as admin:
            for _ in range(200):  # until the command is connected, then cut it off
                killed = admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    " AND backend_type = 'client backend'"
                ).fetchall()
                if killed:
                    break
                time.sleep(0.05)
        _, stderr = follower.communicate(timeout=30)
    finally:
        follower.kill()
    assert killed, "the command never connected"
    assert follower.returncode == 1, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert lines[0].startswith("auditor: the database connection was lost")
