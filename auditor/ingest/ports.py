"""The worker's I/O, as small interfaces (typing.Protocol).

Sessions, coverage, leases, snapshots and sweeps talk to the outside world only through
these, so each can be driven in-process by a test: the real implementations (SQLite spool,
PostgreSQL through auditor/store functions, the system clock) in production, an in-memory
spool or a fake clock in tests (tests/inprocess/). The SQL behind the storage interfaces
lives in auditor/store (coverage_writes.py, leases.py, active_items.py); the worker's tasks
own the connection and the transaction and hand the store functions a connection.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from auditor.ingest.spool import Row, Stored


class Clock(Protocol):
    """Wall time (UTC) for what is recorded, monotonic time and sleeps for schedules."""

    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SystemClock:
    """The real clock. `now` is a plain function (a staticmethod): a session binds it once,
    so calling it costs what the module-level now() it replaces cost."""

    now = staticmethod(_utc_now)

    @staticmethod
    def monotonic() -> float:
        return time.monotonic()

    @staticmethod
    async def sleep(seconds: float) -> None:
        await asyncio.sleep(seconds)


SYSTEM_CLOCK = SystemClock()


class SpoolPort(Protocol):
    """The durable local spool as the sessions, the drain and the evidence task use it.

    Rows are numbered by put order; `wait_committed(n)` returns once rows 1..n are durable,
    and only durable rows are read by `oldest`. Implemented by spool.Spool (SQLite, the
    worker's) and memspool.MemorySpool (its in-memory twin, for tests); both are checked by
    one contract suite (tests/inprocess/test_spool_contract.py)."""

    @property
    def put_count(self) -> int: ...

    @property
    def committed_count(self) -> int: ...

    @property
    def durable_through(self) -> float: ...

    def put(self, row: Row) -> int: ...

    def put_many(self, rows: list[Row]) -> int: ...

    async def wait_committed(self, number: int) -> None: ...

    def depth(self) -> int: ...

    def oldest(self, limit: int) -> list[Stored]: ...

    def delete_through(self, first: int, last: int) -> int: ...

    def oldest_received_at(self) -> str | None: ...

    def close(self) -> None: ...


class CoverageStorage(Protocol):
    """Where coverage operations go, in one transaction the caller owns
    (auditor/store/coverage_writes.py behind ingest.coverage.PgCoverageStorage)."""

    def open_interval(
        self,
        account: str,
        worker_id: str,
        client_id: str | None,
        channels: list[str],
        started_at: datetime,
        fence: int | None,
    ) -> int | None: ...

    def close_interval(self, interval_id: int, ended_at: datetime, reason: str) -> None: ...

    def close_stale(self, account: str, reason: str, mine: list[int]) -> None: ...

    def insert_logs(
        self,
        rows: Sequence[tuple[datetime, str, str, str, str | None, int | None]],
    ) -> None: ...

    def heartbeats(self, ids: list[int], times: list[datetime]) -> None: ...


class LeaseStorage(Protocol):
    """The account_leases table, in one transaction the caller owns
    (auditor/store/leases.py behind ingest.leases.PgLeaseStorage)."""

    def claim(self, account: str, me: str, ttl: float) -> int | None: ...

    def try_claim(self, account: str, me: str, ttl: float) -> int | None:
        """claim() in a savepoint that gives up on a held row lock: raises BusyLease."""
        ...

    def renew(self, me: str, accounts: list[str], ttl: float) -> set[str]: ...

    def live_others(self, me: str) -> int: ...

    def release(self, me: str, accounts: list[str]) -> None: ...

    def remove_presence(self, presence: str) -> None: ...


class ItemLookup(Protocol):
    """What the projection shows for an account, once the spool has drained far enough
    (ingest.items.ProjectionReader over auditor/store/active_items.py)."""

    async def active_items(self, account: str, since: str) -> set[str]: ...

    async def projected(
        self, account: str, listed: list[str], before: datetime, drained_since: str
    ) -> dict[str, tuple[str | None, bool]]: ...
