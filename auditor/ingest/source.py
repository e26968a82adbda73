"""One GWS account: login, one aiocometd-noloop session, the fast receive loop, coverage.

The receive loop stamps each message and hands it to the spool's in-memory queue; it never
waits on disk or database. Durability is enforced one step later, on the *next* /meta/connect:
its outgoing extension waits until everything received so far is committed in the spool,
then (if the server offers the CometD ack extension) acknowledges the last batch. The same
moment advances the coverage heartbeat to the send time of the connect whose reply is now
durable: every message generated before that instant is in the spool.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import uuid_utils
from aiocometd_noloop import Client, ConnectionType, Extension
from aiocometd_noloop.exceptions import (
    AiocometdException,
    ServerError,
    TransportTimeoutError,
)

from auditor.ingest import codec
from auditor.ingest.admission import BACKOFF, SUBSCRIBED, Admission
from auditor.ingest.backoff import backoff
from auditor.ingest.config import Account, WorkerConfig
from auditor.ingest.coverage import Coverage
from auditor.ingest.http import HeaderCookieJar, new_session
from auditor.ingest.lean_http import LeanHttp, LeanLongPollingTransport
from auditor.ingest.metrics import Metrics
from auditor.ingest.pacing import Pacing, advised_ms
from auditor.ingest.ports import SYSTEM_CLOCK, Clock, SpoolPort
from auditor.ingest.receive import Receiver
from auditor.ingest.snapshot import record_absent, take_snapshot
from auditor.ingest.spool import Row

log = logging.getLogger("auditor.ingest.source")
# At most this many Bayeux ids per session are remembered for dropping re-sent copies. With
# the ack extension only the unacknowledged batches can come again, and ids leave the window
# as soon as the server confirms their batch, so the window is a batch or two, not this cap.
_RECENT_IDS = 2_000
DURABILITY_WAIT = 10.0  # seconds a connect waits for the spool before going out un-acked


class BadCredentials(Exception):
    pass


class LoginFailed(Exception):
    pass


def now() -> datetime:
    return datetime.now(UTC)


_last_second: tuple[int, str] = (-1, "")  # the last whole second stamped, and its text


def stamp_at(micros: int) -> str:
    """`micros` (µs since the epoch) as `datetime.isoformat(timespec="microseconds")`
    writes it in UTC: each second formatted once, the microseconds per call."""
    global _last_second
    second, micro = divmod(micros, 1_000_000)
    last = _last_second  # one tuple: a reader never sees a second with another's text
    if last[0] != second:
        last = _last_second = (
            second,
            datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        )
    return f"{last[1]}.{micro:06d}+00:00"


def stamp() -> str:
    """Now, as a receipt's received_at text. `datetime.now(UTC).isoformat(timespec=
    "microseconds")` cost about 9 µs per notification (the timespec argument's path in
    CPython 3.11), this about 1 µs."""
    return stamp_at(time.time_ns() // 1000)


class _Gws(Extension):  # type: ignore[misc]
    """Headers on every request; ack/fast-open/durability on connects; watches replies."""

    def __init__(self, source: Source) -> None:
        self.source = source

    async def outgoing(self, payload: list[dict[str, Any]], headers: dict[str, str]) -> None:
        headers.update(self.source.request_headers(self.source.cometd_url))
        for message in payload:
            channel = message.get("channel")
            if channel == "/meta/handshake":
                await self.source.before_handshake()
                if self.source.config.ack:
                    message.setdefault("ext", {})["ack"] = True
            elif channel == "/meta/connect":
                await self.source.before_connect(message)

    async def incoming(
        self, payload: list[dict[str, Any]], headers: dict[str, str] | None = None
    ) -> None:
        self.source.on_payload(payload)


class Source:
    def __init__(
        self,
        config: WorkerConfig,
        account: Account,
        spool: SpoolPort,
        coverage: Coverage,
        metrics: Metrics,
        admission: Admission,
        active_items: Callable[[str, str], Awaitable[set[str]]] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.config = config
        # Coverage, session-log and connect times; bound once (SystemClock.now is a plain
        # function, so this costs what the module's now() did). Receipts are stamped with
        # now() in accept(): the receive loop's statements stay as measured.
        self.clock = clock
        self._now = clock.now
        # The GWS HTTP client of the current session (its login's aiohttp session), handed
        # to snapshots and sweeps; None between sessions.
        self.http: aiohttp.ClientSession | None = None
        self.admission = admission
        self._slot = False  # holds an admission set-up slot
        self._held = False  # counted against max_sessions
        # The ids the projection shows active for this account (for "Absent" snapshots).
        self.active_items = active_items
        self.account = account.name
        self._basic = "Basic " + base64.b64encode(
            f"{account.name}:{account.password}".encode()
        ).decode("ascii")
        self.spool = spool
        self.coverage = coverage
        self.metrics = metrics
        self._received = metrics.received.labels(account.name)
        self.headers: dict[str, str] = {}
        self.cometd_url = f"{config.base_url}/api/v2/notifications"
        self._jar: HeaderCookieJar | None = None
        self.stop_reason = "shutdown"
        # False: close without /meta/disconnect (the worker decides at shutdown)
        self.polite_close = True
        self.interval: int | None = None
        self.started_at: datetime | None = None
        self._reset_session_state()
        self.arrived = 0
        self._arrived_before = 0
        self.processed = 0
        self.last_put = 0
        self._progress = asyncio.Event()
        self._receiver: Receiver | None = None
        self.handshakes = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def _reset_session_state(self) -> None:
        # connect_delay / min_cycle (pacing.py); a new session's first connect goes at once
        self.pacing = Pacing(self.config.connect_delay, self.config.min_cycle)
        self.client_id: str | None = None
        self.server_acks = False
        self.batch: int | None = None
        self.first_connect = True
        self.connect_sent_at: datetime | None = None
        self.replied_at: datetime | None = None
        self.durable_at: datetime | None = None
        self.resubscribe_pending = False
        # Bayeux id -> the ack batch it came in (0 without acks), in arrival order.
        self._seen: dict[Any, int] = {}
        self._tags: dict[Any, int] = {}  # ids of a reply not yet accepted -> their batch
        self._ack_sent: int | None = None  # the ack carried by the connect in flight
        # The server's advised maxInterval (ms) as its meta replies last stated it (Bayeux
        # advice holds until restated); read from the replies, not from aiocometd's transport.
        self.max_interval_ms: object = None
        # The server's advised long-poll timeout (ms), the same way: a connect asks for no
        # longer a hold than this (nor than poll_timeout).
        self.advised_timeout_ms: int | float | None = None

    # -- coverage ---------------------------------------------------------------------------

    def _start_interval(self) -> None:
        at = self._now()
        self.started_at = at
        self.interval = self.coverage.open(
            self.account, self.client_id, list(self.config.topics), at
        )
        self.coverage.log(at, self.account, "subscribed", ",".join(self.config.topics))
        self.metrics.connected.inc()
        self.admission.set_state(self.account, SUBSCRIBED)
        self._release_slot()
        self._spawn(self._snapshot())

    async def _snapshot(self) -> None:
        # The GET takes a set-up slot; the "Absent" check after it may wait for the drain,
        # which must not hold a slot that other sessions need.
        async with self.admission.step(self.account):
            taken = await take_snapshot(self, self.http)
        if taken is not None:
            await record_absent(self, *taken)

    def _release_slot(self) -> None:
        if self._slot:
            self._slot = False
            self.admission.release_setup()

    def _release_held(self) -> None:
        self._release_slot()
        if self._held:
            self._held = False
            self.admission.release_session()

    async def before_handshake(self) -> None:
        """A re-handshake that the CometD client starts by itself (402) takes a set-up slot
        like a new session: a mass expiry must not become a handshake storm."""
        if not self._slot:
            await self.admission.acquire(self.account, new_session=False)
            self._slot = True

    def _end_interval(self, reason: str) -> None:
        if self.interval is None:
            return
        assert self.started_at is not None
        end = max(self.started_at, self.durable_at or self.started_at)
        self.coverage.close(self.interval, end, reason)
        self.coverage.log(self._now(), self.account, "disconnected", reason)
        self.metrics.connected.dec()
        self.metrics.gaps.labels(reason.split(":")[0][:40]).inc()
        self.interval = None
        log.info("session ended", extra={"account": self.account, "reason": reason})

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- extension hooks --------------------------------------------------------------------

    async def before_connect(self, message: dict[str, Any]) -> None:
        advice = message.setdefault("advice", {})
        if self.first_connect:
            advice["timeout"] = 0  # else open() waits a whole long-poll
            self.first_connect = False
        elif self.config.poll_timeout > 0:
            # Ask for polls of at most poll_timeout (CometD servers honour a client's
            # advice.timeout): the coverage heartbeat advances once per poll, and a live
            # interval must never look older than the 15 s liveness window. At most, never
            # longer than the server's own: cometd-nodejs-server held the 10 s asked for while
            # advising its 1 s, and aiocometd times a long-poll by the advice.
            asked = int(self.config.poll_timeout * 1000)
            if self.advised_timeout_ms is not None:
                asked = min(asked, int(self.advised_timeout_ms))
            advice["timeout"] = asked
        # A busy agent's next notifications come together in one reply instead of a
        # long-poll cycle each (pacing.py): the server queues them for the session meanwhile.
        wait = self.pacing.delay(
            self.clock.monotonic(), self.arrived > self._arrived_before, self.max_interval_ms
        )
        if wait > 0:
            await asyncio.sleep(wait)
        self._arrived_before = self.arrived
        durable = False
        target = self.arrived
        if self.processed >= target and self.spool.committed_count >= self.last_put:
            durable = True  # the idle case: nothing to wait for, no timer to arm
        else:
            try:
                async with asyncio.timeout(DURABILITY_WAIT):
                    while self.processed < target:
                        self._progress.clear()
                        await self._progress.wait()
                    await self.spool.wait_committed(self.last_put)
                durable = True
            except TimeoutError:
                log.warning(
                    "spool not durable in time; connect sent without ack",
                    extra={"account": self.account},
                )
        if durable:
            if self.replied_at is not None:
                self.durable_at = self.replied_at
                if self.interval is not None and self.started_at is not None:
                    self.coverage.heartbeat(self.interval, max(self.started_at, self.durable_at))
            if self.server_acks and self.batch is not None:
                message.setdefault("ext", {})["ack"] = self.batch
                self._ack_sent = self.batch
        self.connect_sent_at = self._now()
        self.pacing.sent(self.clock.monotonic())

    def on_payload(self, payload: list[dict[str, Any]]) -> None:
        batch: int | None = None
        for message in payload:
            if message.get("channel") == "/meta/connect":
                ext = message.get("ext")
                if isinstance(ext, dict) and isinstance(ext.get("ack"), int):
                    batch = ext["ack"]
        for message in payload:
            channel = message.get("channel", "")
            if channel.startswith("/meta/"):
                self.on_incoming(message)  # a handshake reply replaces self._tags
                continue
            # An event message (on_incoming's count, without the call); meta replies carry
            # ids too and are never accepted, so only events are tagged with their batch.
            self.arrived += 1
            if batch is not None and "id" in message:
                self._tags[message["id"]] = batch

    def _forget_acknowledged(self) -> None:
        """The server answered a connect that acknowledged batch `_ack_sent`: it dropped
        every message up to that batch, so none of their ids can come again."""
        confirmed = self._ack_sent
        if confirmed is None:
            return
        seen = self._seen
        while seen:
            first = next(iter(seen))
            if seen[first] > confirmed:
                break
            del seen[first]

    def on_incoming(self, message: dict[str, Any]) -> None:
        channel = message.get("channel", "")
        if not channel.startswith("/meta/"):
            self.arrived += 1
            return
        successful = bool(message.get("successful"))
        if channel == "/meta/connect":
            if successful:
                self.replied_at = self.connect_sent_at
                self._forget_acknowledged()
                ext = message.get("ext")
                if isinstance(ext, dict) and isinstance(ext.get("ack"), int):
                    self.batch = ext["ack"]
            else:
                self._end_interval(f"connect failed: {message.get('error', '')}")
        elif channel == "/meta/handshake" and not successful:
            self._release_slot()
        elif channel == "/meta/handshake" and successful:
            self.handshakes += 1
            again = self.handshakes > 1
            if again:
                self._end_interval("rehandshake")
            self._reset_session_state()
            # A connect waits for the spool until everything *received* is processed (its
            # ack must never cover what is not durable). What an earlier session counted and
            # never handed over ended with it; left counted, it held every later connect for
            # DURABILITY_WAIT, longer than connection_timeout, and each new session failed
            # in turn (seen: sessions ended every 3 s for a minute in test_cometd_nodejs).
            self.arrived = self._arrived_before = self.processed
            self.client_id = message.get("clientId")
            ext = message.get("ext")
            self.server_acks = isinstance(ext, dict) and ext.get("ack") is True
            self.coverage.log(
                self._now(), self.account, "rehandshake" if again else "handshake", self.client_id
            )
            self.resubscribe_pending = again
        elif channel == "/meta/subscribe" and successful and self.resubscribe_pending:
            self.resubscribe_pending = False
            self._start_interval()
        advice = message.get("advice")
        if isinstance(advice, dict):
            if "maxInterval" in advice:
                self.max_interval_ms = advice["maxInterval"]
            timeout = advised_ms(advice.get("timeout"))
            if timeout is not None:
                self.advised_timeout_ms = timeout

    # -- the receive loop -------------------------------------------------------------------

    def _row(self, message: dict[str, Any]) -> Row | None:
        """The spool row of an event message; None for a re-sent copy (dropped, counted)."""
        message_id = message.get("id")
        if message_id is not None:
            tag = self._tags.pop(message_id, 0)
            seen = self._seen
            if message_id in seen:
                self.metrics.redelivered.inc()
                return None
            seen[message_id] = tag
            if len(seen) > _RECENT_IDS:
                del seen[next(iter(seen))]
        return Row(
            # A UUIDv7 as new_receipt_id() makes, as text straight from uuid_utils (the
            # standard library UUID's str() cost ten times more, per message).
            str(uuid_utils.uuid7()),
            stamp(),
            self.account,
            message.get("channel"),
            "notification",
            codec.dumps(message),
        )

    def accept(self, message: dict[str, Any]) -> None:
        row = self._row(message)
        if row is not None:
            self.last_put = self.spool.put(row)
        self.processed += 1
        self._progress.set()

    def accept_reply(self, messages: list[dict[str, Any]]) -> None:
        """A reply's event messages, handed over by the transport (its `sink`) as the reply
        is consumed: no queue hand-off and no wake-up of the receive loop per message, and
        one spool hand-off per reply."""
        try:
            rows = [row for message in messages if (row := self._row(message)) is not None]
            if rows:
                self.last_put = self.spool.put_many(rows)
        except BaseException as exc:
            # The connect task must not fail on it (the library would retry, and the next
            # connect could acknowledge what was not spooled): the receive loop raises it,
            # which ends the session; `processed` stays behind, which keeps the ack back.
            if self._receiver is not None:
                self._receiver.fail(exc)
            return
        self.processed += len(messages)
        self._progress.set()
        self._received.inc(len(messages))

    def request_headers(self, url: str) -> dict[str, str]:
        """Authorization, CSRF token and this session's cookies for a request to `url`."""
        cookie = self._jar.cookie_header(url) if self._jar is not None else ""
        return {**self.headers, "Cookie": cookie} if cookie else self.headers

    async def _login(self, http: aiohttp.ClientSession) -> None:
        async with http.get(
            f"{self.config.base_url}/api/v2/me",
            headers={"Authorization": self._basic},
            timeout=aiohttp.ClientTimeout(total=15),
        ) as response:
            if response.status in (401, 403):
                raise BadCredentials(f"HTTP {response.status}")
            if response.status != 200:
                raise LoginFailed(f"HTTP {response.status}")
            token = response.headers.get("X-CSRF-TOKEN")
        self.headers = {"Authorization": self._basic}
        if token:
            self.headers["X-CSRF-TOKEN"] = token

    async def _session(self, http: aiohttp.ClientSession) -> tuple[str, bool]:
        """One CometD session until it fails; returns (reason, was subscribed)."""
        self.handshakes = 0
        client = Client(
            f"{self.config.base_url}/api/v2/notifications",
            connection_types=[ConnectionType(self.config.transport)],
            extensions=[_Gws(self)],
            connection_timeout=self.config.connection_timeout,
            max_pending_count=0,
            json_loads=codec.loads,
            ssl=False if self.config.base_url.startswith("http://") else None,
        )
        # Our cookie jar (keeps cookies from IP hosts); the long-poll's POSTs through the
        # lean client unless [gws] http_client = "aiohttp" (lean_http.py).
        transport_http: aiohttp.ClientSession | LeanHttp = http
        if (
            self.config.http_client == "lean"
            and self.config.transport == "long-polling"
            and self._jar is not None
        ):
            transport_http = LeanHttp(http, self._jar, client.ssl)
        client._http_session = transport_http
        self.http = http
        reason, subscribed = "closed", False
        receiver: Receiver | None = None
        try:
            await client.open()
            for topic in self.config.topics:
                await client.subscribe(topic)
            subscribed = True
            self._start_interval()
            log.info("subscribed", extra={"account": self.account, "client_id": self.client_id})
            receiver = self._receiver = Receiver(client, self.config.connection_timeout)
            # What arrived before this point is in the queue: taken first, then (with no
            # await between) the transport hands each reply over directly (accept_reply).
            while (message := receiver.next_nowait()) is not None:
                self.accept(message)
                self._received.inc()
            transport = client._transport
            if isinstance(transport, LeanLongPollingTransport):
                transport.sink = self.accept_reply
            while True:
                # Only what the sink does not take: the websocket transport's messages,
                # failed event messages (raised here), and the end of the session.
                self.accept(await receiver.next())
                self._received.inc()
                while (message := receiver.next_nowait()) is not None:
                    self.accept(message)
                    self._received.inc()
        except TransportTimeoutError:
            reason = "connection lost (no reply within connection_timeout)"
            # What aiocometd's message hides: the long-poll's own failure, if there was one,
            # and whether a connect was being held for the spool (diagnosis of session churn).
            log.info(
                "connection lost",
                extra={
                    "account": self.account,
                    "last_long_poll_error": getattr(client._transport, "last_error", None),
                    "arrived": self.arrived,
                    "processed": self.processed,
                    "spool_committed": self.spool.committed_count,
                    "last_put": self.last_put,
                },
            )
        except ServerError as exc:
            reason = f"server error: {exc}"
        except AiocometdException as exc:
            reason = f"transport error: {exc}"
        except asyncio.CancelledError:
            reason = self.stop_reason
            if receiver is not None:
                for message in receiver.pending():  # keep what already arrived
                    self.accept(message)
            else:
                self._keep_queued(client)
            raise
        finally:
            if receiver is not None:
                receiver.close()
            self._receiver = None
            transport = getattr(client, "_transport", None)
            if isinstance(transport, LeanLongPollingTransport):
                transport.sink = None
            self._end_interval(reason)
            self._release_slot()
            for task in list(self._tasks):
                task.cancel()
            if not self.polite_close and not transport_http.closed:
                # Closed first, the session makes the disconnect message fail at once: only
                # the socket closes, and the server expires the session by itself.
                await transport_http.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(client.close(), 5)
            # A reply consumed while the session ended (the sink already gone) leaves its
            # messages in the client's queue: they reached the worker, so they are kept.
            self._keep_queued(client)
            if not transport_http.closed:
                await transport_http.close()
            self.http = None
            if not http.closed:
                await http.close()
        return reason, subscribed

    def _keep_queued(self, client: Client) -> None:
        """Accept the event messages still in the client's queue (not its loss markers, nor
        the failed ones the receive loop raises on)."""
        queue = getattr(client, "_incoming_queue", None)
        while queue is not None and not queue.empty():
            message = queue.get_nowait()
            if isinstance(message, dict) and message.get("successful", True):
                self.accept(message)

    async def run(self) -> None:
        """Hold a session forever: wait for admission, log in, subscribe, and after a
        failure wait a capped, jittered backoff that grows with everyone's failures."""
        try:
            await self._run()
        finally:
            self._release_held()
            self.admission.forget(self.account)

    async def _wait(self, delay: float, reason: str) -> None:
        self.admission.set_state(self.account, BACKOFF, f"{reason} (retry in {delay:.1f} s)")
        await asyncio.sleep(delay)

    async def _run(self) -> None:
        attempt = 0
        cfg = self.config
        while True:
            await self.admission.acquire(self.account, new_session=True)
            self._slot = self._held = True
            http, self._jar = new_session()
            try:
                await self._login(http)
            except BadCredentials as exc:
                await http.close()
                self._release_held()
                self.metrics.login_failures.labels(self.account).inc()
                self.coverage.log(self._now(), self.account, "login_failed", str(exc))
                log.error(
                    "login rejected; retrying slowly",
                    extra={
                        "account": self.account,
                        "status": str(exc),
                        "retry_seconds": cfg.login_retry,
                    },
                )
                await self._wait(cfg.login_retry, f"login rejected ({exc})")
                continue
            except (aiohttp.ClientError, TimeoutError, LoginFailed) as exc:
                await http.close()
                self._release_held()
                self.metrics.gws_errors.labels(self.account).inc()
                self.admission.failed()
                delay = self.admission.retry_delay(
                    backoff(attempt, cfg.backoff_base, cfg.backoff_cap)
                )
                error = str(exc) or type(exc).__name__
                log.warning(
                    "GWS unreachable",
                    extra={"account": self.account, "error": error, "retry_seconds": delay},
                )
                attempt += 1
                await self._wait(delay, f"GWS unreachable: {error}")
                continue
            except BaseException:
                await http.close()
                raise
            self.coverage.log(self._now(), self.account, "login")
            reason, subscribed = await self._session(http)
            self._release_held()
            if subscribed:
                attempt = 0
            self.metrics.reconnects.labels(self.account).inc()
            self.admission.failed()
            delay = self.admission.retry_delay(backoff(attempt, cfg.backoff_base, cfg.backoff_cap))
            log.warning(
                "reconnecting",
                extra={"account": self.account, "reason": reason, "retry_seconds": round(delay, 2)},
            )
            attempt += 1
            await self._wait(delay, reason)
