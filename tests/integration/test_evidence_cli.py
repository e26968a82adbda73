"""`auditor keys`, `auditor checkpoint`, `auditor evidence` as a user runs them, and the
standalone verifier run as a script with nothing but the pack and the public key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import URL

from auditor import evidence_verify
from auditor.config import libpq_conninfo
from auditor.evidence import keys, schedule
from auditor.store.writer import store_batch
from tests.cli_runner import run_auditor
from tests.helpers import om_message, receipt

AUDITOR = str(Path(sys.executable).with_name("auditor"))


def _run(
    *args: str, url: URL | None = None, key: Path | None = None, **extra: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITOR_")}
    env["COLUMNS"] = "200"
    if url is not None:
        env["AUDITOR_DATABASE_URL"] = url.render_as_string(hide_password=False)
    if key is not None:
        env["AUDITOR_SIGNING_KEY_FILE"] = str(key)
    env.update(extra)
    return run_auditor(args, env=env)


def test_keys_create_writes_a_private_file_and_show_prints_only_the_public_key(
    tmp_path: Path,
) -> None:
    key = tmp_path / "signing.pem"
    created = _run("keys", "create", "--out", str(key))
    assert created.returncode == 0, created.stderr
    assert key.stat().st_mode & 0o777 == 0o600
    private = key.read_text()
    assert "PRIVATE KEY" in private
    shown = _run("keys", "show", key=key)
    assert shown.returncode == 0, shown.stderr
    assert "BEGIN PUBLIC KEY" in shown.stdout
    assert "PRIVATE" not in shown.stdout + shown.stderr
    assert created.stdout == shown.stdout
    again = _run("keys", "create", "--out", str(key))
    assert again.returncode == 2
    assert "never overwritten" in again.stderr
    assert key.read_text() == private


def test_a_missing_or_bad_key_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    missing = _run("keys", "show")
    assert missing.returncode == 2
    assert "AUDITOR_SIGNING_KEY_FILE" in missing.stderr
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    wrong = _run("keys", "show", key=bad)
    assert wrong.returncode == 2
    assert len(wrong.stderr.strip().splitlines()) == 1
    assert "AUDITOR_SIGNING_KEY_FILE" in wrong.stderr
    assert "Traceback" not in wrong.stderr


def test_export_signs_a_fresh_checkpoint_and_the_script_verifies_the_pack(
    fresh_db: URL, tmp_path: Path
) -> None:
    key = tmp_path / "signing.pem"
    assert _run("keys", "create", "--out", str(key)).returncode == 0
    public = tmp_path / "public.pem"
    public.write_text(
        "\n".join(
            line
            for line in _run("keys", "show", key=key).stdout.splitlines()
            if not line.startswith(("key id", "public key"))
        )
        + "\n"
    )
    with psycopg.connect(libpq_conninfo(fresh_db)) as conn:
        store_batch(conn, [receipt(om_message("CLI-1", "Invited"), at=i) for i in range(5)])
        conn.commit()
    witness = tmp_path / "witness"
    out = tmp_path / "pack"
    exported = _run(
        "evidence",
        "export",
        "--interaction",
        "CLI-1",
        "--out",
        str(out),
        url=fresh_db,
        key=key,
        AUDITOR_CHECKPOINT_WITNESS_DIR=str(witness),
    )
    assert exported.returncode == 0, exported.stderr
    assert "5 events" in exported.stdout
    assert "0 not proven" in exported.stdout
    assert len(list(witness.glob("checkpoint-*.json"))) == 1
    # run as a plain script, from elsewhere, with the interpreter alone
    script = subprocess.run(
        [sys.executable, evidence_verify.__file__, str(out), "--public-key", str(public)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert script.returncode == 0, script.stdout + script.stderr
    assert "verified: 5 rows proven" in script.stdout
    latest = _run("checkpoint", "latest", "--json", url=fresh_db)
    assert json.loads(latest.stdout) == json.loads(out.joinpath("checkpoint.json").read_text())
    assert _run("evidence", "verify", str(out), "--public-key", str(public)).returncode == 0
    out.joinpath("events.ndjson").write_text("")
    failed = _run("evidence", "verify", str(out), "--public-key", str(public))
    assert failed.returncode == 1
    assert "FAILED" in failed.stdout


def test_export_refuses_an_incomplete_query_in_one_line(fresh_db: URL, tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    keys.create(key)
    result = _run(
        "evidence", "export", "--account", "a", "--out", str(tmp_path / "p"), url=fresh_db, key=key
    )
    assert result.returncode == 2
    assert "--from and --to" in result.stderr


def test_the_schedule_is_due_by_time_or_by_rows(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    keys.create(key)
    env = {"AUDITOR_SIGNING_KEY_FILE": str(key), "AUDITOR_CHECKPOINT_ROWS": "100"}
    made = schedule.Checkpointer.from_env("", env)
    assert made is not None
    assert made.interval == 300
    made._last_made = 1000.0
    assert not made.due(1100.0, appended=99)
    assert made.due(1100.0, appended=100)
    assert made.due(1300.0, appended=0)
    assert schedule.Checkpointer.from_env("", {}) is None


def test_a_bad_schedule_setting_names_itself(tmp_path: Path) -> None:
    import pytest

    from auditor.errors import ConfigError

    with pytest.raises(ConfigError, match="AUDITOR_CHECKPOINT_INTERVAL"):
        schedule.Checkpointer.from_env("", {"AUDITOR_CHECKPOINT_INTERVAL": "soon"})


def test_the_worker_task_signs_checkpoints_into_the_database(fresh_db: URL, tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    keys.create(key)
    conninfo = libpq_conninfo(fresh_db)
    with psycopg.connect(conninfo) as conn:
        for i in range(3):  # three batches: three record rows in either record format
            store_batch(conn, [receipt(om_message("W-1", "Invited"), at=i)])
        conn.commit()
    env = {"AUDITOR_SIGNING_KEY_FILE": str(key), "AUDITOR_CHECKPOINT_WITNESS_DIR": str(tmp_path)}
    checkpointer = schedule.Checkpointer.from_env(conninfo, env)
    assert checkpointer is not None
    try:
        first = checkpointer.tick(now=10_000.0)
        assert first is not None
        assert first.tree_size == 3
        assert checkpointer.tick(now=10_001.0) is None  # not due yet
        assert checkpointer.tick(now=20_000.0) is None  # due, but nothing new
    finally:
        checkpointer.close()
    assert (tmp_path / "checkpoint-000000000003.json").exists()


@pytest.mark.usefixtures("record_format_1")  # counts one record row per event
def test_checkpoint_consistency_proves_the_latest_extends_a_kept_one(
    fresh_db: URL, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from auditor.cli import cli
    from auditor.evidence import checkpoints

    signer_path = tmp_path / "k.pem"
    signer = keys.create(signer_path)
    public = tmp_path / "public.pem"
    public.write_text(keys.public_pem(signer.public))
    conninfo = libpq_conninfo(fresh_db)
    with psycopg.connect(conninfo) as conn:
        store_batch(conn, [receipt(om_message("C-1", "Invited"), at=i) for i in range(7)])
        kept = checkpoints.make(conn, signer)
        store_batch(conn, [receipt(om_message("C-1", "Processing"), at=100 + i) for i in range(9)])
        assert checkpoints.make(conn, signer) is not None
        conn.commit()
    assert kept is not None
    kept_file = tmp_path / "kept.json"
    kept_file.write_text(json.dumps(kept.to_json()))
    env = {"AUDITOR_DATABASE_URL": fresh_db.render_as_string(hide_password=False)}
    runner = CliRunner()
    args = ["checkpoint", "consistency", str(kept_file), "--public-key", str(public)]
    ok = runner.invoke(cli, args, env=env)
    assert ok.exit_code == 0, ok.output
    assert "extends the kept one of 7" in ok.output
    # a kept checkpoint from another history: the stored tree does not extend it
    other = {**kept.to_json(), "root": kept.to_json()["chain_head"]}
    kept_file.write_text(json.dumps(other))
    unsigned = runner.invoke(cli, args[:3], env=env)
    assert unsigned.exit_code == 1
    assert "INCONSISTENT" in unsigned.output
    signed = runner.invoke(cli, args, env=env)
    assert signed.exit_code == 1
    assert "signature" in signed.output
