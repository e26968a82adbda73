"""The soak's leak finder (AUDITOR_TRACEMALLOC, auditor/ingest/memtrace.py)."""

from __future__ import annotations

import linecache
import logging
import tracemalloc

import pytest

from auditor.ingest import memtrace


def test_growth_names_the_line_that_kept_memory() -> None:
    kept: list[bytes] = []
    tracemalloc.start(memtrace._FRAMES)
    try:
        first = tracemalloc.take_snapshot()
        kept.extend(bytes(1000) + bytes([i % 256]) for i in range(2000))  # the leak
        now = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    lines = memtrace.growth(first, now)
    assert lines, "no growth reported"
    size, _, where = lines[0].partition(" KiB")
    assert 1_900 < int(size) < 2_300  # 2,000 x 1 KB
    site = where.split(") ", 1)[1].split(" <- ")[0]
    path, _, line = site.rpartition(":")
    assert path == __file__
    assert "# the leak" in linecache.getline(path, int(line))


def test_the_switch_is_off_unless_a_positive_number_of_seconds() -> None:
    assert memtrace.period({}) is None
    assert memtrace.period({memtrace.ENV: "0"}) is None
    assert memtrace.period({memtrace.ENV: "soon"}) is None
    assert memtrace.period({memtrace.ENV: "60"}) == 60.0


def test_the_reports_are_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    """A report is one structured log line (a reserved LogRecord name among its fields
    once made the reporting thread die silently)."""
    tracemalloc.start(memtrace._FRAMES)
    try:
        first = tracemalloc.take_snapshot()
        with caplog.at_level(logging.WARNING, logger="auditor.ingest.memtrace"):
            memtrace._report(first)
    finally:
        tracemalloc.stop()
    (record,) = caplog.records
    assert record.traced == "drain process"  # type: ignore[attr-defined]
    assert isinstance(record.top, list)  # type: ignore[attr-defined]
