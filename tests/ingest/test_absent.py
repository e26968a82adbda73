"""The "Absent" check after a snapshot: an item the projection shows active but the GET no
longer lists is recorded as Absent, even when the check can only be made later (the drain
behind, PostgreSQL down) instead of being given up."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from auditor.ingest.snapshot import record_absent
from auditor.ingest.spool import Row, Spool

SINCE = "2026-12-02T00:00:00.000000+00:00"


@dataclass
class _Coverage:
    fences: dict[str, int] = field(default_factory=dict)
    logged: list[tuple[str, str]] = field(default_factory=list)

    def log(self, at: Any, account: str, event: str, detail: str) -> None:
        self.logged.append((event, detail))


def _absent_rows(spool: Spool) -> list[dict[str, Any]]:
    rows: list[Row] = [r.row for r in spool.oldest(100)]
    return [json.loads(r.raw) for r in rows]


def test_an_absent_check_the_drain_delays_is_retried_until_it_is_made(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite3")
    coverage = _Coverage(fences={"agent001": 7})
    calls: list[str] = []

    async def active_items(account: str, since: str) -> set[str]:
        calls.append(since)
        if len(calls) < 3:
            raise TimeoutError("the drain is behind")
        return {"gone-in-the-gap", "still-here"}

    source = SimpleNamespace(
        account="agent001",
        active_items=active_items,
        spool=spool,
        coverage=coverage,
        config=SimpleNamespace(media_types=["email"]),
    )

    async def main() -> None:
        await asyncio.wait_for(
            record_absent(source, {"still-here"}, SINCE, retry_delay=0.01),  # type: ignore[arg-type]
            5,
        )
        await spool.wait_committed(spool.put_count)

    asyncio.run(main())
    assert calls == [SINCE, SINCE, SINCE]  # the same snapshot's time at every try
    [absent] = _absent_rows(spool)
    assert absent["data"]["openmedia"] == {"id": "gone-in-the-gap", "state": "Absent"}
    assert absent["snapshot"]["absent"] is True
    assert absent["snapshot"]["fence"] == 7
    assert ("snapshot", "1 absent") in coverage.logged
    spool.close()
