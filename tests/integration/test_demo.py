"""`make demo` stays true: the whole system comes up, records live traffic, and stops cleanly."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
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


@pytest.fixture
def demo_dir() -> Iterator[Path]:
    """Outside pytest's tmp_path: a pytest session starting meanwhile (another checkout)
    makes /tmp/pytest-of-<user> 0700 again, which the server's own user cannot traverse."""
    path = Path(tempfile.mkdtemp(prefix="auditor-demo-"))
    try:
        yield path / "demo"
    finally:
        shutil.rmtree(path, ignore_errors=True)


def start_demo(data_dir: Path, seconds: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITOR_")}
    # an 80-column terminal: the commands printed for copying must still be whole lines
    env.update(COLUMNS="80", PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [AUDITOR, "demo", "--seconds", str(seconds), "--data-dir", str(data_dir)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_demo_runs_postgres_simulator_worker_and_api_then_stops_cleanly(
    demo_dir: Path,
) -> None:
    proc = start_demo(demo_dir, seconds=4)
    assert proc.stdout is not None
    head = ""
    for line in proc.stdout:  # until the demo says it runs, while everything is up
        head += line
        if line.startswith("Running for"):
            break
    try:
        url = _printed_url(head)
        api = re.search(r"query API\s+(http://\S+)/docs", head)
        assert api, head
        # The pages' login link (a reader token) opens the sign-in form, filled in.
        link = re.search(r"^(http://\S+/ui/login\?token=aud_\S+)$", head, flags=re.M)
        assert link, head
        with urllib.request.urlopen(link.group(1), timeout=10) as login:  # noqa: S310
            assert b"Sign in" in login.read()
        # Ready under the API's own login (it reads alembic_version through its grant).
        with urllib.request.urlopen(f"{api.group(1)}/readyz", timeout=10) as ready:  # noqa: S310
            assert b'"ready"' in ready.read()
        # The printed URL is a read-only login: it reads events but not the access log.
        with psycopg.connect(url, connect_timeout=5) as conn:
            assert conn.execute("SELECT count(*) FROM events").fetchone()
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT count(*) FROM access_log")
        with psycopg.connect(url, connect_timeout=5) as conn:
            who = conn.execute(
                "SELECT usename, application_name FROM pg_stat_activity"
                " WHERE datname = current_database() AND usename IS NOT NULL"
            ).fetchall()
    finally:
        rest, err = proc.communicate(timeout=180)
    out = head + rest
    assert proc.returncode == 0, out + err
    # The worker and the API ran under their own logins, never as the owner.
    users = {u for u, _ in who}
    assert {"demo_worker", "demo_api"} <= users, who
    assert "postgres" not in users, who
    assert "bundled sample: 232 new events" in out
    assert "Timeline of interaction" in out
    assert re.search(r"^export TOKEN=aud_\S+$", out, flags=re.M)
    curls = [line for line in out.splitlines() if "curl " in line]
    assert len(curls) >= 3
    assert all(
        re.fullmatch(r'curl -H "Authorization: Bearer \$TOKEN" "http://\S+"', c) for c in curls
    )
    assert "stopping the worker" in out
    assert "PostgreSQL stopped" in out
    assert "Traceback" not in err
    # The data stays; a second run starts the same cluster again and finds the sample stored.
    again = run_demo(demo_dir, seconds=1)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "bundled sample: 0 new events" in again.stdout
    assert not _reachable(_printed_url(again.stdout)), "the demo's PostgreSQL must be stopped"


def _printed_url(out: str) -> str:
    """The URL behind the printed `export AUDITOR_DATABASE_URL="$(cat FILE)"`."""
    found = re.search(r'export AUDITOR_DATABASE_URL="\$\(cat (\S+)\)"', out)
    assert found, out
    return Path(found.group(1)).read_text().strip()


def _reachable(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False
