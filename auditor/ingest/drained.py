"""Waiting until the spool is drained past a time, for every session at once.

After each (re-)subscription a session must wait until everything received before its
snapshot is in PostgreSQL (auditor/ingest/snapshot.py, the "Absent" check). Each waiting
session used to poll the spool every 0.1 s itself: at a mass (re-)subscription thousands
of sessions wait together while the drain is behind, and their timers alone kept the event
loop busy. One poller now reads the spool's oldest row and wakes every session whose time
has been passed.
"""

from __future__ import annotations

import asyncio
import contextlib

from auditor.ingest.ports import SpoolPort

PERIOD = 0.1  # seconds between spool reads while sessions wait


class DrainedWatch:
    def __init__(self, spool: SpoolPort) -> None:
        self.spool = spool
        self._waiters: list[tuple[str, asyncio.Future[None]]] = []
        self._poller: asyncio.Task[None] | None = None

    async def wait(self, since: str, timeout: float) -> None:
        """Return once every row received before `since` has left the spool (it is in
        PostgreSQL); TimeoutError after `timeout` seconds."""
        await self.spool.wait_committed(self.spool.put_count)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((since, future))
        if self._poller is None or self._poller.done():
            self._poller = asyncio.ensure_future(self._poll())
        try:
            async with asyncio.timeout(timeout):
                await future
        except TimeoutError:
            raise TimeoutError("the drain is behind") from None
        finally:
            future.cancel()  # a no-op once it is done; the poller drops cancelled ones

    async def _poll(self) -> None:
        while True:
            # Only a read that starts after a waiter registered (its rows committed to the
            # spool before) may release it.
            waiting = [w for w in self._waiters if not w[1].done()]
            self._waiters = waiting[:]
            if not waiting:
                return
            oldest = await asyncio.to_thread(self.spool.oldest_received_at)
            for since, future in waiting:
                if not future.done() and (oldest is None or oldest >= since):
                    future.set_result(None)
            self._waiters = [w for w in self._waiters if not w[1].done()]
            if self._waiters:
                await asyncio.sleep(PERIOD)

    def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
        with contextlib.suppress(Exception):
            for _, future in self._waiters:
                future.cancel()
