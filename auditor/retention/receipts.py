"""Reading purge receipts back: for `verify` (which positions a receipt vouches for) and for
coverage answers (which time ranges are purged)."""

from __future__ import annotations

import bisect
import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

_RANGE = re.compile(r"\[(\d+),(\d+)\)")
# Only receipts that are in the record count: a receipt row nobody sealed vouches for nothing.
_SEALED = """
SELECT p.id, r.position, p.partition, p.range_from, p.range_to, p.row_count, p.positions,
       p.leaves_sha256, p.purged_at, p.purged_by
FROM purges AS p JOIN record AS r ON r.source = 'purge' AND r.source_id = p.id
ORDER BY r.position
"""
_OVERLAPPING = """
SELECT p.partition, p.range_from, p.range_to, p.row_count, p.purged_at, r.position
FROM purges AS p LEFT JOIN record AS r ON r.source = 'purge' AND r.source_id = p.id
WHERE p.range_from < %s AND p.range_to > %s
ORDER BY p.range_from
"""


def parse_multirange(text: str) -> list[tuple[int, int]]:
    """``{[3,5),[9,10)}`` -> [(3, 5), (9, 10)] (half-open, as PostgreSQL writes them)."""
    return [(int(lo), int(hi)) for lo, hi in _RANGE.findall(text)]


@dataclass
class PurgeReceipt:
    id: int
    position: int  # where the receipt itself sits in the record
    partition: str
    start: datetime
    end: datetime
    rows: int
    ranges: list[tuple[int, int]]
    leaves_sha256: bytes
    purged_at: datetime
    purged_by: str
    seen: int = 0
    digest: Any = field(default_factory=hashlib.sha256)

    @property
    def first(self) -> int:
        return self.ranges[0][0] if self.ranges else 0

    @property
    def last(self) -> int:
        return self.ranges[-1][1] - 1 if self.ranges else 0

    def describe(self) -> str:
        return (
            f"{self.partition} ({self.start:%Y-%m-%d} to {self.end:%Y-%m-%d}, {self.rows} rows)"
            f" purged {self.purged_at:%Y-%m-%d %H:%M} UTC by {self.purged_by};"
            f" receipt at position {self.position}"
        )


class PurgedPositions:
    """Membership of record positions in the sealed receipts (bisect over sorted ranges)."""

    def __init__(self, receipts: list[PurgeReceipt]) -> None:
        self.receipts = receipts
        spans = sorted((lo, hi, r) for r in receipts for lo, hi in r.ranges)
        self._starts = [lo for lo, _, _ in spans]
        self._spans = spans

    def __bool__(self) -> bool:
        return bool(self._spans)

    def receipt_of(self, position: int) -> PurgeReceipt | None:
        i = bisect.bisect_right(self._starts, position) - 1
        if i >= 0:
            lo, hi, receipt = self._spans[i]
            if lo <= position < hi:
                return receipt
        return None


def sealed_receipts(conn: psycopg.Connection[Any]) -> PurgedPositions:
    receipts = [
        PurgeReceipt(
            int(row[0]),
            int(row[1]),
            str(row[2]),
            row[3],
            row[4],
            int(row[5]),
            parse_multirange(str(row[6])),
            bytes(row[7]),
            row[8],
            str(row[9]),
        )
        for row in conn.execute(_SEALED).fetchall()
    ]
    return PurgedPositions(receipts)


@dataclass(frozen=True)
class PurgedRange:
    partition: str
    start: datetime
    end: datetime
    rows: int
    purged_at: datetime
    receipt_position: int | None

    def as_json(self) -> dict[str, Any]:
        def iso(value: datetime) -> str:
            return value.isoformat().replace("+00:00", "Z")

        return {
            "partition": self.partition,
            "from": iso(self.start),
            "to": iso(self.end),
            "rows": self.rows,
            "purged_at": iso(self.purged_at),
            "receipt_position": self.receipt_position,
        }


def purged_ranges(
    conn: psycopg.Connection[Any], start: datetime, end: datetime
) -> list[PurgedRange]:
    """Purges whose month overlaps [start, end): time whose rows are gone by retention."""
    return [
        PurgedRange(str(r[0]), r[1], r[2], int(r[3]), r[4], None if r[5] is None else int(r[5]))
        for r in conn.execute(_OVERLAPPING, (end, start)).fetchall()
    ]


def status(gaps: bool, purged: list[PurgedRange]) -> str:
    """The coverage state of a range: `gaps` (time not listened to or not stored), else
    `purged` (listened to and stored, but retention has dropped some of it), else
    `complete`."""
    if gaps:
        return "gaps"
    return "purged" if purged else "complete"


def mark_purged(
    conn: psycopg.Connection[Any], coverage: dict[str, Any], start: datetime, end: datetime
) -> dict[str, Any]:
    """An evidence pack's coverage status with the purged months of its range, if any."""
    purged = purged_ranges(conn, start, end)
    if purged:
        coverage["purged"] = [p.as_json() for p in purged]
        if coverage.get("status") in ("complete", "empty"):
            coverage["status"] = "purged"
    return coverage
