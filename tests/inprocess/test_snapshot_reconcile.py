"""Snapshot reconciliation in-process, with the real parts: the simulator (in a thread, over
loopback HTTP) as GWS, a session logged in with the worker's own login code, the real
writer storing what was spooled into the real PostgreSQL (the test's rolled-back
transaction), and the projection read back through the worker's lookup. The spool is the
in-memory twin (its contract: test_spool_contract.py), the sweep's settling pause runs on a
fake clock.

What it proves: a snapshot spools every item GWS lists; an item the projection still shows
open that GWS no longer lists is recorded as Absent; a sweep finds a state GWS changed
without notifying, records it as a sweep snapshot with its reason, and finds nothing when
nothing drifted."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client import CollectorRegistry

from auditor.ingest.drain import to_receipt
from auditor.ingest.drained import DrainedWatch
from auditor.ingest.http import new_session
from auditor.ingest.items import ProjectionReader
from auditor.ingest.memspool import MemorySpool
from auditor.ingest.snapshot import record_absent, take_snapshot
from auditor.ingest.sweep import Sweeper
from auditor.store.writer import store_batch
from tests.inprocess.fakes import FakeClock
from tests.inprocess.sessions import simulator_source
from tests.simulator.support import SimThread, fast_config

Conn = psycopg.Connection[Any]
# An agent of its own: the session database holds other tests' committed rows for agent001.
AGENT = f"inprocess-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def sim() -> Iterator[SimThread]:
    config = fast_config(agents=1, extra_agents=(AGENT,), rate=0, max_items_per_agent=4)
    with SimThread(config) as server:
        server.control("pause")
        while len(_items(server)) < 3:  # items only: nobody listens, nothing is delivered
            server.control("generate", {"count": 5})
        yield server


def _items(sim: SimThread) -> dict[str, str]:
    assert sim.sim is not None
    agent = sim.sim.engine.agents[AGENT]
    return {item.id: item.state for item in agent.items.values()}


def _store(db: Conn, spool: MemorySpool) -> list[dict[str, Any]]:
    """What the drain does: store the spooled rows, then delete them; their documents."""
    stored = spool.oldest(10_000)
    if stored:
        store_batch(db, [to_receipt(s) for s in stored])
        spool.delete_through(stored[0].seq, stored[-1].seq)
    return [json.loads(s.row.raw) for s in stored]


def _projected(db: Conn) -> dict[str, str]:
    rows = db.execute(
        "SELECT interaction_id, account_states -> %s ->> 'state' FROM interactions"
        " WHERE account_states ? %s",
        (AGENT, AGENT),
    ).fetchall()
    return {str(r[0]): str(r[1]) for r in rows}


def test_snapshots_record_what_gws_lists_and_what_it_no_longer_lists(
    sim: SimThread, db: Conn, tmp_path: Path
) -> None:
    spool = MemorySpool()
    source = simulator_source(sim, spool, tmp_path, AGENT)
    reader = ProjectionReader(lambda: db, DrainedWatch(spool).wait, ("workitem",))
    source.active_items = reader.active_items

    async def main() -> None:
        http, source._jar = new_session()
        try:
            await source._login(http)
            taken = await take_snapshot(source, http)
            assert taken is not None
            assert taken[0] == set(_items(sim))
            documents = _store(db, spool)
            assert {d["data"]["openmedia"]["id"] for d in documents} == set(_items(sim))
            assert all(d["snapshot"]["items"] == len(documents) for d in documents)
            assert _projected(db) == _items(sim)

            gone = next(iter(_items(sim)))
            sim.control("silent", {"agent": AGENT, "item": gone, "remove": True})
            again = await take_snapshot(source, http)
            assert again is not None
            assert gone not in again[0]
            await record_absent(source, *again)
            documents = _store(db, spool)
            [absent] = [d for d in documents if d["snapshot"].get("absent")]
            assert absent["data"]["openmedia"] == {"id": gone, "state": "Absent"}
            assert _projected(db)[gone] == "Absent"
            assert {i: s for i, s in _projected(db).items() if i != gone} == _items(sim)
        finally:
            await http.close()

    asyncio.run(main())


def test_a_sweep_records_a_silent_change_and_nothing_when_nothing_drifted(
    sim: SimThread, db: Conn, tmp_path: Path
) -> None:
    spool = MemorySpool()
    source = simulator_source(sim, spool, tmp_path, AGENT)
    reader = ProjectionReader(lambda: db, DrainedWatch(spool).wait, ("workitem",))

    async def main() -> None:
        http, source._jar = new_session()
        try:
            await source._login(http)
            source.http = http
            assert await take_snapshot(source, http) is not None
            _store(db, spool)
            clock = FakeClock()  # after the stored states: they are older than the sweep
            sweeper = Sweeper(60, [AGENT], {AGENT: source}, reader, CollectorRegistry(), clock)
            assert await sweeper.sweep(source) == "clean"
            assert spool.depth() == 0

            item, state = next(iter(_items(sim).items()))
            drifted = "Processing" if state != "Processing" else "Invited"
            sim.control("silent", {"agent": AGENT, "item": item, "state": drifted})
            assert await sweeper.sweep(source) == "differences"
            assert clock.slept == [sweeper.settle]  # the second look, on the fake clock
            [document] = _store(db, spool)
            assert document["data"]["openmedia"]["id"] == item
            assert document["data"]["openmedia"]["state"] == drifted
            assert document["snapshot"]["sweep"] is True
            assert (
                f"GWS says {drifted!r}, the projection {state!r}" in document["snapshot"]["reason"]
            )
            assert _projected(db)[item] == drifted
            assert sweeper.differences.labels("state")._value.get() == 1
        finally:
            await http.close()

    asyncio.run(main())


def test_without_a_session_http_client_there_is_no_snapshot(sim: SimThread, tmp_path: Path) -> None:
    spool = MemorySpool()
    source = simulator_source(sim, spool, tmp_path, AGENT)
    assert asyncio.run(take_snapshot(source, None)) is None
    assert spool.put_count == 0
