"""Export slots: at most N exports at once per API token, across every API process.

A slot is a transaction-level advisory lock, so it is released when the export's transaction
ends, however it ends (a client gone, a worker killed)."""

from __future__ import annotations

from typing import Any

import psycopg

EXPORT_LOCK_SPACE = 0x61756478  # "audx": the first key of every export slot's advisory lock


def try_slot(conn: psycopg.Connection[Any], token_id: int, slot: int) -> bool:
    """Take the token's slot number ``slot`` for the rest of the caller's transaction, if no
    other export holds it."""
    key = (token_id % 30_000_000) * 64 + slot  # fits PostgreSQL's int4
    row = conn.execute(
        "SELECT pg_try_advisory_xact_lock(%s::int4, %s::int4)", (EXPORT_LOCK_SPACE, key)
    ).fetchone()
    return row is not None and bool(row[0])
