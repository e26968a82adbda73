"""`auditor db grant-login`, and the services refusing to run as a superuser or the owner."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result
from sqlalchemy.engine import URL

from auditor.cli import cli
from auditor.config import libpq_conninfo
from auditor.errors import ConfigError, UserError
from auditor.pgserver import EmbeddedPostgres
from auditor.roles import refuse_privileged
from tests.cli_runner import run_auditor
from tests.ingest.support import wait_for, write_config

AUDITOR = str(Path(sys.executable).parent / "auditor")


def _name() -> str:
    return f"login_{uuid.uuid4().hex[:10]}"


def _grant(db: URL, *args: str, env: dict[str, str] | None = None) -> Result:
    full_env = {"AUDITOR_DATABASE_URL": db.render_as_string(hide_password=False), **(env or {})}
    return CliRunner().invoke(cli, ["db", "grant-login", *args], env=full_env)


def _role(db: URL, user: str) -> tuple[Any, ...]:
    with psycopg.connect(libpq_conninfo(db)) as conn:
        row = conn.execute(
            "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolinherit, rolconnlimit,"
            " ARRAY(SELECT r.rolname FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid"
            "       WHERE a.member = m.oid ORDER BY 1)"
            " FROM pg_roles m WHERE rolname = %s",
            (user,),
        ).fetchone()
    assert row is not None
    return tuple(row)


def _connects(db: URL, user: str, password: str) -> bool:
    try:
        with psycopg.connect(libpq_conninfo(db.set(username=user, password=password))):
            return True
    except psycopg.OperationalError:
        return False


def test_grant_login_makes_a_login_in_one_group_whose_password_works(session_db: URL) -> None:
    user, password = _name(), "pw-" + uuid.uuid4().hex
    result = _grant(
        session_db, "writer", "--user", user, "--password-env", "PW", env={"PW": password}
    )
    assert result.exit_code == 0, result.output
    assert password not in result.output
    assert f"login {user!r} created: member of auditor_writer only" in result.output
    assert _role(session_db, user) == (True, False, False, False, True, 32, ["auditor_writer"])
    assert _connects(session_db, user, password)
    assert not _connects(session_db, user, "wrong")
    # Its rights come from the group without SET ROLE, and it cannot act as the group itself.
    with psycopg.connect(libpq_conninfo(session_db.set(username=user, password=password))) as c:
        c.execute("SELECT count(*) FROM events")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("SET ROLE auditor_writer")


def test_grant_login_again_moves_the_login_to_the_new_group_only(session_db: URL) -> None:
    user = _name()
    assert (
        _grant(
            session_db, "writer", "--user", user, "--password-env", "PW", env={"PW": "a"}
        ).exit_code
        == 0
    )
    again = _grant(
        session_db,
        "reader",
        "--user",
        user,
        "--password-env",
        "PW",
        "--connection-limit",
        "3",
        env={"PW": "b"},
    )
    assert again.exit_code == 0, again.output
    assert "updated" in again.output
    assert "removed from auditor_writer" in again.output
    assert _role(session_db, user)[4:] == (True, 3, ["auditor_reader"])
    assert _connects(session_db, user, "b")


def test_grant_login_gives_a_noinherit_login_its_group_rights(session_db: URL) -> None:
    user = _name()
    with psycopg.connect(libpq_conninfo(session_db), autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{user}" LOGIN NOINHERIT CREATEDB')
    assert (
        _grant(
            session_db, "reader", "--user", user, "--password-env", "PW", env={"PW": "x"}
        ).exit_code
        == 0
    )
    assert _role(session_db, user)[2:5] == (False, False, True)  # no CREATEDB, INHERIT
    with psycopg.connect(libpq_conninfo(session_db.set(username=user, password="x"))) as c:
        c.execute("SELECT count(*) FROM events")  # through the membership, no SET ROLE
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("SELECT count(*) FROM access_log")


def test_grant_login_takes_the_password_from_a_file_without_its_newline(
    session_db: URL, tmp_path: Path
) -> None:
    user, secret = _name(), tmp_path / "pw"
    secret.write_text("from-a-file\n")
    result = _grant(session_db, "api", "--user", user, "--password-file", str(secret))
    assert result.exit_code == 0, result.output
    assert _connects(session_db, user, "from-a-file")
    assert _role(session_db, user)[5:] == (64, ["auditor_api"])


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--user", "postgres", "--password-env", "PW"], {"PW": "x"}, "superuser"),
        (["--user", "pg_monitor", "--password-env", "PW"], {"PW": "x"}, "a name of its own"),
        (["--user", "auditor_reader", "--password-env", "PW"], {"PW": "x"}, "a name of its own"),
        (["--user", "someone", "--password-env", "NOPE"], {}, "NOPE: that variable is not set"),
        (["--user", "someone"], {}, "no terminal to ask for the password"),
    ],
)
def test_grant_login_refuses_with_one_line(
    session_db: URL, args: list[str], env: dict[str, str], expected: str
) -> None:
    result = _grant(session_db, "writer", *args, env=env)
    assert isinstance(result.exception, UserError), result.output
    assert expected in str(result.exception)
    assert "\n" not in str(result.exception)


def test_grant_login_errors_are_one_line_and_exit_2_from_the_command(session_db: URL) -> None:
    result = run_auditor(
        ["db", "grant-login", "writer", "--user", "postgres", "--password-env", "PW"],
        env={
            **os.environ,
            "AUDITOR_DATABASE_URL": session_db.render_as_string(hide_password=False),
            "PW": "x",
        },
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "auditor: --user 'postgres' is a superuser or may create roles or bypass row security;"
        " choose another name for the service's login"
    ]


def test_grant_login_refuses_a_login_that_is_also_in_another_role(session_db: URL) -> None:
    user = _name()
    with psycopg.connect(libpq_conninfo(session_db), autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{user}" LOGIN IN ROLE pg_read_all_data')
    result = _grant(session_db, "reader", "--user", user, "--password-env", "PW", env={"PW": "x"})
    assert result.exit_code != 0
    assert "pg_read_all_data" in str(result.exception)
    assert _role(session_db, user)[6] == ["pg_read_all_data"]  # nothing changed


def test_the_password_reaches_neither_the_output_nor_the_server_log(
    session_db: URL, pg_server: EmbeddedPostgres | None
) -> None:
    if pg_server is None:
        pytest.skip("needs the embedded server's log file")
    user, password = _name(), "never-logged-" + uuid.uuid4().hex
    result = run_auditor(
        ["db", "grant-login", "api", "--user", user, "--password-env", "PW"],
        env={
            **os.environ,
            "AUDITOR_DATABASE_URL": session_db.render_as_string(hide_password=False),
            "PW": password,
            "PGOPTIONS": "-c log_statement=all",  # the server logs every statement it gets
        },
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    log = pg_server.log_file.read_text(errors="replace")
    assert f'ALTER ROLE "{user}"' in log or f'CREATE ROLE "{user}"' in log
    assert password not in log + result.stdout + result.stderr
    assert _connects(session_db, user, password)


# --- services refuse to run with more than their role ---------------------------------------


def test_refuse_privileged_accepts_only_a_login_of_the_services_group(
    conn: psycopg.Connection[Any], login_url: Callable[[URL, str], URL]
) -> None:
    with pytest.raises(ConfigError, match="is a superuser"):
        refuse_privileged(conn, "api", "API")
    owner = str(
        conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'events'").fetchone()[0]
    )  # type: ignore[index]
    conn.execute(f"CREATE ROLE owner_friend IN ROLE {owner}")
    conn.execute("SET LOCAL ROLE owner_friend")
    with pytest.raises(ConfigError, match="owns the audited tables"):
        refuse_privileged(conn, "writer", "worker")
    conn.execute("RESET ROLE")
    writer = login_url(URL.create("postgresql"), "writer").username
    conn.execute(f'SET LOCAL ROLE "{writer}"')
    refuse_privileged(conn, "writer", "worker")
    with pytest.raises(ConfigError, match="is not a member of auditor_api"):
        refuse_privileged(conn, "api", "API")


def _run(args: list[str], db: URL, **env: str) -> subprocess.CompletedProcess[str]:
    return run_auditor(
        args,
        env={**os.environ, "AUDITOR_DATABASE_URL": db.render_as_string(hide_password=False), **env},
        timeout=60,
    )


def _assert_refused(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("auditor: AUDITOR_DATABASE_URL:")
    for needle in needles:
        assert needle in lines[0]


def test_serve_refuses_the_superuser_and_a_login_of_another_group(
    session_db: URL, login_url: Callable[[URL, str], URL]
) -> None:
    secret = {"AUDITOR_API_SECRET": "s" * 40}
    _assert_refused(
        _run(["serve"], session_db, **secret), "superuser", "grant-login api", "--allow-owner"
    )
    _assert_refused(
        _run(["serve"], login_url(session_db, "reader"), **secret), "not a member of auditor_api"
    )


def test_ingest_refuses_the_superuser_and_a_login_of_another_group(
    session_db: URL, login_url: Callable[[URL, str], URL], tmp_path: Path
) -> None:
    config = write_config(tmp_path / "w.toml", "http://127.0.0.1:9", ["agent001"], tmp_path / "s")
    args = ["ingest", "--config", str(config)]
    _assert_refused(
        _run(args, session_db, GWS_PASSWORD="x"), "superuser", "grant-login writer", "--allow-owner"
    )
    _assert_refused(
        _run(args, login_url(session_db, "api"), GWS_PASSWORD="x"), "not a member of auditor_writer"
    )


def test_ingest_with_allow_owner_starts_as_the_superuser(session_db: URL, tmp_path: Path) -> None:
    config = write_config(tmp_path / "w.toml", "http://127.0.0.1:9", ["agent001"], tmp_path / "s")
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [AUDITOR, "ingest", "--allow-owner", "--config", str(config)],
            env={
                **os.environ,
                "AUDITOR_DATABASE_URL": session_db.render_as_string(hide_password=False),
                "GWS_PASSWORD": "x",
            },
            stdout=out,
            stderr=out,
        )
    try:
        wait_for("the worker to start", lambda: "worker starting" in log.read_text(), timeout=30)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_a_command_the_login_may_not_run_is_one_line_naming_the_setting(
    session_db: URL, login_url: Callable[[URL, str], URL]
) -> None:
    """A BI login running verify (which reads the access log): exit 2, no traceback."""
    result = _run(["verify"], login_url(session_db, "bi"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("auditor: permission denied for")
    assert "AUDITOR_DATABASE_URL" in last


def test_a_verifier_login_reruns_verify_and_may_write_nothing(
    session_db: URL, login_url: Callable[[URL, str], URL]
) -> None:
    """Auditors verify without the owner's rights: auditor_verifier reads what the record
    covers, the access log included, and nothing more."""
    verifier = login_url(session_db, "verifier")
    result = _run(["verify"], verifier)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    with psycopg.connect(libpq_conninfo(verifier)) as conn:
        for statement in (
            "INSERT INTO access_log (method, endpoint, status) VALUES ('GET', '/x', 200)",
            "DELETE FROM record",
            "SELECT * FROM api_tokens",
            "SELECT * FROM session_log",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
                conn.execute(statement)  # type: ignore[arg-type]
