"""The worker's lease task: the edge around Leases (leases.py). It owns the lease
connection and each tick's transaction, and applies what a committed tick decided: sessions
stopped and started (through the narrow `Sessions` interface, never the worker itself),
session-log rows, the fences coverage rows carry, the leases metric."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

import psycopg

from auditor.ingest.config import WorkerConfig
from auditor.ingest.coverage import Coverage
from auditor.ingest.leases import Changes, Leases, PgLeaseStorage
from auditor.ingest.metrics import Metrics
from auditor.ingest.ports import SYSTEM_CLOCK, Clock

log = logging.getLogger("auditor.ingest.leases")


class Sessions(Protocol):
    """Starting and stopping an account's session (the worker)."""

    def start_account(self, name: str) -> None: ...

    async def stop_account(self, name: str, reason: str) -> None: ...


class LeaseTask:
    def __init__(
        self,
        config: WorkerConfig,
        coverage: Coverage,
        metrics: Metrics,
        sessions: Sessions,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.conninfo = config.conninfo
        self.renew_seconds = config.lease_renew
        self.leases = Leases(
            config.worker_id,
            [a.name for a in config.accounts],
            config.lease_ttl,
            config.max_sessions,
        )
        self.coverage = coverage
        self.metrics = metrics
        self.sessions = sessions
        self.clock = clock
        self._conn: psycopg.Connection[Any] | None = None

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.conninfo, connect_timeout=5)
        return self._conn

    def _tick(self) -> Changes:
        conn = self._connection()
        with conn.transaction():
            changes = self.leases.tick(PgLeaseStorage(conn))
        self.leases.applied(changes)
        return changes

    async def apply(self, changes: Changes) -> None:
        """Stop the sessions of lost and released accounts, start the gained ones."""
        at = self.clock.now()
        for account in sorted(changes.lost):
            self.coverage.log(at, account, "lease_lost")
            await self.sessions.stop_account(account, "lease lost")
        for account in sorted(changes.released):
            self.coverage.log(at, account, "lease_released")
            await self.sessions.stop_account(account, "lease released (fair share)")
        for account in sorted(changes.gained):
            fence = changes.fences[account]
            self.coverage.fences[account] = fence
            self.coverage.log(at, account, "lease_acquired", f"fence {fence}")
            self.sessions.start_account(account)
        self.metrics.leases.set(len(self.leases.held))
        if changes:
            log.info(
                "leases changed",
                extra={
                    "held": len(self.leases.held),
                    "gained": sorted(changes.gained),
                    "lost": sorted(changes.lost),
                },
            )

    async def run(self) -> None:
        while True:
            try:
                changes = await asyncio.to_thread(self._tick)
            except psycopg.Error as exc:
                log.warning("lease renewal failed", extra={"error": str(exc).splitlines()[0]})
                if self._conn is not None:
                    with contextlib.suppress(psycopg.Error):
                        self._conn.close()
                self._conn = None
                await self.clock.sleep(self.renew_seconds)
                continue
            await self.apply(changes)
            await self.clock.sleep(self.renew_seconds)

    async def release_all(self) -> None:
        def release() -> None:
            conn = self._connection()
            with conn.transaction():
                self.leases.release_all(PgLeaseStorage(conn))
            conn.close()

        try:
            await asyncio.to_thread(release)
        except psycopg.Error:
            log.warning("could not release leases; they expire by themselves")
        at = self.clock.now()
        for account in sorted(self.leases.held):
            self.coverage.log(at, account, "lease_released")
        self.leases.held.clear()
