"""A session's bookkeeping does not outlive it: what an ended session counted as received
and never handed over cannot hold the next session's connects (each would wait for the
spool longer than connection_timeout, and every new session would fail in turn), and event
messages still queued when a session ends are kept, not dropped with the client. In-process:
the worker's Source against the real simulator in a thread."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from auditor.ingest.memspool import MemorySpool
from auditor.ingest.source import Source
from tests.inprocess.fakes import until
from tests.inprocess.sessions import paused_simulator, run_session, simulator_source
from tests.simulator.support import SimThread

AGENT = "agent001"


@pytest.fixture
def sim() -> Iterator[SimThread]:
    with paused_simulator(timeout_ms=300) as server:
        yield server


def _subscribed_anew(source: Source, before: str | None) -> bool:
    return source.client_id not in (None, before) and source.interval is not None


def _delivered(sim: SimThread) -> int:
    """Notifications whose ack reached the simulator (its own state)."""
    assert sim.sim is not None
    return int(sim.sim.ground_truth.delivered)


def test_what_an_ended_session_counted_and_never_handed_over_does_not_hold_the_next(
    sim: SimThread, tmp_path: Path
) -> None:
    spool = MemorySpool(auto_commit=True)
    source = simulator_source(
        sim, spool, tmp_path, AGENT, connect_delay=0.0, connection_timeout=1, media_types=()
    )

    async def body() -> None:
        await until("subscribed", lambda: source.interval is not None)
        first = source.client_id
        # As a reply consumed while its session ended leaves it: counted, never processed.
        source.arrived += 3
        sim.control("expire", {"agent": AGENT})
        await until("subscribed again", lambda: _subscribed_anew(source, first), 20)
        second = source.client_id
        generated = sim.control("generate", {"count": 4})["generated"]
        await until("stored", lambda: len(spool.oldest(100)) == generated, 20)
        # Acknowledged at once; held, the connect waited 10 s and the session (1 s
        # connection_timeout) ended first, again and again.
        await until("acknowledged", lambda: _delivered(sim) == generated, 5)
        assert source.client_id == second

    run_session(source, body())


def test_event_messages_queued_when_a_session_ends_are_kept(sim: SimThread, tmp_path: Path) -> None:
    spool = MemorySpool(auto_commit=True)
    source = simulator_source(
        sim, spool, tmp_path, AGENT, connect_delay=0.0, connection_timeout=1, media_types=()
    )
    late = {"channel": "/v2/me/openmedia", "id": "late-1", "data": {"notificationType": "x"}}
    failed = {"channel": "/v2/me/openmedia", "id": "late-2", "successful": False}

    async def body() -> None:
        await until("subscribed", lambda: source.interval is not None)
        first = source.client_id
        # The client's queue as a reply leaves it when its sink is already gone.
        session_client = source._receiver.client if source._receiver is not None else None
        assert session_client is not None
        session_client._incoming_queue.put_nowait(late)
        session_client._incoming_queue.put_nowait(failed)
        source.arrived += 2
        sim.control("expire", {"agent": AGENT})
        await until("subscribed again", lambda: _subscribed_anew(source, first), 20)
        ids = [stored.row.raw for stored in spool.oldest(100)]
        assert sum('"late-1"' in raw for raw in ids) == 1
        assert not any('"late-2"' in raw for raw in ids)

    run_session(source, body())
