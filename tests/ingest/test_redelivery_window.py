"""The per-session window of Bayeux ids: re-sent copies are dropped, and the window forgets a
batch once the server confirmed its ack, so it stays a batch or two under steady traffic (it
used to keep 10,000 ids per session: memory that grew for 15 minutes at 10/s per agent)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from auditor.ingest.source import Source
from auditor.ingest.spool import Spool
from tests.ingest.support import standalone_source


def _source(tmp_path: Path) -> tuple[Source, Spool]:
    source, spool = standalone_source(tmp_path)
    source.server_acks = True
    return source, spool


def _reply(batch: int, ids: list[int]) -> list[dict[str, Any]]:
    events = [{"channel": "/v2/me/openmedia", "id": i, "data": {"n": i}} for i in ids]
    connect = {"channel": "/meta/connect", "id": str(batch), "successful": True}
    return [{**connect, "ext": {"ack": batch}}, *events]


async def _cycle(source: Source, batch: int, ids: list[int]) -> None:
    """One long-poll: the connect goes out (acking the previous batch), its reply arrives
    and the receive loop takes the events."""
    await source.before_connect({"channel": "/meta/connect"})
    payload = _reply(batch, ids)
    source.on_payload(payload)
    for message in payload[1:]:
        source.accept(message)


def test_resent_copies_are_dropped_and_the_window_forgets_acknowledged_batches(
    tmp_path: Path,
) -> None:
    source, spool = _source(tmp_path)

    async def run() -> None:
        await _cycle(source, 1, [1, 2, 3])
        # The ack of batch 1 did not get through: the server re-sends it with a new message.
        source.batch = None
        await _cycle(source, 2, [1, 2, 3, 4])
        assert source.metrics.redelivered._value.get() == 3
        # Steady traffic: 500 more batches of 10 messages, each acknowledged.
        for n in range(3, 503):
            await _cycle(source, n, list(range(n * 10, n * 10 + 10)))
        await spool.wait_committed(spool.put_count)

    asyncio.run(run())
    assert spool.put_count == 4 + 500 * 10  # each message spooled once
    assert len(source._seen) <= 20  # the last batch or two, not 5,000 ids
    assert not source._tags  # nothing left behind per reply (meta replies carry ids too)
    spool.close()
