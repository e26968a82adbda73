"""Waiting for the drain: every session waiting on one poller is released once the rows
received before its time have left the spool, and not before."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from auditor.ingest.drained import DrainedWatch
from auditor.ingest.spool import Row, Spool


def _row(i: int, at: str) -> Row:
    return Row(f"id-{i}", at, "agent001", "/c", "notification", "{}")


def test_waiters_are_released_by_the_drain_and_only_then(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite3")
    watch = DrainedWatch(spool)
    early, late = "2026-12-02T00:00:01.000000+00:00", "2026-12-02T00:00:05.000000+00:00"
    spool.put(_row(1, early))
    spool.put(_row(2, late))

    async def main() -> None:
        with pytest.raises(TimeoutError, match="the drain is behind"):
            await watch.wait("2026-12-02T00:00:02.000000+00:00", timeout=0.3)
        waiters = [
            asyncio.ensure_future(watch.wait(f"2026-12-02T00:00:0{s}.000000+00:00", 10))
            for s in (2, 3, 9)
        ]
        # Deliberate: the poller gets a few rounds in which it must release no one.
        await asyncio.sleep(0.3)
        assert not any(w.done() for w in waiters)
        first = spool.oldest(1)[0]
        spool.reader.delete_through(first.seq, first.seq)  # the drain stored the early row
        await asyncio.wait_for(asyncio.gather(*waiters[:2]), 5)
        assert not waiters[2].done()  # the late row is still in the spool
        rest = spool.oldest(1)[0]
        spool.reader.delete_through(rest.seq, rest.seq)
        await asyncio.wait_for(waiters[2], 5)
        watch.close()

    asyncio.run(main())
    spool.close()
