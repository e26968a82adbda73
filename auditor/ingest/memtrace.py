"""Where the worker's memory grows: tracemalloc snapshots diffed over a soak (debugging only).

Set `AUDITOR_TRACEMALLOC=SECONDS` (e.g. 60) and the worker traces its allocations from the
start, takes a first snapshot after one period (once set-up noise is over) and then every
period logs the allocation sites that grew most since that first snapshot, with their net
size and count. Tracing costs CPU and memory of its own, so it is never on by default and
the numbers are for finding a leak, not for sizing. bench/e2e.py's `--tracemalloc` turns it
on for the soak phase.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import tracemalloc
from collections.abc import Mapping

log = logging.getLogger("auditor.ingest.memtrace")
ENV = "AUDITOR_TRACEMALLOC"
_FRAMES = 6  # call-stack depth kept per allocation: enough to see who asked for it
_TOP = 12


def period(environ: Mapping[str, str]) -> float | None:
    """The snapshot period in seconds, or None when tracing is off (unset, 0 or not a number:
    a debugging switch, so a bad value turns it off with a warning rather than stopping)."""
    value = environ.get(ENV, "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        log.warning("not a number of seconds; tracing off", extra={"setting": ENV})
        return None
    return seconds if seconds > 0 else None


def start() -> None:
    tracemalloc.start(_FRAMES)


def _filtered(snapshot: tracemalloc.Snapshot) -> tracemalloc.Snapshot:
    return snapshot.filter_traces(
        (
            tracemalloc.Filter(False, tracemalloc.__file__),
            tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
        )
    )


def growth(first: tracemalloc.Snapshot, now: tracemalloc.Snapshot, top: int = _TOP) -> list[str]:
    """The allocation sites (by traceback) that grew most from `first` to `now`."""
    lines = []
    grown = [stat for stat in now.compare_to(first, "traceback") if stat.size_diff > 0]
    grown.sort(key=lambda stat: stat.size_diff, reverse=True)
    for stat in grown[:top]:
        where = " <- ".join(
            f"{frame.filename.rsplit('/site-packages/', 1)[-1]}:{frame.lineno}"
            for frame in reversed(stat.traceback)  # the allocating line first
        )
        lines.append(
            f"{stat.size_diff / 1024:+.0f} KiB ({stat.count_diff:+d} blocks,"
            f" now {stat.size / 1024:.0f} KiB) {where}"
        )
    return lines


def _report(first: tracemalloc.Snapshot) -> None:
    snapshot = _filtered(tracemalloc.take_snapshot())
    log.warning(
        "tracemalloc: growth since the first snapshot",
        extra={
            "traced": "drain process",
            "traced_kib": tracemalloc.get_traced_memory()[0] // 1024,
            "top": growth(first, snapshot),
        },
    )


def in_thread(seconds: float) -> None:
    """The same reports from a daemon thread, for a process without an event loop (the
    drain process, which inherits AUDITOR_TRACEMALLOC from the worker)."""
    start()

    def loop() -> None:
        stop = threading.Event()
        stop.wait(seconds)
        first = _filtered(tracemalloc.take_snapshot())
        log.warning(
            "tracemalloc: first snapshot",
            extra={
                "traced": "drain process",
                "traced_kib": tracemalloc.get_traced_memory()[0] // 1024,
            },
        )
        while not stop.wait(seconds):
            _report(first)

    threading.Thread(target=loop, name="memtrace", daemon=True).start()


async def run(seconds: float) -> None:
    """Log the growth since the first snapshot every `seconds` (runs until cancelled)."""
    await asyncio.sleep(seconds)
    first = await asyncio.to_thread(lambda: _filtered(tracemalloc.take_snapshot()))
    traced = tracemalloc.get_traced_memory()[0]
    log.warning(
        "tracemalloc: first snapshot", extra={"traced": "worker", "traced_kib": traced // 1024}
    )
    while True:
        await asyncio.sleep(seconds)
        # take_snapshot copies the traces under the GIL; comparing runs in a thread.
        snapshot = _filtered(tracemalloc.take_snapshot())
        lines = await asyncio.to_thread(growth, first, snapshot)
        traced = tracemalloc.get_traced_memory()[0]
        log.warning(
            "tracemalloc: growth since the first snapshot",
            extra={"traced": "worker", "traced_kib": traced // 1024, "top": lines},
        )
