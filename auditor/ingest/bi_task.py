"""The BI summaries kept up by the worker: auditor_bi_refresh() in its own connection and
thread, so the writer never waits for it (docs/bi.md).

Each step folds at most one batch of events in its own transaction and says how long to wait
before the next: bi_refresh_interval once caught up; nothing while a backlog remains and the
writer is idle or trickling (a backlog is worked off at full speed); while the writer stores
events at refresh.BUSY_RATE or more, a pause that keeps the refresh to refresh.DEFAULT_DUTY of
the time, so it does not take the writer's cores. Readers never wait (the function deletes,
updates and inserts rows, no REFRESH)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry, Counter

from auditor.bi import refresh

log = logging.getLogger("auditor.ingest.bi")


class BiRefresher:
    def __init__(
        self,
        conninfo: str,
        interval: float,
        registry: CollectorRegistry | None = None,
        batch: int = refresh.DEFAULT_PACED_BATCH,
        pacer: refresh.Pacer | None = None,
    ) -> None:
        self.conninfo = conninfo
        self.interval = interval
        self.batch = batch
        self.pacer = pacer or refresh.Pacer()
        self.refreshed = Counter(
            "auditor_bi_refreshed_events",
            "Events folded into the BI summaries by the worker",
            registry=registry,
        )
        self._conn: psycopg.Connection[Any] | None = None

    def step(self) -> tuple[int, float]:
        """One batch, committed: the events folded and the seconds to wait before the next."""
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.conninfo, connect_timeout=5)
        conn = self._conn
        try:
            before = refresh.writer_position(conn)
            started = time.monotonic()
            consumed = refresh.refresh_once(conn, self.batch)
            stored = refresh.writer_position(conn) - before
            conn.commit()
        except psycopg.Error:
            self.close()
            raise
        self.refreshed.inc(consumed)
        if not consumed:
            return 0, self.interval
        return consumed, self.pacer.pause(time.monotonic() - started, stored)

    async def run(self) -> None:
        try:
            while True:
                try:
                    _, wait = await asyncio.to_thread(self.step)
                except psycopg.Error as exc:
                    log.warning("BI refresh failed", extra={"error": str(exc).strip()})
                    wait = self.interval
                # Cancellable here, never inside the thread: a pause does not hold up a stop.
                await asyncio.sleep(wait)
        finally:
            self.close()

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None
