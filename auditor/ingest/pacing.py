"""When the next /meta/connect of a session may go out: the client's side of Bayeux's
`advice.interval`.

At realistic per-agent rates a held long-poll returns with one notification, and each
notification then costs a whole long-poll cycle (request, reply, extensions, the spool's
durability step, the ack), which is most of the worker's CPU per notification. Waiting a
little before the next connect lets the server queue what arrives for the session and send
it in one reply. Nothing is lost by waiting: the server keeps the session and its queue
for `maxInterval` after a reply, and the worker's next connect acknowledges only what is
durable in the spool. What it costs is latency (a notification may reach the spool up to
the wait later) and nothing else: the coverage heartbeat still advances once per cycle, at
least once per `poll_timeout`.

Two settings, both measured in docs/worker.md ("Sizing"):

* `connect_delay`: after a reply that brought notifications, wait this long (a busy agent's
  next ones come together);
* `min_cycle`: the least time from one connect's send to the next's. An idle poll that the
  server held longer than it never waits; a reply that came sooner waits for the rest.

The wait never exceeds half the server's `maxInterval` when its advice states one, so the
server cannot expire the session while the client waits.
"""

from __future__ import annotations

import math

# The most min_cycle may be: half of CometD's default maxInterval (10 s), the time a server
# keeps a session whose client has not come back after a reply. A server advising a shorter
# maxInterval shortens the wait at run time (Pacing.delay).
MAX_MIN_CYCLE = 5.0


def advised_ms(value: object) -> int | float | None:
    """A Bayeux advice's milliseconds (timeout, maxInterval) when it states a positive
    finite number, else None (absent, 0, infinite, or not a number: JSON's true is no
    duration)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < math.inf:
        return value
    return None


class Pacing:
    """One session's connect pacing; times are `time.monotonic()` seconds."""

    __slots__ = ("_last_sent", "connect_delay", "min_cycle")

    def __init__(self, connect_delay: float, min_cycle: float) -> None:
        self.connect_delay = connect_delay
        self.min_cycle = min_cycle
        self._last_sent: float | None = None

    def reset(self) -> None:
        """A new CometD session (handshake): its first connect goes out at once."""
        self._last_sent = None

    def sent(self, at: float) -> None:
        self._last_sent = at

    def delay(self, at: float, brought_notifications: bool, max_interval_ms: object) -> float:
        """Seconds to wait, at `at`, before the next connect goes out."""
        wait = self.connect_delay if brought_notifications else 0.0
        if self.min_cycle > 0 and self._last_sent is not None:
            wait = max(wait, self.min_cycle - (at - self._last_sent))
        if wait <= 0:
            return 0.0
        max_interval = advised_ms(max_interval_ms)
        if max_interval is not None:
            wait = min(wait, max_interval / 2000)
        return wait
