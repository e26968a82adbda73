"""The connect pacing (`[gws] min_cycle`, `connect_delay`; auditor/ingest/pacing.py): the
least time between two /meta/connect sends is honoured, it never outlasts the server's
maxInterval, a setting that would let the server expire the session is refused at start,
and against the simulator nothing delivered is lost while the cycles thin out. And the hold
a connect asks for (advice.timeout) is poll_timeout or the server's advised timeout,
whichever is shorter."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from auditor.errors import ConfigError
from auditor.ingest import config as worker_config
from auditor.ingest.config import WorkerConfig
from auditor.ingest.pacing import MAX_MIN_CYCLE, Pacing
from auditor.ingest.source import Source
from tests.ingest.support import (
    Sim,
    WorkerProcess,
    compare,
    delivered_all_stored,
    standalone_source,
    subscribed_since,
    wait_for,
    write_config,
)

AGENTS = ["agent001", "agent002", "agent003"]


def test_min_cycle_waits_only_for_the_rest_of_the_period() -> None:
    pacing = Pacing(connect_delay=0.0, min_cycle=2.0)
    assert pacing.delay(100.0, True, None) == 0.0  # a session's first connect goes at once
    pacing.sent(100.0)
    assert pacing.delay(100.5, True, None) == pytest.approx(1.5)  # a reply after 0.5 s
    assert pacing.delay(110.0, False, None) == 0.0  # an idle poll held longer: no wait
    pacing.reset()
    assert pacing.delay(100.5, True, None) == 0.0  # a new handshake starts afresh


def test_connect_delay_follows_a_reply_with_notifications_and_the_longer_wait_wins() -> None:
    pacing = Pacing(connect_delay=0.25, min_cycle=1.0)
    pacing.sent(0.0)
    assert pacing.delay(0.1, True, None) == pytest.approx(0.9)  # min_cycle's rest is longer
    assert pacing.delay(0.9, True, None) == pytest.approx(0.25)  # connect_delay is longer
    assert pacing.delay(0.9, False, None) == pytest.approx(0.1)  # no notifications: no delay


def test_the_wait_never_outlasts_half_the_servers_max_interval() -> None:
    pacing = Pacing(connect_delay=0.0, min_cycle=5.0)
    pacing.sent(0.0)
    assert pacing.delay(0.0, True, 4000) == pytest.approx(2.0)
    assert pacing.delay(0.0, True, 20_000) == pytest.approx(5.0)
    assert pacing.delay(0.0, True, True) == pytest.approx(5.0)  # not a number: ignored
    assert pacing.delay(0.0, True, "x") == pytest.approx(5.0)


def _config(tmp_path: Path, **gws: object) -> WorkerConfig:
    data = {
        "gws": {"base_url": "http://127.0.0.1:1", **gws},
        "worker": {},
        "database": {"url": "postgresql://u@localhost/db"},
        "accounts": [{"name": "agent001", "password_env": "PW"}],
    }
    return worker_config.from_mapping(data, {"PW": "x"}, "worker.toml", tmp_path)


def test_min_cycle_is_off_by_default_and_accepts_a_valid_value(tmp_path: Path) -> None:
    assert _config(tmp_path).min_cycle == 0.0
    assert _config(tmp_path, min_cycle=1.5).min_cycle == 1.5


@pytest.mark.parametrize(
    ("gws", "problem"),
    [
        ({"min_cycle": MAX_MIN_CYCLE + 1}, "maxInterval"),
        ({"min_cycle": 4, "poll_timeout": 3}, "below poll_timeout"),
        ({"min_cycle": -1}, ">= 0"),
        ({"min_cycle": "1"}, "must be a number"),
    ],
)
def test_a_min_cycle_the_server_could_expire_a_session_in_is_refused(
    tmp_path: Path, gws: dict[str, object], problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _config(tmp_path, **gws)
    assert "gws.min_cycle" in str(caught.value)
    assert problem in str(caught.value)


def _connect_gaps(source: Source, connects: int) -> list[float]:
    """Seconds between the sends of ``connects`` connects through the worker's own hook."""

    async def sends() -> list[float]:
        times = []
        for _ in range(connects):
            await source.before_connect({"channel": "/meta/connect"})
            times.append(time.monotonic())
        return times

    times = asyncio.run(sends())
    return [b - a for a, b in itertools.pairwise(times)]


