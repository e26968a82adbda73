"""Spool → PostgreSQL: read the oldest rows, store them through the batch writer in one
transaction, and delete them from the spool only after the commit. A crash between commit
and delete replays the rows; the writer's (receipt_id, received_at) idempotency makes that
a no-op.

A Drainer only needs the spool file and a conninfo, so it runs in the drain process while
the worker receives (auditor.ingest.drain_process), and in the worker itself for the final
drain at shutdown. Either way it hands back a BatchReport, which the worker records.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from auditor.ingest.fencing import without_stale_snapshots
from auditor.ingest.spool import SpoolReader, Stored
from auditor.store.receipts import Receipt
from auditor.store.writer import store_batch

log = logging.getLogger("auditor.ingest.drain")


@dataclass(frozen=True, slots=True)
class BatchReport:
    """One committed batch, small enough to pass between processes."""

    stored: int
    duplicates: int
    quarantined: int
    seconds: float  # read, store, commit and delete
    committed: float  # wall clock (time.time()) of the commit
    # received_at (epoch seconds) of the batch's notifications, when asked for (benchmarks)
    received_at: tuple[float, ...] = ()
    fenced: int = 0  # snapshots left out: their lease had passed to another worker


# Called with each committed batch's report (benchmarks measure latency with it).
OnCommit = Callable[[BatchReport], None]


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
        self, conninfo: str, spool: SpoolReader, batch_size: int, with_times: bool = False
    ) -> None:
        self.conninfo = conninfo
        self.spool = spool
        self.batch_size = batch_size
        self.with_times = with_times
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

    def drain_once(self) -> BatchReport | None:
        """Store one batch; None when the spool is empty. A psycopg.Error escaping from here
        left the rows in the spool."""
        started = time.perf_counter()
        items = self.spool.oldest(self.batch_size)
        if not items:
            return None
        receipts = [to_receipt(i) for i in items]
        try:
            conn = self.connection()
            with conn.transaction():
                kept, fenced = without_stale_snapshots(conn, receipts)
                result = store_batch(conn, kept)
        except psycopg.Error as exc:
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
        times: tuple[float, ...] = ()
        if self.with_times:
            times = tuple(r.received_at.timestamp() for r in receipts if r.kind == "notification")
        return BatchReport(
            stored=result.stored,
            duplicates=result.duplicates,
            quarantined=result.quarantined,
            seconds=time.perf_counter() - started,
            committed=committed,
            received_at=times,
            fenced=fenced,
        )

    def close(self) -> None:
        self.reset()
