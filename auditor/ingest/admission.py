"""Admission control: what keeps thousands of sessions from collapsing the worker.

A session that is up costs one long-poll cycle per `poll_timeout`; a session being set up
costs far more (login GET, handshake, first connect, subscribe, snapshot GET, a PostgreSQL
query). When many sessions fail together (GWS restarted, a network blip) and all set up
again at once, the event loop saturates, the sessions that were still up miss their
long-poll deadlines, the server expires them, and they join the storm. So:

* set-ups take a slot: at most `max_setups` at once, started at most `setup_rate` per second
  (token bucket), and none while the event loop lags more than `saturation_lag` seconds;
  sessions that are up never wait for anything here, so they stay up while others queue;
* at most `max_sessions` sessions are held (0: no limit); the accounts beyond it wait with
  a stated reason (a gap, in coverage terms) until a held session ends;
* a shared failure budget: a session's retry delay is its own capped, jittered exponential
  backoff plus a jittered share of the recent failures of *all* sessions divided by the
  set-up rate, so a mass failure spreads its retries over the time the rate needs instead
  of hammering the queue (and GWS) together.

Every account's state (subscribed, setting up, backoff or waiting, with the reason) is kept
here for /readyz and the metrics.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass

from auditor.ingest.metrics import Metrics

SUBSCRIBED, SETTING_UP, BACKOFF, WAITING = "subscribed", "setting up", "backoff", "waiting"
_FAILURE_WINDOW = 30.0  # seconds of failures that count towards the shared budget
_LAG_PERIOD = 0.1  # seconds between event-loop lag probes
_LAG_MEMORY = 3.0  # seconds a high lag keeps the worker saturated after it was seen
_LAG_PROBES = 20  # probes averaged (at least 2 s)


@dataclass
class AccountState:
    state: str
    reason: str
    since: float


class Admission:
    def __init__(
        self,
        metrics: Metrics,
        max_setups: int,
        setup_rate: float,
        max_sessions: int,
        saturation_lag: float,
        on_not_served: Callable[[str, str], None] | None = None,
    ) -> None:
        self.metrics = metrics
        self.max_setups = max_setups
        self.setup_rate = setup_rate
        self.max_sessions = max_sessions
        self.saturation_lag = saturation_lag
        # Called once when an account starts waiting because max_sessions is reached.
        self.on_not_served = on_not_served
        self.accounts: dict[str, AccountState] = {}
        self.held = 0  # sessions counted against max_sessions (set up or subscribed)
        self.setups = 0
        self.lag = 0.0
        self._lag_seen_at = -1e9
        self._tokens = float(min(max_setups, max(1.0, setup_rate)))
        self._refilled = time.monotonic()
        self._failures: deque[float] = deque()
        # FIFO queues of waiters; steps of held sessions go first. One dispatcher task hands
        # out slots, so a released slot wakes one waiter, not all of them.
        self._steps: deque[tuple[str, asyncio.Future[None]]] = deque()
        self._new: deque[tuple[str, asyncio.Future[None]]] = deque()
        self._wake = asyncio.Event()
        self._scanned: tuple[int, str] = (0, "")

    # -- account states (for /readyz) -------------------------------------------------------

    def set_state(self, account: str, state: str, reason: str = "") -> None:
        current = self.accounts.get(account)
        if current is None or current.state != state or current.reason != reason:
            self.accounts[account] = AccountState(state, reason, time.monotonic())

    def forget(self, account: str) -> None:
        self.accounts.pop(account, None)

    def counts(self) -> dict[str, int]:
        counts = {SUBSCRIBED: 0, SETTING_UP: 0, BACKOFF: 0, WAITING: 0}
        for state in self.accounts.values():
            counts[state.state] = counts.get(state.state, 0) + 1
        return counts

    # -- saturation ---------------------------------------------------------------------------

    @property
    def lagging(self) -> bool:
        return time.monotonic() - self._lag_seen_at < _LAG_MEMORY

    @property
    def setting_up(self) -> bool:
        """Sessions hold set-up slots or wait for one (a mass (re-)subscription); accounts
        that wait only because max_sessions is reached do not count."""
        waiting = bool(self._new) and not self.at_capacity
        return self.setups > 0 or bool(self._steps) or waiting

    @property
    def at_capacity(self) -> bool:
        return bool(self.max_sessions) and self.held >= self.max_sessions

    @property
    def saturated(self) -> bool:
        """The loop lagged recently, or accounts wait because max_sessions is reached."""
        return self.lagging or (self.at_capacity and bool(self._new))

    def waiting_reason(self) -> str:
        if self.at_capacity:
            return f"not served: max_sessions ({self.max_sessions}) reached"
        if self.lagging:
            return f"worker saturated (event loop lag {self.lag:.2f} s)"
        return "waiting for a set-up slot"

    async def watch_lag(self) -> None:
        """Probe the event loop: how late does a timer fire? Late timers mean every session's
        long-poll is late too. The mean over the last `_LAG_PROBES` probes is compared with
        saturation_lag: one long pause (a full garbage collection of a large heap takes a
        second or two while thousands of sessions are set up) is not saturation; timers late
        probe after probe are."""
        loop = asyncio.get_running_loop()
        probes: deque[float] = deque(maxlen=_LAG_PROBES)
        while True:
            planned = loop.time() + _LAG_PERIOD
            await asyncio.sleep(_LAG_PERIOD)
            probes.append(max(0.0, loop.time() - planned))
            self.lag = sum(probes) / len(probes)
            if self.lag > self.saturation_lag:
                self._lag_seen_at = time.monotonic()
            self.metrics.loop_lag.set(self.lag)
            self.metrics.saturated.set(1 if self.saturated else 0)
            self.metrics.setups.set(self.setups)
            self.metrics.waiting.set(len(self._new) + len(self._steps))
            self._wake.set()  # the lag may have cleared

    # -- set-up slots -------------------------------------------------------------------------

    def _take_token(self) -> float:
        """0 if a token was taken, else the seconds until one is there."""
        now = time.monotonic()
        self._tokens = min(
            float(self.max_setups), self._tokens + (now - self._refilled) * self.setup_rate
        )
        self._refilled = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.setup_rate

    async def dispatch(self) -> None:
        """Hand out slots in order: steps of held sessions first, then new sessions."""
        while True:
            delay: float | None = None
            for queue, new in ((self._steps, False), (self._new, True)):
                while queue and queue[0][1].done():  # cancelled while waiting
                    queue.popleft()
                if not queue or self.setups >= self.max_setups or self.lagging:
                    continue
                if new and self.at_capacity:
                    scan = (len(queue), self.waiting_reason())
                    if scan != self._scanned:  # new waiters, or a new reason
                        self._scanned = scan
                        for account, _ in queue:
                            self._not_served(account)
                    continue
                delay = self._take_token()
                if delay == 0.0:
                    account, future = queue.popleft()
                    self.setups += 1
                    if new:
                        self.held += 1
                    future.set_result(None)
                break
            if delay == 0.0:
                continue
            self._wake.clear()
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancel
            # that arrives as the event is set, and this loop would then never end.
            with suppress(TimeoutError):
                async with asyncio.timeout(delay if delay else 1.0):
                    await self._wake.wait()

    def _not_served(self, account: str) -> None:
        state = self.accounts.get(account)
        reason = self.waiting_reason()
        if state is None or state.reason != reason:
            self.set_state(account, WAITING, reason)
            if self.on_not_served is not None:
                self.on_not_served(account, reason)

    async def acquire(self, account: str, new_session: bool) -> None:
        """Wait for a set-up slot; with new_session, also for room under max_sessions (the
        caller then holds both: release_setup() and release_session())."""
        if new_session:
            self.set_state(account, WAITING, "waiting for a set-up slot")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        (self._new if new_session else self._steps).append((account, future))
        self._wake.set()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():  # got the slot as we were cancelled
                self.release_setup()
                if new_session:
                    self.release_session()
            raise
        if new_session:
            self.set_state(account, SETTING_UP, "login and handshake")

    def release_setup(self) -> None:
        self.setups -= 1
        self._wake.set()

    def release_session(self) -> None:
        self.held -= 1
        self._wake.set()

    @asynccontextmanager
    async def step(self, account: str) -> AsyncIterator[None]:
        """A slot for one set-up step of a session that is already held (a snapshot)."""
        await self.acquire(account, new_session=False)
        try:
            yield
        finally:
            self.release_setup()

    # -- the shared failure budget ------------------------------------------------------------

    def failed(self) -> None:
        self._failures.append(time.monotonic())

    def retry_delay(self, own: float) -> float:
        """`own` (the session's jittered backoff) plus a jittered share of everyone's recent
        failures: n failures at setup_rate per second need n / rate seconds to set up again."""
        cutoff = time.monotonic() - _FAILURE_WINDOW
        while self._failures and self._failures[0] < cutoff:
            self._failures.popleft()
        spread = len(self._failures) / self.setup_rate
        return own + random.uniform(0, spread)
