"""`auditor token ...` and `auditor serve` (gunicorn on 127.0.0.1)."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from sqlalchemy.engine import URL

from auditor import tokens
from auditor.cli import cli
from auditor.config import libpq_conninfo
from tests.logins import as_login


def _env(url: URL) -> dict[str, str]:
    return {"AUDITOR_DATABASE_URL": url.render_as_string(hide_password=False)}


def test_token_create_prints_the_secret_once_and_stores_its_hash(fresh_db: URL) -> None:
    runner = CliRunner()
    result = runner.invoke(
        cli, ["token", "create", "--name", "alice", "--role", "exporter"], env=_env(fresh_db)
    )
    assert result.exit_code == 0, result.output
    secret = result.stdout.strip().splitlines()[-1]
    with psycopg.connect(libpq_conninfo(fresh_db)) as conn:
        found = tokens.verify(conn, secret)
    assert found is not None
    assert (found.name, found.role) == ("alice", "exporter")
    listed = runner.invoke(cli, ["token", "list"], env=_env(fresh_db))
    assert "alice\texporter" in listed.output
    assert "last used" in listed.output  # verify() above used it
    assert secret not in listed.output
    revoked = runner.invoke(cli, ["token", "revoke", "alice"], env=_env(fresh_db))
    assert revoked.exit_code == 0
    with psycopg.connect(libpq_conninfo(fresh_db)) as conn:
        assert tokens.verify(conn, secret) is None
    again = runner.invoke(cli, ["token", "revoke", "alice"], env=_env(fresh_db))
    assert again.exit_code != 0


def test_token_create_refuses_a_duplicate_name(fresh_db: URL) -> None:
    with psycopg.connect(libpq_conninfo(fresh_db)) as conn:
        tokens.create(conn, "bob", "reader")
        conn.commit()
        with pytest.raises(Exception, match="exists already"):
            tokens.create(conn, "bob", "admin")


def _auditor(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "auditor"), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_serve_without_a_secret_is_one_line_naming_the_setting(fresh_db: URL) -> None:
    result = _auditor("serve", env={**_env(fresh_db), "AUDITOR_API_SECRET": ""})
    assert result.returncode == 2
    assert result.stderr.strip().startswith("auditor: AUDITOR_API_SECRET:")
    assert len(result.stderr.strip().splitlines()) == 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.slow
def test_serve_runs_the_api_under_gunicorn(fresh_db: URL) -> None:
    port = _free_port()
    # As the API's login: /readyz must answer "ready" under auditor_api's privileges.
    api_url = as_login(fresh_db, "api")
    env = {**os.environ, **_env(api_url), "AUDITOR_API_SECRET": secrets.token_urlsafe(32)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "auditor"),
            "serve",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        body = b""
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as r:
                    body = r.read()
                break
            except OSError:  # not listening yet (URLError) or the worker still booting
                time.sleep(0.1)
        assert b"ready" in body
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/events", timeout=10)
        refused.value.close()  # a sync worker waits for the client to hang up
        assert refused.value.code == 401
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            assert b"auditor_api_requests_total" in r.read()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert "gunicorn" in err.lower() or "Booting worker" in err or "Listening" in err
