"""Fakes of the worker's interfaces (auditor/ingest/ports.py) for the unit tests here; the
storage tests use the real PostgreSQL, the transport tests the real simulator."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any


class FakeClock:
    """ports.Clock whose time moves only when told, or by what is slept: a sleep advances
    the clock at once and yields to the loop, so a test never waits for real time."""

    def __init__(self, start: datetime | None = None) -> None:
        self.wall = start or datetime.now(UTC)
        self.mono = 1000.0
        self.slept: list[float] = []

    def now(self) -> datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(max(0.0, seconds))
        await asyncio.sleep(0)


class RecordingCoverageStorage:
    """ports.CoverageStorage that records the operations in the order they arrive."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self._next = 0

    def open_interval(
        self,
        account: str,
        worker_id: str,
        client_id: str | None,
        channels: list[str],
        started_at: datetime,
        fence: int | None,
    ) -> int | None:
        self._next += 1
        self.calls.append(("open", account, client_id, started_at))
        return self._next

    def close_interval(self, interval_id: int, ended_at: datetime, reason: str) -> None:
        self.calls.append(("close", interval_id, ended_at, reason))

    def close_stale(self, account: str, reason: str, mine: list[int]) -> None:
        self.calls.append(("close_stale", account))

    def insert_logs(
        self, rows: Sequence[tuple[datetime, str, str, str, str | None, int | None]]
    ) -> None:
        self.calls.extend(("log", r[3], r[4]) for r in rows)

    def heartbeats(self, ids: list[int], times: list[datetime]) -> None:
        self.calls.extend(("heartbeat", i, t) for i, t in zip(ids, times, strict=True))


async def until(what: str, condition: Any, timeout: float = 10.0) -> None:
    """Yield to the loop until `condition()` holds (a condition, never a fixed sleep)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)
    assert condition(), what
