"""The C extensions' leak check: after a warm-up, more rounds must leave every watched
object's reference count as it was and hold no more memory than ``allowed`` bytes."""

from __future__ import annotations

import os
import resource
import sys
import tracemalloc
from collections.abc import Callable, Sequence


def assert_no_leak(
    run: Callable[[int], None],
    watched: Sequence[object],
    *,
    warm: int,
    rounds: int = 5000,
    allowed: int = 64 * 1024,
) -> None:
    run(warm)
    counts = [sys.getrefcount(obj) for obj in watched]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        run(rounds)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert [sys.getrefcount(obj) for obj in watched] == counts
    assert grown < allowed, f"{grown} bytes still held after {rounds:,} rounds"


def rss_kib() -> int:
    """This process's resident memory now (KiB); its peak where /proc is not there."""
    try:
        with open(f"/proc/{os.getpid()}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