def test_source_spaces_its_connects_by_min_cycle(tmp_path: Path) -> None:
    """The worker's own connect hook (the outgoing extension) holds each connect until
    min_cycle has passed since the previous one was sent."""
    source, spool = standalone_source(tmp_path, min_cycle=0.2)
    gaps = _connect_gaps(source, 4)
    spool.close()
    assert all(gap >= 0.19 for gap in gaps), gaps


def test_source_waits_at_most_half_the_max_interval_its_server_advised(tmp_path: Path) -> None:
    """The advice comes in the server's meta replies (here the handshake's): with min_cycle
    1 s and maxInterval 400 ms, connects go out 0.2 s apart, not 1 s."""
    source, spool = standalone_source(tmp_path, min_cycle=1.0)
    source.on_incoming(
        {
            "channel": "/meta/handshake",
            "successful": True,
            "clientId": "c1",
            "advice": {"reconnect": "retry", "interval": 0, "maxInterval": 400},
        }
    )
    gaps = _connect_gaps(source, 3)
    spool.close()
    assert all(0.19 <= gap < 0.6 for gap in gaps), gaps


def test_a_connect_asks_for_no_longer_a_hold_than_the_server_advises(tmp_path: Path) -> None:
    """poll_timeout caps the hold; it must not lengthen a server's shorter one (aiocometd
    times each long-poll by the server's advice x 1.2)."""
    source, spool = standalone_source(tmp_path, poll_timeout=10.0)

    async def asked() -> object:
        message: dict[str, object] = {"channel": "/meta/connect"}
        await source.before_connect(message)
        advice = message["advice"]
        assert isinstance(advice, dict)
        return advice["timeout"]

    try:
        assert asyncio.run(asked()) == 0  # a session's first connect: answered at once
        assert asyncio.run(asked()) == 10_000  # no advice yet: poll_timeout
        source.on_incoming(
            {"channel": "/meta/connect", "successful": True, "advice": {"timeout": 1000}}
        )
        assert asyncio.run(asked()) == 1000
        for nonsense in (True, -5, 0, float("inf"), float("nan"), "30000"):
            source.on_incoming(
                {"channel": "/meta/connect", "successful": True, "advice": {"timeout": nonsense}}
            )
            assert asyncio.run(asked()) == 1000, nonsense  # the last valid advice holds
        source.on_incoming(
            {"channel": "/meta/connect", "successful": True, "advice": {"timeout": 30_000}}
        )
        assert asyncio.run(asked()) == 10_000
    finally:
        spool.close()


@pytest.mark.slow
def test_min_cycle_against_the_simulator_thins_the_cycles_and_loses_nothing(
    tmp_path: Path, sim: Sim, fresh_db: URL
) -> None:
    """20 notifications/s per agent: without pacing a reply per notification or so; with
    min_cycle = 0.5 s at most two connects per second per session, every delivered
    notification stored once."""
    config = write_config(tmp_path / "worker.toml", sim.url, AGENTS, tmp_path / "spool.sqlite3")
    text = config.read_text().replace("[gws]\n", "[gws]\nmin_cycle = 0.5\nconnect_delay = 0\n")
    config.write_text(text)
    process = WorkerProcess(config, fresh_db, tmp_path / "worker.log").start()
    try:
        start = datetime.now(UTC)
        wait_for("all sessions subscribed", lambda: subscribed_since(fresh_db, AGENTS, start))
        before = sim.stats()
        began = time.monotonic()
        time.sleep(3.0)
        after = sim.stats()
        window = time.monotonic() - began
        cycles = after["connects"] - before["connects"]
        # at most one connect per 0.5 s per session, plus one in flight at each end
        assert cycles <= len(AGENTS) * (window / 0.5 + 2), (cycles, window)
        assert after["emitted"] - before["emitted"] > 3 * cycles  # several per reply
        sim.control("pause")
        truth = sim.config.ground_truth
        assert truth is not None
        time.sleep(1.5)  # the sweeper flushes the ground truth; the last acks go out
        wait_for("everything delivered is stored", lambda: delivered_all_stored(fresh_db, truth))
        assert process.terminate() == 0
    finally:
        process.ensure_dead()
    sim.__exit__(None, None, None)
    result = compare(fresh_db, truth)
    assert result.delivered > 100
    assert (result.missing, result.duplicated, result.unexpected) == (0, 0, 0), result
