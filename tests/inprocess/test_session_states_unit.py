"""Unit tests of one session's state machine (auditor/ingest/source.py), driven in-process
with fakes of the worker's interfaces: the in-memory spool, a fake clock, and a recording
coverage storage. No socket: the Bayeux replies are fed to the session's extension hooks as
aiocometd would (tests/inprocess/test_ack_gating.py runs the same against the simulator).

What they prove: the interval opens at subscribe and closes with the reason at a failed
connect or a re-handshake; its heartbeat and end are the send time of the last connect
whose reply is durable in the spool, never later; a message is acknowledged to the server
only once it is durable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from auditor.config import parse_database_url
from auditor.ingest.admission import Admission
from auditor.ingest.config import Account, WorkerConfig
from auditor.ingest.coverage import Coverage
from auditor.ingest.memspool import MemorySpool
from auditor.ingest.metrics import Metrics
from auditor.ingest.source import Source
from tests.inprocess.fakes import FakeClock, RecordingCoverageStorage

ACCOUNT = "agent001"


def _config(tmp_path: Path) -> WorkerConfig:
    return WorkerConfig(
        database_url=parse_database_url("postgresql://u@localhost/db"),
        base_url="http://127.0.0.1:1",
        accounts=(Account(ACCOUNT, "pw"),),
        spool_path=tmp_path / "unused.sqlite3",
        connect_delay=0.0,
    )


@asynccontextmanager
async def _session(
    tmp_path: Path, spool: MemorySpool, clock: FakeClock
) -> AsyncIterator[tuple[Source, Coverage]]:
    metrics = Metrics()
    admission = Admission(metrics, 10, 1000.0, 0, 10.0)
    dispatcher = asyncio.ensure_future(admission.dispatch())
    coverage = Coverage("w1")
    config = _config(tmp_path)
    source = Source(config, config.accounts[0], spool, coverage, metrics, admission, clock=clock)
    try:
        yield source, coverage
    finally:
        for task in [dispatcher, *source._tasks]:
            task.cancel()
        await asyncio.gather(dispatcher, *source._tasks, return_exceptions=True)


def _handshake(acks: bool = True) -> dict[str, Any]:
    reply: dict[str, Any] = {"channel": "/meta/handshake", "successful": True, "clientId": "c1"}
    if acks:
        reply["ext"] = {"ack": True}
    return reply


def _connect(batch: int | None, successful: bool = True, **more: Any) -> dict[str, Any]:
    reply: dict[str, Any] = {"channel": "/meta/connect", "successful": successful, **more}
    if batch is not None:
        reply["ext"] = {"ack": batch}
    return reply


def _events(*ids: int) -> list[dict[str, Any]]:
    return [{"channel": "/v2/me/openmedia", "id": str(i), "data": {"n": i}} for i in ids]


async def _reply(source: Source, payload: list[dict[str, Any]]) -> None:
    """A long-poll reply: the incoming extension sees it, the receive loop takes the events."""
    source.on_payload(payload)
    for message in payload:
        if not message["channel"].startswith("/meta/"):
            source.accept(message)


def _flushed(coverage: Coverage) -> list[tuple[Any, ...]]:
    storage = RecordingCoverageStorage()
    taken = coverage.take()
    if taken is not None:
        coverage.write(taken, storage)
        coverage.flushed(taken)
    return storage.calls


def test_unit_interval_opens_at_subscribe_and_heartbeats_at_the_durable_connect(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    t0 = clock.now()

    async def main() -> list[tuple[Any, ...]]:
        async with _session(tmp_path, MemorySpool(), clock) as (source, coverage):
            await _reply(source, [_handshake()])
            source._start_interval()  # what _session() does once subscribe succeeded
            clock.advance(1)
            await source.before_connect({"channel": "/meta/connect"})  # sent at t0+1
            clock.advance(1)
            await _reply(source, [_connect(1), *_events(1, 2)])  # replied at t0+2
            clock.advance(1)
            # The next connect: the reply of the one sent at t0+1 is durable, so the
            # heartbeat is t0+1 (not t0+3, when this one goes out).
            await source.before_connect({"channel": "/meta/connect"})
            return _flushed(coverage)

    calls = asyncio.run(main())
    assert calls == [
        ("log", "handshake", "c1"),
        ("open", ACCOUNT, "c1", t0),
        ("log", "subscribed", "/v2/me/openmedia"),
        ("heartbeat", 1, t0 + timedelta(seconds=1)),
    ]


def test_unit_a_failed_connect_closes_the_interval_at_the_last_durable_connect(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    t0 = clock.now()

    async def main() -> list[tuple[Any, ...]]:
        async with _session(tmp_path, MemorySpool(), clock) as (source, coverage):
            await _reply(source, [_handshake()])
            source._start_interval()
            clock.advance(2)
            await source.before_connect({"channel": "/meta/connect"})  # t0+2
            await _reply(source, [_connect(1), *_events(1)])
            clock.advance(2)
            await source.before_connect({"channel": "/meta/connect"})  # t0+4: durable t0+2
            clock.advance(5)
            await _reply(source, [_connect(None, successful=False, error="402::Unknown client")])
            return _flushed(coverage)

    calls = asyncio.run(main())
    # No heartbeat row: the close (at the durable t0+2) supersedes the queued heartbeat.
    assert calls[-2:] == [
        ("close", 1, t0 + timedelta(seconds=2), "connect failed: 402::Unknown client"),
        ("log", "disconnected", "connect failed: 402::Unknown client"),
    ]
    assert ("heartbeat", 1, t0 + timedelta(seconds=2)) not in calls


def test_unit_a_rehandshake_ends_the_interval_and_the_resubscribe_opens_the_next(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    t0 = clock.now()

    async def main() -> tuple[list[tuple[Any, ...]], Source]:
        async with _session(tmp_path, MemorySpool(), clock) as (source, coverage):
            await _reply(source, [_handshake()])
            source._start_interval()
            clock.advance(1)
            await source.before_connect({"channel": "/meta/connect"})
            await _reply(source, [_connect(1), *_events(1)])
            clock.advance(1)
            await source.before_connect({"channel": "/meta/connect"})  # durable t0+1
            clock.advance(3)
            await _reply(source, [{**_handshake(), "clientId": "c2"}])  # the 402 re-handshake
            assert source.interval is None
            assert source.resubscribe_pending
            clock.advance(1)
            await _reply(source, [{"channel": "/meta/subscribe", "successful": True}])
            return _flushed(coverage), source

    calls, source = asyncio.run(main())
    assert [c[0:2] for c in calls if c[0] in ("open", "close")] == [
        ("open", ACCOUNT),
        ("close", 1),
        ("open", ACCOUNT),
    ]
    close = next(c for c in calls if c[0] == "close")
    assert close[2:] == (t0 + timedelta(seconds=1), "rehandshake")
    reopened = [c for c in calls if c[0] == "open"][1]
    assert reopened[2:] == ("c2", t0 + timedelta(seconds=6))
    assert ("log", "rehandshake", "c2") in calls
    assert source.client_id == "c2"
    assert source.batch is None


def test_unit_a_batch_is_acknowledged_only_once_its_messages_are_durable(tmp_path: Path) -> None:
    spool = MemorySpool(auto_commit=False)
    clock = FakeClock()

    async def main() -> None:
        async with _session(tmp_path, spool, clock) as (source, coverage):
            await _reply(source, [_handshake()])
            source._start_interval()
            first: dict[str, Any] = {"channel": "/meta/connect"}
            await source.before_connect(first)  # nothing received yet: goes out at once
            assert "ack" not in first.get("ext", {})
            await _reply(source, [_connect(7), *_events(1, 2, 3)])
            assert spool.put_count == 3
            assert spool.committed_count == 0
            nxt: dict[str, Any] = {"channel": "/meta/connect"}
            sending = asyncio.ensure_future(source.before_connect(nxt))
            for _ in range(20):  # the connect is held while the rows are not durable
                await asyncio.sleep(0)
            assert not sending.done()
            assert "ext" not in nxt
            assert not [c for c in _flushed(coverage) if c[0] == "heartbeat"]  # nor heartbeat
            assert spool.commit() == 3
            await asyncio.wait_for(sending, 5)
            assert nxt["ext"]["ack"] == 7
            assert [c[0] for c in _flushed(coverage)] == ["heartbeat"]

    asyncio.run(main())


def test_unit_without_server_acks_nothing_is_acknowledged_but_the_gate_still_holds(
    tmp_path: Path,
) -> None:
    spool = MemorySpool(auto_commit=False)

    async def main() -> None:
        async with _session(tmp_path, spool, FakeClock()) as (source, _):
            await _reply(source, [_handshake(acks=False)])
            source._start_interval()
            await source.before_connect({"channel": "/meta/connect"})
            await _reply(source, [_connect(3), *_events(1)])
            nxt: dict[str, Any] = {"channel": "/meta/connect"}
            sending = asyncio.ensure_future(source.before_connect(nxt))
            await asyncio.sleep(0)
            assert not sending.done()
            spool.commit()
            await asyncio.wait_for(sending, 5)
            assert "ext" not in nxt

    asyncio.run(main())
