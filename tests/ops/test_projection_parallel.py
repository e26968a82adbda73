"""`auditor projection check/rebuild --jobs N`: the fold split over several sessions in one
snapshot, each into its own scratch table, merged into the first, gives exactly the scratch
table of one session folding everything, for interactions whose events lie in several
partitions and on top of a purge's projection_baseline."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import URL

from auditor.config import libpq_conninfo
from auditor.sample import generate
from auditor.store import projection_rebuild
from auditor.store.writer import store_batch
from tests.helpers import from_sample
from tests.retention.support import run

Conn = psycopg.Connection[Any]
MONTHS = [datetime(2023, 1, 3, tzinfo=UTC), datetime(2023, 2, 3, tzinfo=UTC)] + [
    datetime(2026, m, 3, tzinfo=UTC) for m in (8, 9, 10)
]


@pytest.fixture
def spread(fresh_db: URL) -> URL:
    """The sample's events dealt round the months (so nearly every interaction has events
    in several partitions), then the two 2023 months purged: their share of the
    interactions with events left is in projection_baseline."""
    lines = [from_sample(line) for line in generate(interactions=50, extra_updates=3)]
    dealt = [
        dataclasses.replace(r, received_at=MONTHS[n % len(MONTHS)] + timedelta(seconds=n))
        for n, r in enumerate(lines)
    ]
    with psycopg.connect(libpq_conninfo(fresh_db), autocommit=True) as conn:
        for month in MONTHS:
            conn.execute("SELECT auditor_ensure_event_partition(%s)", (month.date(),))
        with conn.transaction():
            for n in range(0, len(dealt), 40):
                store_batch(conn, dealt[n : n + 40])
        dropped = run(conn, 24).dropped
        assert [d["partition"] for d in dropped] == ["events_2023_01", "events_2023_02"]
        row = conn.execute("SELECT count(*) FROM projection_baseline").fetchone()
        assert row is not None
        assert row[0] > 10
    return fresh_db


def _scratch(
    url: URL, jobs: int, chunk: int, by_partition: bool
) -> tuple[projection_rebuild.Report, list[tuple[Any, ...]]]:
    def another() -> Conn:
        return psycopg.connect(libpq_conninfo(url))

    seen: list[tuple[int, int]] = []
    with psycopg.connect(libpq_conninfo(url)) as conn:
        report = projection_rebuild.check(
            conn,
            lambda done, total: seen.append((done, total)),
            chunk,
            by_partition=by_partition,
            jobs=jobs,
            connect=another,
        )
        rows = conn.execute(
            f"SELECT {projection_rebuild.projection.FOLDED_COLUMNS}, state, capabilities,"
            f" completed_at FROM pg_temp.{projection_rebuild.SCRATCH} ORDER BY interaction_id"
        ).fetchall()
        conn.rollback()
    # The bar only goes forward, and ends at every event.
    assert seen[-1] == (report.events, report.events)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    return report, rows


@pytest.mark.parametrize("by_partition", [True, False], ids=["by partition", "by id"])
def test_the_parallel_fold_equals_the_serial_one(
    spread: URL, login_url: Callable[[URL, str], URL], by_partition: bool
) -> None:
    url = login_url(spread, "reader")
    serial, expected = _scratch(url, 1, projection_rebuild.DEFAULT_CHUNK, by_partition)
    assert serial.differences == []
    assert serial.baseline > 10
    # first_seen_at and last_seen_at in different months: events in several partitions.
    spanning = [row for row in expected if row[8].strftime("%Y%m") != row[9].strftime("%Y%m")]
    assert len(spanning) > 10
    for jobs, chunk in ((2, projection_rebuild.DEFAULT_CHUNK), (2, 7), (3, 5)):
        report, rows = _scratch(url, jobs, chunk, by_partition)
        assert rows == expected, (jobs, chunk)
        assert report.differences == []
        assert (report.events, report.interactions, report.baseline) == (
            serial.events,
            serial.interactions,
            serial.baseline,
        )


def test_a_parallel_check_finds_a_corruption_and_a_parallel_rebuild_fixes_it(
    spread: URL, login_url: Callable[[URL, str], URL]
) -> None:
    with psycopg.connect(libpq_conninfo(spread), autocommit=True) as conn:
        victim = conn.execute(
            "SELECT b.interaction_id FROM projection_baseline AS b ORDER BY 1 LIMIT 1"
        ).fetchone()
        assert victim is not None
        conn.execute(
            "UPDATE interactions SET event_count = event_count + 5, user_data = NULL"
            " WHERE interaction_id = %s",
            victim,
        )
    report, _ = _scratch(spread, 2, 9, True)
    [found] = report.differences
    assert (found.interaction_id, found.kind) == (victim[0], "differs")
    assert set(found.columns) == {"event_count", "user_data"}

    writer = login_url(spread, "writer")
    with psycopg.connect(libpq_conninfo(writer)) as conn:
        fixed = projection_rebuild.rebuild(
            conn, chunk=9, jobs=2, connect=lambda: psycopg.connect(libpq_conninfo(writer))
        )
    assert fixed.fixed == 1
    assert _scratch(spread, 2, 9, True)[0].differences == []
