"""tests/cli_runner.py answers as the installed `auditor` script does: same exit status, same
stdout and stderr, the caller's environment and working directory, nothing carried over from
one call to the next."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.cli_runner import AUDITOR, run_auditor


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITOR_")}
    return {**env, "COLUMNS": "120", **extra}


def test_answers_equal_the_installed_script() -> None:
    for args in (["db", "--help"], ["token", "list"], ["timeline"], ["no-such-command"]):
        forked = run_auditor(args, env=_env())
        script = subprocess.run(
            [AUDITOR, *args], env=_env(), capture_output=True, text=True, timeout=120, check=False
        )
        assert (forked.returncode, forked.stdout, forked.stderr) == (
            script.returncode,
            script.stdout,
            script.stderr,
        ), args
    assert forked.returncode == 2  # the last one: a usage error


def test_each_call_has_its_own_environment_and_working_directory(tmp_path: Path) -> None:
    (tmp_path / "here.ndjson").write_text("{}\n")
    (tmp_path / "elsewhere").mkdir()
    unreachable = _env(AUDITOR_DATABASE_URL="postgresql://nobody@127.0.0.1:1/x")
    found = run_auditor(["import", "here.ndjson"], env=unreachable, cwd=tmp_path)
    assert found.returncode == 2
    assert "cannot connect" in found.stderr, found.stderr
    missing = run_auditor(["import", "here.ndjson"], env=unreachable, cwd=tmp_path / "elsewhere")
    assert "no such file" in missing.stderr, missing.stderr
    unset = run_auditor(["import", "here.ndjson"], env=_env(), cwd=tmp_path)
    assert "AUDITOR_DATABASE_URL" in unset.stderr, unset.stderr  # nothing carried over
