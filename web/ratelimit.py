"""Failed authentications per client address, in fixed one-minute windows, in bounded memory.

Per process: under gunicorn each worker counts on its own, so a client may fail up to
workers x the limit a minute before every worker refuses it (docs/api.md)."""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

WINDOW_SECONDS = 60.0
CAPACITY = 10_000  # addresses remembered; the one that failed longest ago is forgotten first


def limit_key(address: str | None) -> str:
    """IPv6 clients are counted per /64 (one host usually holds a whole /64)."""
    if address is None:
        return "-"
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


class FailureLimiter:
    def __init__(
        self,
        per_window: int,
        *,
        capacity: int = CAPACITY,
        window: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = per_window
        self._capacity = capacity
        self._window = window
        self._clock = clock
        self._lock = threading.Lock()  # gthread workers serve requests from several threads
        self._failures: OrderedDict[str, tuple[float, int]] = OrderedDict()  # key -> start, n

    def __len__(self) -> int:
        return len(self._failures)

    def retry_after(self, address: str | None) -> int | None:
        """Seconds until this client may try again, or None when it may now."""
        key = limit_key(address)
        with self._lock:
            entry = self._failures.get(key)
            if entry is None:
                return None
            start, count = entry
            left = start + self._window - self._clock()
            if left <= 0:
                del self._failures[key]
                return None
            return math.ceil(left) if count >= self._limit else None

    def failed(self, address: str | None) -> None:
        key = limit_key(address)
        now = self._clock()
        with self._lock:
            start, count = self._failures.pop(key, (now, 0))
            if start + self._window <= now:
                start, count = now, 0
            self._failures[key] = (start, count + 1)  # now the most recent
            while len(self._failures) > self._capacity:
                self._failures.popitem(last=False)
