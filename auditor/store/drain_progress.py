"""Drain progress: per worker, the receipt time before which everything it received is stored
in PostgreSQL. Coverage is clipped to it (auditor.store.coverage_queries), so a spool backlog
or a paused drain never counts as complete coverage of stored rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

_UPSERT = """
INSERT INTO drain_progress (worker_id, stored_through, updated_at) VALUES (%s, %s, now())
ON CONFLICT (worker_id) DO UPDATE
SET stored_through = excluded.stored_through, updated_at = excluded.updated_at
"""


def record(conn: psycopg.Connection[Any], worker_id: str, stored_through: datetime) -> None:
    """Record how far a worker's receipts are stored, in the caller's transaction."""
    conn.execute(_UPSERT, (worker_id, stored_through))
