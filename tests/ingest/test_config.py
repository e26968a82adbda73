"""Worker config: a bad file or setting stops start-up with one line naming it (exit 2)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from auditor.errors import ConfigError
from auditor.ingest.config import load
from tests.ingest.support import AUDITOR

GOOD = """
[gws]
base_url = "http://127.0.0.1:8090"
[database]
url = "postgresql://u@localhost/db"
[[accounts]]
name = "agent001"
password_env = "GWS_PW1"
"""


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return str(path)


def test_a_valid_file_loads_with_defaults(tmp_path: Path) -> None:
    config = load(_write(tmp_path, GOOD), {"GWS_PW1": "pw"})
    assert config.topics == ("/v2/me/openmedia",)
    assert config.transport == "long-polling"
    assert config.accounts[0].name == "agent001"
    assert "pw" not in repr(config.accounts[0])
    assert config.spool_path.parent == tmp_path


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        (
            GOOD,
            {},
            "config.toml: accounts[0].password_env: environment variable GWS_PW1 is not set",
        ),
        (GOOD.replace('"http://', '"ftp://'), {"GWS_PW1": "x"}, "config.toml: gws.base_url"),
        (GOOD + '[worker]\nbatch_size = "big"\n', {"GWS_PW1": "x"}, "worker.batch_size"),
        (GOOD.replace("[gws]", '[gws]\ntransport = "smoke"'), {"GWS_PW1": "x"}, "gws.transport"),
        ("[gws\n", {}, "is not valid TOML"),
        (GOOD.replace('password_env = "GWS_PW1"', 'password = "x"'), {}, "accounts[0].password"),
    ],
)
def test_invalid_settings_are_named(
    tmp_path: Path, text: str, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(_write(tmp_path, text), env)
    assert message in str(caught.value)


def test_the_command_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [AUDITOR, "ingest", "--config", str(tmp_path / "missing.toml")],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"auditor: {tmp_path / 'missing.toml'}: file not found"
    ]
