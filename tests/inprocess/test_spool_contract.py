"""One contract for both spools (ports.SpoolPort): the worker's SQLite spool and its
in-memory twin used by the in-process tests. Whatever a test proves with the twin holds for
the real one only because both pass these."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from auditor.ingest.memspool import MemorySpool
from auditor.ingest.ports import SpoolPort
from auditor.ingest.spool import Row, Spool


def _row(i: int, second: int = 0) -> Row:
    return Row(
        f"id-{i}",
        f"2026-12-02T00:00:{second:02d}.000000+00:00",
        "agent001",
        "/v2/me/openmedia",
        "notification",
        f'{{"n":{i}}}',
    )


class Kind:
    """How to open (and reopen) one kind of spool."""

    def __init__(self, name: str, open_: Callable[[], SpoolPort]) -> None:
        self.name = name
        self._open = open_
        self.opened: list[SpoolPort] = []

    def open(self) -> SpoolPort:
        spool = self._open()
        self.opened.append(spool)
        return spool


@pytest.fixture(params=["sqlite", "memory"])
def kind(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Kind]:
    if request.param == "sqlite":
        made = Kind("sqlite", lambda: Spool(tmp_path / "s.sqlite3", "NORMAL"))
    else:
        memory = MemorySpool()
        made = Kind("memory", lambda: memory)  # "reopening" finds the same rows
    yield made
    for spool in made.opened:
        spool.close()


def _committed(spool: SpoolPort, number: int) -> None:
    asyncio.run(asyncio.wait_for(spool.wait_committed(number), 10))


def test_put_numbers_rows_in_order_and_committed_rows_are_read_oldest_first(kind: Kind) -> None:
    spool = kind.open()
    assert spool.put(_row(0)) == 1
    assert spool.put_many([_row(i) for i in range(1, 5)]) == 5
    assert spool.put(_row(5)) == 6
    _committed(spool, 6)
    assert spool.committed_count >= 6 == spool.put_count
    assert [s.row.receipt_id for s in spool.oldest(4)] == ["id-0", "id-1", "id-2", "id-3"]
    assert [s.row for s in spool.oldest(100)] == [_row(i) for i in range(6)]
    seqs = [s.seq for s in spool.oldest(100)]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 6


def test_deleting_a_read_range_keeps_rows_put_after_the_read(kind: Kind) -> None:
    spool = kind.open()
    _committed(spool, spool.put_many([_row(i) for i in range(10)]))
    read = spool.oldest(4)
    _committed(spool, spool.put(_row(99)))
    assert spool.delete_through(read[0].seq, read[-1].seq) == 4
    assert [s.row.receipt_id for s in spool.oldest(100)] == [
        *(f"id-{i}" for i in range(4, 10)),
        "id-99",
    ]
    assert spool.depth() == 7


def test_depth_and_the_oldest_receipt_time_follow_the_drain(kind: Kind) -> None:
    spool = kind.open()
    assert spool.depth() == 0
    assert spool.oldest_received_at() is None
    _committed(spool, spool.put_many([_row(i, second=i) for i in range(3)]))
    assert spool.depth() == 3
    assert spool.oldest_received_at() == "2026-12-02T00:00:00.000000+00:00"
    first = spool.oldest(1)[0]
    spool.delete_through(first.seq, first.seq)
    assert spool.oldest_received_at() == "2026-12-02T00:00:01.000000+00:00"
    rest = spool.oldest(10)
    spool.delete_through(rest[0].seq, rest[-1].seq)
    assert (spool.depth(), spool.oldest_received_at()) == (0, None)


def test_waiters_are_released_in_put_order_and_durable_time_advances(kind: Kind) -> None:
    spool = kind.open()
    before = spool.durable_through

    async def main() -> list[int]:
        released: list[int] = []

        async def waiter(number: int) -> None:
            await spool.wait_committed(number)
            released.append(number)

        first = spool.put(_row(1))
        last = spool.put_many([_row(2), _row(3)])
        await asyncio.wait_for(asyncio.gather(waiter(last), waiter(first)), 10)
        return released

    released = asyncio.run(main())
    assert sorted(released) == [1, 3]
    assert spool.committed_count >= 3
    assert spool.durable_through >= before


def test_close_commits_what_is_queued(kind: Kind) -> None:
    spool = kind.open()
    spool.put_many([_row(i) for i in range(50)])
    spool.close()
    kind.opened.remove(spool)
    again = kind.open()
    assert again.depth() == 50
    assert [s.row.receipt_id for s in again.oldest(2)] == ["id-0", "id-1"]


def test_the_memory_twin_makes_rows_durable_only_when_committed() -> None:
    """What the ack-gating tests rely on: with auto_commit off, nothing is durable or
    readable until commit(), and a waiter is released by that commit."""
    spool = MemorySpool(auto_commit=False)

    async def main() -> None:
        number = spool.put(_row(1))
        waiting = asyncio.ensure_future(spool.wait_committed(number))
        await asyncio.sleep(0)
        assert not waiting.done()
        assert spool.oldest(10) == []
        assert spool.committed_count == 0
        assert spool.commit() == 1
        await asyncio.wait_for(waiting, 1)

    asyncio.run(main())
    assert [s.row.receipt_id for s in spool.oldest(10)] == ["id-1"]
