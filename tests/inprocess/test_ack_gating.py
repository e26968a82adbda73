"""Ack gating end to end in-process: a real session (the worker's Source: login, aiocometd,
the lean long-poll client, its extension) against the real simulator in a thread, with the
spool's in-memory twin holding its commits back. The simulator counts a notification
`delivered` only when the worker's ack for its batch arrives, so its count shows exactly
when the server was told: never while the rows are not durable in the spool, and all of
them as soon as they are."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from auditor.ingest.memspool import MemorySpool
from tests.inprocess.fakes import until
from tests.inprocess.sessions import paused_simulator, run_session, simulator_source
from tests.simulator.support import SimThread

AGENT = "agent001"


@pytest.fixture
def sim() -> Iterator[SimThread]:
    with paused_simulator(timeout_ms=500) as server:
        yield server


def _stats(sim: SimThread) -> tuple[int, int]:
    """(delivered, undeliverable), read in the simulator's own state."""
    assert sim.sim is not None
    truth = sim.sim.ground_truth
    return truth.delivered, truth.undeliverable


def test_notifications_are_acknowledged_only_once_durable_in_the_spool(
    sim: SimThread, tmp_path: Path
) -> None:
    spool = MemorySpool(auto_commit=False)
    source = simulator_source(
        sim,
        spool,
        tmp_path,
        AGENT,
        connect_delay=0.0,
        connection_timeout=5,
        media_types=(),  # no snapshot GET: only notifications go through the spool here
    )

    async def body() -> None:
        await until("subscribed", lambda: source.interval is not None)
        await until("the server offered acks", lambda: source.server_acks)
        generated = sim.control("generate", {"count": 5})["generated"]
        await until("all received", lambda: source.processed >= generated)
        # The next connect waits for the spool (its waiter is registered): the batch's
        # ack can only travel with it.
        await until("the connect held", lambda: bool(spool._waiters))
        assert spool.committed_count == 0
        assert _stats(sim) == (0, 0)
        held = source.durable_at  # the coverage claim does not move while held either
        spool.commit()
        await until("acknowledged", lambda: _stats(sim)[0] == generated)
        assert _stats(sim) == (generated, 0)
        assert [s.row.kind for s in spool.oldest(100)] == ["notification"] * generated
        assert source.durable_at is not None
        assert source.durable_at != held

    run_session(source, body())
