"""The spool: rows survive closing and reopening, waiters are released by the group commit,
and a drained range never removes a row written after it was read."""

from __future__ import annotations

import asyncio
from pathlib import Path

from auditor.ingest.spool import Row, Spool, SpoolReader


def _row(i: int) -> Row:
    return Row(
        f"id-{i}", "2026-11-25T00:00:00.000000+00:00", "agent001", "/c", "notification", "{}"
    )


def test_rows_committed_before_close_are_there_after_reopening(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite3")
    for i in range(1000):
        spool.put(_row(i))
    spool.close()
    again = Spool(tmp_path / "s.sqlite3")
    assert again.depth() == 1000
    assert [s.row.receipt_id for s in again.oldest(3)] == ["id-0", "id-1", "id-2"]
    again.close()


def test_wait_committed_returns_once_the_group_is_on_disk(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite3")

    async def main() -> int:
        number = spool.put_many([_row(i) for i in range(50)])
        await asyncio.wait_for(spool.wait_committed(number), 10)
        return number

    number = asyncio.run(main())
    assert spool.committed_count >= number == 50
    assert len(spool.oldest(100)) == 50
    spool.close()


def test_deleting_a_drained_range_keeps_later_rows(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite3")
    spool.put_many([_row(i) for i in range(10)])
    spool.close()
    spool = Spool(tmp_path / "s.sqlite3")
    read = spool.oldest(10)
    spool.delete_through(read[0].seq, read[-1].seq)
    spool.put(_row(99))
    spool.close()
    spool = Spool(tmp_path / "s.sqlite3")
    assert [s.row.receipt_id for s in spool.oldest(10)] == ["id-99"]
    spool.close()


def test_depth_counts_what_another_connection_drained(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite3")

    async def fill() -> None:
        await spool.wait_committed(spool.put_many([_row(i) for i in range(30)]))

    asyncio.run(fill())
    assert spool.depth() == 30
    drain = SpoolReader(tmp_path / "s.sqlite3")  # as the drain process opens it
    read = drain.oldest(12)
    assert drain.delete_through(read[0].seq, read[-1].seq) == 12
    drain.close()
    assert spool.depth() == 18
    read = spool.oldest(100)
    spool.delete_through(read[0].seq, read[-1].seq)
    assert spool.depth() == 0
    spool.close()
