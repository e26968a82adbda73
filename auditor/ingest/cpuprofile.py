"""A deterministic CPU profile of the worker's event loop thread, for finding where a
long-poll cycle's time goes (docs/worker.md, "Sizing").

Set `AUDITOR_CPROFILE=PATH` and `auditor ingest` runs its event loop under cProfile and
writes the statistics to PATH (pstats format, `python -m pstats PATH`) when it exits; its
drain process does the same into PATH.drain. The timer is the thread's CPU time.
Sampling profilers see little under uvloop (its loop and callbacks run in C, so py-spy
attributes most samples to the loop itself); cProfile counts every Python call instead,
so the cost per /meta/connect of each layer (aiocometd, the lean HTTP client, our
extension, the receive loop) is its cumulative time divided by the number of connects.
cProfile slows the worker down (about twofold): shares and counts, not absolute times.

With `AUDITOR_CPROFILE_WINDOW=1` as well, profiling starts off and follows signals: SIGUSR1
starts it, SIGUSR2 stops it (the benchmark sends them at its measuring window's start and
end, to the worker and its drain process), so set-up and shutdown are not in the numbers.
"""

from __future__ import annotations

import contextlib
import cProfile
import logging
import signal
import time
from collections.abc import Iterator, Mapping

ENV = "AUDITOR_CPROFILE"
WINDOW_ENV = "AUDITOR_CPROFILE_WINDOW"
log = logging.getLogger("auditor.ingest.cpuprofile")


@contextlib.contextmanager
def profiled(environ: Mapping[str, str], suffix: str = "") -> Iterator[None]:
    """Profile the block when AUDITOR_CPROFILE names a file (PATH + suffix: the drain
    process writes PATH.drain); else do nothing."""
    path = environ.get(ENV)
    if not path:
        yield
        return
    # The thread's own CPU time, not wall-clock time: a long-poll's wait and the other
    # threads' work (the spool's writer) are not charged to whatever the loop was running.
    profile = cProfile.Profile(time.thread_time)
    if environ.get(WINDOW_ENV) == "1":
        # Signal handlers run in the main thread, the one profiled (the event loop's, or
        # the drain process's loop).
        signal.signal(signal.SIGUSR1, lambda *_: profile.enable())
        signal.signal(signal.SIGUSR2, lambda *_: profile.disable())
    else:
        profile.enable()
    try:
        yield
    finally:
        profile.disable()
        try:
            profile.dump_stats(path + suffix)
        except OSError as exc:
            log.error("cannot write the CPU profile", extra={"path": path, "error": str(exc)})
