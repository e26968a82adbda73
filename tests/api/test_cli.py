"""`auditor token ...` and `auditor serve` (gunicorn on 127.0.0.1)."""

from __future__ import annotations

import os
import subprocess
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
from tests.cli_runner import run_auditor
from tests.logins import as_login
from tests.serving import serve


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
    return run_auditor(args, env={**os.environ, **env}, timeout=60)


def test_serve_without_a_secret_is_one_line_naming_the_setting(fresh_db: URL) -> None:
    result = _auditor("serve", env={**_env(fresh_db), "AUDITOR_API_SECRET": ""})
    assert result.returncode == 2
    assert result.stderr.strip().startswith("auditor: AUDITOR_API_SECRET:")
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_serve_runs_the_api_under_gunicorn(fresh_db: URL, tmp_path: Path) -> None:
    # As the API's login: /readyz must answer "ready" under auditor_api's privileges.
    with serve(as_login(fresh_db, "api"), tmp_path / "serve.log") as served:
        with urllib.request.urlopen(f"http://127.0.0.1:{served.port}/readyz", timeout=30) as r:
            assert b"ready" in r.read()
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{served.port}/api/v1/events", timeout=30)
        refused.value.close()  # a sync worker waits for the client to hang up
        assert refused.value.code == 401
        with urllib.request.urlopen(f"http://127.0.0.1:{served.port}/metrics", timeout=30) as r:
            assert b"auditor_api_requests_total" in r.read()
    err = served.log_text()
    assert "gunicorn" in err.lower() or "Booting worker" in err or "Listening" in err
