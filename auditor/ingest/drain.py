"""Spool → PostgreSQL: read the oldest rows, store them through the batch writer in one
transaction, and delete them from the spool only after the commit. A crash between commit
and delete replays the rows; the writer's (receipt_id, received_at) idempotency makes that
a no-op."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import psycopg

from auditor.ingest.metrics import Metrics
from auditor.ingest.spool import Spool, Stored
from auditor.store.receipts import Receipt
from auditor.store.writer import BatchResult, store_batch

log = logging.getLogger("auditor.ingest.drain")

# Called with the receipts of a committed batch and the wall-clock commit time (benchmarks).
OnCommit = Callable[[Sequence[Receipt], float], None]


def to_receipt(item: Stored) -> Receipt:
    row = item.row
    return Receipt(
        receipt_id=uuid.UUID(row.receipt_id),
        received_at=datetime.fromisoformat(row.received_at),
        account=row.account,
        channel=row.channel,
        raw=row.raw,
        kind=row.kind,
    )


class Drainer:
    def __init__(
        self,
        conninfo: str,
        spool: Spool,
        metrics: Metrics,
        batch_size: int,
        on_commit: OnCommit | None = None,
    ) -> None:
        self.conninfo = conninfo
        self.spool = spool
        self.metrics = metrics
        self.batch_size = batch_size
        self.on_commit = on_commit
        self._conn: psycopg.Connection[Any] | None = None
        self.failing_since: float | None = None

    def connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.conninfo, connect_timeout=5)
        return self._conn

    def reset(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
        self._conn = None

    def drain_once(self) -> int:
        """Store one batch; returns how many spool rows it removed (0: spool empty)."""
        items = self.spool.oldest(self.batch_size)
        if not items:
            return 0
        receipts = [to_receipt(i) for i in items]
        started = time.perf_counter()
        try:
            conn = self.connection()
            with conn.transaction():
                result: BatchResult = store_batch(conn, receipts)
        except psycopg.Error as exc:
            self.metrics.drain_errors.inc()
            if self.failing_since is None:
                self.failing_since = time.time()
                log.warning(
                    "PostgreSQL unavailable; keeping %d+ rows in the spool",
                    len(items),
                    extra={"error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__},
                )
            self.reset()
            raise
        committed = time.time()
        if self.failing_since is not None:
            log.info(
                "PostgreSQL reachable again",
                extra={"outage_seconds": round(committed - self.failing_since, 1)},
            )
            self.failing_since = None
        self.spool.delete_through(items[0].seq, items[-1].seq)
        self.metrics.batch_latency.observe(time.perf_counter() - started)
        self.metrics.stored.inc(result.stored)
        self.metrics.duplicates.inc(result.duplicates)
        self.metrics.quarantined.inc(result.quarantined)
        if self.on_commit is not None:
            self.on_commit(receipts, committed)
        return len(items)

    def close(self) -> None:
        self.reset()
