"""The spool's in-memory twin: the same contract as spool.Spool (ports.SpoolPort), no file.

For in-process tests of the sessions, the durability gate and snapshots. With
`auto_commit=False` a test decides when queued rows become durable (`commit()`), which is
how it holds a session's acknowledgement back and shows that nothing is acknowledged
before it is durable. Nothing here survives the process: never a worker's spool.
"""

from __future__ import annotations

import asyncio
import time

from auditor.ingest.spool import Row, Stored


class MemorySpool:
    def __init__(self, auto_commit: bool = True) -> None:
        self.auto_commit = auto_commit
        self._pending: list[Row] = []
        self._rows: dict[int, Row] = {}  # seq -> durable row, in seq order
        self._next_seq = 1
        self.put_count = 0
        self.committed_count = 0
        self.durable_through = time.time()
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self.closed = False

    def put(self, row: Row) -> int:
        self._pending.append(row)
        self.put_count += 1
        if self.auto_commit:
            self.commit()
        return self.put_count

    def put_many(self, rows: list[Row]) -> int:
        self._pending.extend(rows)
        self.put_count += len(rows)
        if self.auto_commit:
            self.commit()
        return self.put_count

    def commit(self) -> int:
        """Make every queued row durable (the SQLite spool's group commit); returns how many."""
        taken_at = time.time()
        batch, self._pending = self._pending, []
        for row in batch:
            self._rows[self._next_seq] = row
            self._next_seq += 1
        self.committed_count = self.put_count
        self.durable_through = taken_at
        done = [w for w in self._waiters if w[0] <= self.committed_count]
        self._waiters = [w for w in self._waiters if w[0] > self.committed_count]
        for _, future in done:
            if not future.done():
                future.set_result(None)
        return len(batch)

    async def wait_committed(self, number: int) -> None:
        if self.committed_count >= number:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((number, future))
        await future

    def depth(self) -> int:
        return len(self._rows)

    def oldest(self, limit: int) -> list[Stored]:
        taken: list[Stored] = []
        for seq, row in self._rows.items():
            if len(taken) >= limit:
                break
            taken.append(Stored(seq, row))
        return taken

    def delete_through(self, first: int, last: int) -> int:
        doomed = [seq for seq in self._rows if first <= seq <= last]
        for seq in doomed:
            del self._rows[seq]
        return len(doomed)

    def oldest_received_at(self) -> str | None:
        for row in self._rows.values():
            return row.received_at
        return None

    def close(self) -> None:
        self.commit()  # as the SQLite spool commits what is queued before it closes
        self.closed = True
