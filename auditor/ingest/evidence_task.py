"""The worker's evidence task: drain progress every heartbeat, sealing every seal interval.

- Drain progress (docs/evidence.md, "Completeness means stored"): everything this worker
  received before the oldest receipt still in its spool, and before the spool's last commit,
  is stored in PostgreSQL; that instant goes to drain_progress, and coverage is clipped to it.
- Sealing: closed coverage intervals and access-log rows are entered into the record
  (auditor.store.sealer) every AUDITOR_SEAL_INTERVAL seconds (default 30).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import psycopg

from auditor.errors import ConfigError
from auditor.ingest.spool import Spool
from auditor.store import drain_progress, sealer

log = logging.getLogger("auditor.ingest.evidence")

SEAL_INTERVAL = "AUDITOR_SEAL_INTERVAL"
DEFAULT_SEAL_SECONDS = 30.0
# A receipt is stamped just before it is queued for the spool; one stamped a moment before
# the spool's last commit may still be queued. The margin keeps the claim on the safe side.
_STAMP_MARGIN_SECONDS = 1.0


def seal_interval_from_env(environ: Mapping[str, str]) -> float:
    raw = environ.get(SEAL_INTERVAL, "")
    if not raw:
        return DEFAULT_SEAL_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 1.0 <= seconds <= 3600.0:
        raise ConfigError(SEAL_INTERVAL, f"expected seconds between 1 and 3600, got {raw!r}")
    return seconds


def stored_through(spool: Spool, margin: float = _STAMP_MARGIN_SECONDS) -> datetime:
    """The instant before which everything this worker received is stored in PostgreSQL: the
    drain deletes rows from the spool only after their commit. ``margin`` 0 once nothing
    is received any more (at shutdown)."""
    through = datetime.fromtimestamp(spool.durable_through - margin, UTC)
    oldest = spool.oldest_received_at()
    if oldest is not None:
        through = min(through, datetime.fromisoformat(oldest))
    return through


class EvidenceTask:
    def __init__(
        self,
        conninfo: str,
        worker_id: str,
        spool: Spool,
        progress_seconds: float,
        seal_seconds: float | None = None,
    ) -> None:
        self.conninfo = conninfo
        self.worker_id = worker_id
        self.spool = spool
        self.progress_seconds = progress_seconds
        self.seal_seconds = (
            seal_interval_from_env(os.environ) if seal_seconds is None else seal_seconds
        )
        self._conn: psycopg.Connection[Any] | None = None
        self._sealed_at = time.monotonic()

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.conninfo, connect_timeout=5)
        return self._conn

    def final(self) -> None:
        """At shutdown, after the final drain, with every session stopped: record progress
        without the margin and seal. Raises psycopg.Error."""
        self.tick(seal=True, margin=0.0)

    def tick(self, *, seal: bool | None = None, margin: float = _STAMP_MARGIN_SECONDS) -> None:
        """Record drain progress; seal when due (or when told). Raises psycopg.Error."""
        try:
            conn = self._connection()
            with conn.transaction():
                through = stored_through(self.spool, margin)
                drain_progress.record(conn, self.worker_id, through)
            due = time.monotonic() - self._sealed_at >= self.seal_seconds
            if seal or (seal is None and due):
                with conn.transaction():
                    result = sealer.seal(conn)
                self._sealed_at = time.monotonic()
                if result.total:
                    log.info("sealed", extra={"rows": result.sealed, "head": result.head})
        except psycopg.Error:
            self.close()
            raise

    async def run(self) -> None:
        try:
            while True:
                await asyncio.sleep(self.progress_seconds)
                try:
                    await asyncio.to_thread(self.tick)
                except psycopg.Error as exc:
                    log.warning("evidence task failed", extra={"error": str(exc).strip()})
        finally:
            self.close()

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
        self._conn = None
