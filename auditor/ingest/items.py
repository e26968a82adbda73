"""ports.ItemLookup on PostgreSQL: the projection's view of an account, for snapshots'
"Absent" check and reconciliation sweeps, read once the spool has drained far enough.

It owns one connection (autocommit: each read its own statement) shared by every session,
in a thread, under a lock: a connection each cost PostgreSQL a backend start per snapshot,
thousands at a mass re-subscribe. The SQL is in auditor/store/active_items.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import psycopg

from auditor.store import active_items as sql

DRAIN_WAIT = 30.0  # seconds to wait for the spool to drain past a time
T = TypeVar("T")


class ProjectionReader:
    def __init__(
        self,
        connect: Callable[[], psycopg.Connection[Any]],
        drained: Callable[[str, float], Awaitable[None]],
        media_types: Sequence[str],
    ) -> None:
        self._connect = connect
        self._drained = drained
        self.media_types = tuple(media_types)
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()

    def _read(self, query: Callable[[psycopg.Connection[Any]], T]) -> T:
        with self._lock:
            if self._conn is None or self._conn.closed:
                self._conn = self._connect()
            try:
                return query(self._conn)
            except psycopg.Error:
                with contextlib.suppress(psycopg.Error):
                    self._conn.close()
                self._conn = None
                raise

    async def active_items(self, account: str, since: str) -> set[str]:
        """The items the projection shows active for the account from states received
        before `since`, once everything received before `since` is in PostgreSQL (else an
        item that ended in a gap would stay "active" for ever). Raises TimeoutError when the
        drain is behind, psycopg.Error when PostgreSQL is down."""
        await self._drained(since, DRAIN_WAIT)
        media = self.media_types
        return await asyncio.to_thread(
            self._read, lambda conn: sql.active_items(conn, account, since, media)
        )

    async def projected(
        self, account: str, listed: list[str], before: datetime, drained_since: str
    ) -> dict[str, tuple[str | None, bool]]:
        """The projection's states for the listed and the open items of the account (see
        store.active_items.projected_states), once the spool stored what was received before
        `drained_since`."""
        await self._drained(drained_since, DRAIN_WAIT)
        media = self.media_types
        return await asyncio.to_thread(
            self._read, lambda conn: sql.projected_states(conn, account, listed, before, media)
        )

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(psycopg.Error):
                    self._conn.close()
            self._conn = None
