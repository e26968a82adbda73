"""Worker config: a bad file or setting stops start-up with one line naming it (exit 2)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from auditor.errors import ConfigError
from auditor.ingest.config import KNOWN_KEYS, load
from tests.cli_runner import run_auditor

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
        (GOOD + '[worker]\nevent_loop = "trio"\n', {"GWS_PW1": "x"}, "worker.event_loop"),
        (GOOD.replace("[gws]", '[gws]\nhttp_client = "curl"'), {"GWS_PW1": "x"}, "gws.http_client"),
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
    result = run_auditor(
        ["ingest", "--config", str(tmp_path / "missing.toml")], env={"PATH": "/usr/bin:/bin"}
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"auditor: {tmp_path / 'missing.toml'}: file not found"
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            GOOD.replace("[gws]", '[gws]\ntransprot = "websocket"'),
            "config.toml: [gws] transprot: unknown key; did you mean transport?",
        ),
        (
            GOOD + "[worker]\nshutdown_timout = 5\n",
            "config.toml: [worker] shutdown_timout: unknown key; did you mean shutdown_timeout?",
        ),
        (GOOD + "[worker]\nfrobnicate = 1\n", "config.toml: [worker] frobnicate: unknown key"),
        (
            GOOD.replace('password_env = "GWS_PW1"', 'pasword_env = "GWS_PW1"'),
            "config.toml: [accounts[0]] pasword_env: unknown key; did you mean password_env?",
        ),
        (
            GOOD + "[wroker]\nspool = 'x'\n",
            "config.toml: wroker: unknown key; did you mean worker?",
        ),
    ],
)
def test_an_unknown_key_is_named_with_the_closest_known_one(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(_write(tmp_path, text), {"GWS_PW1": "x"})
    assert str(caught.value) == message


def test_an_unknown_key_stops_the_command_with_one_line_and_exit_2(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace("[gws]", '[gws]\ntransprot = "websocket"'))
    result = run_auditor(
        ["ingest", "--config", path], env={"PATH": "/usr/bin:/bin", "GWS_PW1": "x"}
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "auditor: config.toml: [gws] transprot: unknown key; did you mean transport?"
    ]


def test_a_file_with_every_known_key_loads_and_applies_them(tmp_path: Path) -> None:
    text = GOOD.replace(
        "[gws]",
        '[gws]\ntransport = "websocket"\ntopics = ["/v2/me/*"]\nmedia_types = ["chat"]\n'
        "connection_timeout = 3\npoll_timeout = 4\nconnect_delay = 0.5\nmin_cycle = 1\n"
        "ack = false\n"
        'http_client = "aiohttp"',
    ) + (
        '[worker]\nspool = "s.db"\nspool_synchronous = "NORMAL"\nmetrics_port = 9\nid = "w1"\n'
        "batch_size = 7\ndrain_interval = 0.2\ngroup_commit_interval = 0.01\n"
        "heartbeat_interval = 2\nbackoff_base = 1\nbackoff_cap = 9\nlogin_retry = 5\n"
        "shutdown_timeout = 6\npolite_disconnects = 3\nleases = true\nlease_ttl = 20\n"
        "lease_renew = 4\n"
        "max_sessions = 11\nmax_setups = 12\nsetup_rate = 13\nsaturation_lag = 0.7\n"
        "sweep_interval = 60\nbi_refresh_interval = 5\n"
        'event_loop = "asyncio"\n'
    )
    config = load(_write(tmp_path, text), {"GWS_PW1": "x"})
    known = {k for table in ("gws", "worker") for k in KNOWN_KEYS[table]}
    assert all(f"\n{key} = " in text for key in known)  # every known key is in the file
    assert (config.transport, config.poll_timeout, config.ack) == ("websocket", 4.0, False)
    assert (config.max_sessions, config.max_setups, config.setup_rate) == (11, 12, 13.0)
    assert (config.saturation_lag, config.worker_id, config.lease_renew) == (0.7, "w1", 4.0)
    assert (config.sweep_interval, config.bi_refresh_interval) == (60.0, 5.0)
    assert (config.shutdown_timeout, config.polite_disconnects) == (6.0, 3)
    assert config.event_loop == "asyncio"
    assert config.http_client == "aiohttp"
    assert config.min_cycle == 1.0


def test_the_sweep_interval_comes_from_the_environment_first_and_is_checked(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path, GOOD + "[worker]\nsweep_interval = 60\n")
    assert load(path, {"GWS_PW1": "x"}).sweep_interval == 60.0
    assert load(path, {"GWS_PW1": "x", "AUDITOR_SWEEP_INTERVAL": "0"}).sweep_interval == 0.0
    assert load(_write(tmp_path, GOOD), {"GWS_PW1": "x"}).sweep_interval == 900.0
    with pytest.raises(ConfigError, match="AUDITOR_SWEEP_INTERVAL"):
        load(path, {"GWS_PW1": "x", "AUDITOR_SWEEP_INTERVAL": "15min"})
    with pytest.raises(ConfigError, match="sweep_interval"):
        load(_write(tmp_path, GOOD + "[worker]\nsweep_interval = -1\n"), {"GWS_PW1": "x"})


def test_a_metrics_port_in_use_stops_the_worker_with_one_line_naming_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = _write(tmp_path, GOOD + f"[worker]\nmetrics_port = {port}\n")
        result = run_auditor(
            ["ingest", "--config", path, "--allow-owner"],
            env={"PATH": "/usr/bin:/bin", "GWS_PW1": "x"},
        )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"auditor: [worker] metrics_port: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]
