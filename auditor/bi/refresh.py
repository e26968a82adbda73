"""The BI summaries (bi_segments, bi_user_data_changes, bi_findings) follow the events by
auditor_bi_refresh(): every interaction with events past the watermark is recomputed. The
views are exact either way (they compute the pending interactions live); the refresh only
keeps them fast, and bi.summary_freshness says how far it has got.

The refresh yields to a busy writer: while events are stored at BUSY_RATE or more, each batch
is followed by a pause so that the refresh works at most DEFAULT_DUTY of the wall time (the
writer keeps its cores); at a trickle, or idle, it runs batch after batch at full speed and
catches up.
Functions take a connection and never commit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

DEFAULT_BATCH = 20_000
# Events per batch while the writer is busy: a short transaction, so a pause comes soon.
DEFAULT_PACED_BATCH = 5_000
# Share of the wall time the refresh may work while the writer stores events. At 0.1 the
# refresh (process and backend) took 9.4% of the writer's CPU beside it (bench/bi_writer.py,
# a 2-core machine at load 20): 0.05 keeps it clearly under the 10% the writer may lose.
DEFAULT_DUTY = 0.05
# Events/s stored during a batch from which the writer counts as busy: a contact centre's
# average (4,000,000 a day is 46/s) leaves the refresh at full speed; a backlog drained or an
# import at thousands per second makes it yield.
BUSY_RATE = 500.0
# Never pause longer than this after one batch (a slow batch on a busy machine).
MAX_PAUSE = 60.0


def refresh_once(conn: psycopg.Connection[Any], max_events: int = DEFAULT_BATCH) -> int:
    """Fold up to max_events events past the watermark; returns how many (0: caught up, or
    another refresh holds the lock)."""
    row = conn.execute("SELECT auditor_bi_refresh(%s)", (max_events,)).fetchone()
    return int(row[0]) if row else 0


def pending_events(conn: psycopg.Connection[Any]) -> int:
    """Events stored past the watermark."""
    row = conn.execute(
        "SELECT count(*) FROM events"
        " WHERE id > (SELECT last_event_id FROM bi_refresh_state WHERE id = 1)"
    ).fetchone()
    return int(row[0]) if row else 0


def writer_position(conn: psycopg.Connection[Any]) -> int:
    """The event id sequence's position: it moves whenever the writer stores events (read
    outside any snapshot, so it also sees batches not yet committed)."""
    row = conn.execute("SELECT last_value FROM events_id_seq").fetchone()
    return int(row[0]) if row else 0


@dataclass(frozen=True)
class Pacer:
    """How long to wait after a batch: nothing while the writer is idle or trickling (catch up
    at full speed), else enough that the refresh works ``duty`` of the wall time."""

    duty: float = DEFAULT_DUTY
    busy_rate: float = BUSY_RATE

    def __post_init__(self) -> None:
        if not 0 < self.duty <= 1:
            raise ValueError("the refresh's duty must be in (0, 1]")

    def pause(self, worked: float, stored: int) -> float:
        """``stored``: events the writer stored during the ``worked`` seconds of the batch."""
        if stored < self.busy_rate * worked:
            return 0.0
        return min(MAX_PAUSE, worked * (1 - self.duty) / self.duty)
