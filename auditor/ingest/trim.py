"""Hand freed heap memory back to the operating system (glibc's `malloc_trim`).

The soaks' slow RSS growth (about 0.5 MB a minute at 1,000/s over 1,000 agents, still
rising after 30 minutes) was not a leak of Python objects: tracemalloc showed both the
worker's and the drain process's traced memory flat (about 47 MB and under 10 MB) while
their RSS crept up. It was memory that Python and the C libraries (SQLite, libpq, orjson)
had freed but glibc kept: every larger-than-usual batch or burst of replies raised the heap's
high-water mark, and a fragmented heap is not given back from its middle. Calling
`malloc_trim(0)` on a running worker under that load (tracemalloc on) gave back 55 MB of
333 MB, and 17 MB of 95 MB in its drain process. So both processes trim every
`TRIM_INTERVAL` seconds.

Elsewhere than glibc (musl, macOS) there is no `malloc_trim`; `release()` then does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable

TRIM_INTERVAL = 30.0  # seconds between trims


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    function: Callable[[int], int] = trim
    return function


_TRIM = _malloc_trim()


def available() -> bool:
    return _TRIM is not None


def release() -> bool:
    """Return free heap pages to the OS; True if any memory was released."""
    return _TRIM is not None and _TRIM(0) == 1
