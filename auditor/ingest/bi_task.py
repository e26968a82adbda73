"""The BI summaries kept up by the worker: auditor_bi_refresh() every bi_refresh_interval
seconds (docs/bi.md), in its own connection and thread, so the writer never waits for it.

Each call folds at most one batch of events in its own transaction; a round stops after
MAX_BATCHES_PER_ROUND batches so a large backlog (after an import) is worked off in steps,
and readers never wait (the function deletes and inserts rows, no REFRESH)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry, Counter

from auditor.bi import refresh

log = logging.getLogger("auditor.ingest.bi")
MAX_BATCHES_PER_ROUND = 50


class BiRefresher:
    def __init__(
        self,
        conninfo: str,
        interval: float,
        registry: CollectorRegistry | None = None,
        batch: int = refresh.DEFAULT_BATCH,
    ) -> None:
        self.conninfo = conninfo
        self.interval = interval
        self.batch = batch
        self.refreshed = Counter(
            "auditor_bi_refreshed_events",
            "Events folded into the BI summaries by the worker",
            registry=registry,
        )
        self._conn: psycopg.Connection[Any] | None = None

    def once(self) -> int:
        """One round: up to MAX_BATCHES_PER_ROUND batches, each committed; the events folded."""
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.conninfo, connect_timeout=5)
        total = 0
        try:
            for _ in range(MAX_BATCHES_PER_ROUND):
                consumed = refresh.refresh_once(self._conn, self.batch)
                self._conn.commit()
                if not consumed:
                    break
                total += consumed
        except psycopg.Error:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None
            raise
        finally:
            self.refreshed.inc(total)
        return total

    async def run(self) -> None:
        try:
            while True:
                try:
                    await asyncio.to_thread(self.once)
                except psycopg.Error as exc:
                    log.warning("BI refresh failed", extra={"error": str(exc).strip()})
                await asyncio.sleep(self.interval)
        finally:
            self.close()

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None
