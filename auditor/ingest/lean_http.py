"""A lean HTTP/1.1 client for the CometD long-poll, plugged into aiocometd's transport.

At realistic per-agent rates every notification costs a whole long-poll cycle, and in the
profile of one cycle (py-spy, 1,000/s over 1,000 agents) aiohttp's request and response
were the largest part of the event loop's time: a request object, a payload object, a
timer handle, a connector lookup, a stream writer, a response object, a stream reader, per
POST. A long-poll needs much less: one keep-alive connection (two at most: aiocometd sends
a subscribe beside the held connect), a request written as one buffer, a response read by
one small protocol. This module is that, and nothing more:

* HTTP/1.1, keep-alive; a body framed by Content-Length, chunked, or the connection's end;
* TLS through the event loop's own SSL support (`ssl` as aiohttp takes it);
* cookies: Set-Cookie goes into the session's `HeaderCookieJar` (the caller's extension
  sends the Cookie header, as with aiohttp);
* no redirects, no compression (none is asked for), no proxies: a CometD endpoint needs none.

It is used only for aiocometd's POSTs; logins, snapshots and sweeps stay on aiohttp (rare,
and their code reads aiohttp responses). Errors become `TransportError` as aiohttp's did,
so the client's retry, re-handshake and the worker's session handling are unchanged. The
`[gws] http_client = "aiohttp"` setting keeps aiohttp for the long-poll too.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl as ssl_module
from collections.abc import Awaitable, Callable
from typing import Any, cast
from urllib.parse import urlsplit

import aiohttp
from aiocometd_noloop.constants import ConnectionType
from aiocometd_noloop.exceptions import TransportError
from aiocometd_noloop.transports.base import Headers, Payload
from aiocometd_noloop.transports.long_polling import LongPollingTransport
from aiocometd_noloop.transports.registry import register_transport
from aiocometd_noloop.typing import JsonObject
from aiocometd_noloop.utils import is_event_message, is_matching_response
from yarl import URL

from auditor.ingest.http import HeaderCookieJar, dumps_request_bytes
from auditor.ingest.pacing import advised_ms

log = logging.getLogger("auditor.ingest.lean_http")
_MAX_HEAD = 64 * 1024  # a status line and headers longer than this are refused
# A request without a timeout from the server's advice (the handshake, a subscribe, a server
# that advises none) still ends: a hung request holds its session's set-up slot, and 200 of
# them stopped every set-up once (aiohttp's default is 300 s; GWS holds a connect 30 s).
DEFAULT_TIMEOUT = 60.0
CONNECT_TIMEOUT = 10.0  # seconds for the TCP (and TLS) connection itself


class HttpError(Exception):
    """The connection broke, or the server answered something that is not HTTP/1.x."""


class Response:
    __slots__ = ("body", "cookies", "headers", "keep_alive", "status")

    def __init__(self, status: int, headers: dict[str, str], cookies: list[str]) -> None:
        self.status = status
        self.headers = headers  # names lower-cased; repeated names joined with ", "
        self.cookies = cookies  # every Set-Cookie value
        self.body = b""
        self.keep_alive = True


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection, one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.received_any = False
        self._buffer = bytearray()
        self._waiter: asyncio.Future[Response] | None = None
        self._response: Response | None = None
        self._length: int | None = None  # body bytes still expected (Content-Length)
        self._chunked = False
        self._until_close = False
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but they are one.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:
            # Bytes nobody asked for (a server's 408 on an idle connection): the connection
            # can no longer be trusted to frame the next answer.
            self.close()
            return
        self.received_any = True
        self._buffer += data
        try:
            self._parse()
        except HttpError as exc:
            self._fail(exc)

    def eof_received(self) -> bool | None:
        return None  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._response is not None and self._until_close:
            self._response.body = bytes(self._buffer)
            self._response.keep_alive = False
            self._finish()
            return
        self._fail(HttpError(f"connection closed: {exc}" if exc else "connection closed"))

    # -- requests ---------------------------------------------------------------------------

    def send(self, request: bytes, timeout: float | None = None) -> asyncio.Future[Response]:
        """The answer to `request`; TimeoutError (and the connection closed) if it has not
        come within `timeout` seconds. One timer handle on the loop, armed here and
        cancelled by the answer: `asyncio.timeout()` around the await cost a Timeout
        object, a reschedule and the task's uncancel bookkeeping on every long-poll."""
        assert self.transport is not None
        assert self._waiter is None
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        self._timer = loop.call_later(timeout or DEFAULT_TIMEOUT, self._timed_out)
        self.received_any = False
        self.transport.write(request)
        return self._waiter

    def _timed_out(self) -> None:
        self._timer = None
        self._fail(TimeoutError())

    def close(self) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.transport is not None:
            self.transport.close()

    def _fail(self, exc: Exception) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiter, self._waiter = self._waiter, None
        self._response = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()

    def _finish(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        response, self._response = self._response, None
        waiter, self._waiter = self._waiter, None
        assert response is not None
        if self._buffer:  # bytes after the answer: nothing was asked for them
            response.keep_alive = False
        if not response.keep_alive:
            self.close()
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    def _parse(self) -> None:
        while self._response is None:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > _MAX_HEAD:
                    raise HttpError("response head too long")
                return
            head = bytes(self._buffer[:end]).decode("latin-1")
            del self._buffer[: end + 4]
            self._start(head)  # an interim answer (1xx) leaves no response: read on
        response = self._response
        if self._chunked:
            self._parse_chunks(response)
        elif self._length is not None and len(self._buffer) >= self._length:
            response.body = bytes(self._buffer[: self._length])
            del self._buffer[: self._length]
            self._finish()

    def _start(self, head: str) -> None:
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise HttpError(f"not an HTTP/1.x response: {lines[0][:80]!r}")
        status = int(parts[1])
        if 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
            return
        headers: dict[str, str] = {}
        cookies: list[str] = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise HttpError(f"malformed header line: {line[:80]!r}")
            name, value = name.strip().lower(), value.strip()
            if name == "set-cookie":
                cookies.append(value)
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        response = Response(status, headers, cookies)
        connection = headers.get("connection", "").lower()
        response.keep_alive = (
            "close" not in connection if parts[0] == "HTTP/1.1" else "keep-alive" in connection
        )
        self._response = response
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        self._until_close = False
        self._length = None
        if status in (204, 304):
            self._length = 0
        elif not self._chunked:
            length = headers.get("content-length")
            if length is not None:
                if not length.isdigit():
                    raise HttpError(f"bad Content-Length: {length[:40]!r}")
                self._length = int(length)
            else:
                self._until_close = True
                response.keep_alive = False

    def _parse_chunks(self, response: Response) -> None:
        # The body so far is kept in response.body as chunks arrive.
        while True:
            line_end = self._buffer.find(b"\r\n")
            if line_end < 0:
                return
            size_text = bytes(self._buffer[:line_end]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise HttpError(f"bad chunk size: {size_text[:20]!r}") from None
            if size == 0:
                # The last chunk, then optional trailers, then an empty line.
                trailers_end = self._buffer.find(b"\r\n\r\n", line_end)
                if trailers_end < 0:
                    return
                del self._buffer[: trailers_end + 4]
                self._chunked = False
                self._finish()
                return
            if len(self._buffer) < line_end + 2 + size + 2:
                return
            start = line_end + 2
            response.body += bytes(self._buffer[start : start + size])
            del self._buffer[: start + size + 2]


class LeanHttp:
    """The HTTP side of one CometD session: lean POSTs to the CometD endpoint, and the
    session's aiohttp client (same cookie jar) for everything else (`get`)."""

    def __init__(
        self, session: aiohttp.ClientSession, jar: HeaderCookieJar, ssl: Any = None
    ) -> None:
        self.session = session
        self.jar = jar
        self._ssl = ssl
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()
        self._closed = False
        # url -> (host, port, tls, the request head's fixed lines): a session posts to one
        # URL, so it is parsed once, not on every long-poll.
        self._targets: dict[str, tuple[str, int, bool, str]] = {}

    @property
    def closed(self) -> bool:
        return self._closed

    def get(self, *args: Any, **kwargs: Any) -> Any:
        return self.session.get(*args, **kwargs)

    async def close(self) -> None:
        self._closed = True
        for conn in [*self._idle, *self._busy]:
            conn.close()
        self._idle.clear()
        self._busy.clear()
        if not self.session.closed:
            await self.session.close()

    async def _open(self, host: str, port: int, tls: bool) -> _Connection:
        loop = asyncio.get_running_loop()
        context: Any = None
        if tls:
            context = self._ssl if isinstance(self._ssl, ssl_module.SSLContext) else None
            if context is None:
                context = ssl_module.create_default_context()
                if self._ssl is False:  # aiohttp's ssl=False: no certificate check
                    context.check_hostname = False
                    context.verify_mode = ssl_module.CERT_NONE
        async with asyncio.timeout(CONNECT_TIMEOUT):
            _, conn = await loop.create_connection(
                _Connection, host, port, ssl=context, server_hostname=host if tls else None
            )
        return conn

    def _target(self, url: str) -> tuple[str, int, bool, str]:
        target = self._targets.get(url)
        if target is None:
            parts = urlsplit(url)
            tls = parts.scheme == "https"
            path = parts.path or "/"
            if parts.query:
                path += "?" + parts.query
            authority = parts.netloc.rpartition("@")[2]
            fixed = (
                f"POST {path} HTTP/1.1\r\nHost: {authority}\r\n"
                "Content-Type: application/json\r\nAccept: */*\r\n"
            )
            target = (parts.hostname or "", parts.port or (443 if tls else 80), tls, fixed)
            self._targets[url] = target
        return target

    async def post(
        self, url: str, body: bytes, headers: dict[str, str], timeout: float | None
    ) -> Response:
        if self._closed:
            raise HttpError("session closed")
        host, port, tls, fixed = self._target(url)
        head = fixed + f"Content-Length: {len(body)}\r\n"
        for name, value in headers.items():
            head += f"{name}: {value}\r\n"
        request = (head + "\r\n").encode("latin-1") + body
        # aiohttp too took a timeout of 0 (advice.timeout 0) as "none". The time limit is
        # the answer's (armed when the request is written); opening a new connection has
        # its own (CONNECT_TIMEOUT).
        response = await self._exchange(request, host, port, tls, timeout or DEFAULT_TIMEOUT)
        if response.cookies:
            self.jar.update_cookies_from_headers(response.cookies, URL(url))
        return response

    async def _exchange(
        self, request: bytes, host: str, port: int, tls: bool, timeout: float
    ) -> Response:
        while self._idle:
            conn = self._idle.pop()
            if conn.closed:
                continue
            try:
                return await self._on(conn, request, timeout)
            except HttpError:
                # A kept-alive connection the server had closed meanwhile: if it sent
                # nothing back, the request was not answered; send it on a new one (what
                # browsers do). Anything else is the caller's error.
                if conn.received_any:
                    raise
        conn = await self._open(host, port, tls)
        return await self._on(conn, request, timeout)

    async def _on(self, conn: _Connection, request: bytes, timeout: float) -> Response:
        self._busy.add(conn)
        try:
            response = await conn.send(request, timeout)
        except BaseException:
            conn.close()
            raise
        finally:
            self._busy.discard(conn)
        if response.keep_alive and not conn.closed and not self._closed:
            if self._idle:
                # One idle connection is enough: the second one was for a subscribe beside
                # the held connect. Kept, it doubled the sockets (10,000 sessions reached
                # the 20,000 open files of the worker and the simulator).
                conn.close()
            else:
                self._idle.append(conn)
        return response


# Receives each reply's event messages, in order, in one call (LeanLongPollingTransport.sink).
Sink = Callable[[list[JsonObject]], None]


async def _later(delay: float, operation: Callable[[], Awaitable[JsonObject]]) -> JsonObject:
    await asyncio.sleep(delay)
    return await operation()


@register_transport(ConnectionType.LONG_POLLING)
class LeanLongPollingTransport(LongPollingTransport):  # type: ignore[misc]
    """aiocometd's long-polling transport, sending through `LeanHttp` when the client's
    HTTP session is one (else exactly the library's own aiohttp path).

    Three parts of the library's connect cycle are done here with less work, same
    behaviour (at one notification per long-poll they were a fifth of the cycle):

    * `sink`: when the session sets one, each reply's event messages go to it in one call,
      straight from the connect task, instead of one `await queue.put()` each and a wake-up
      of the receive loop's task for `queue.get()`. Messages that the client would raise
      on (`successful: false`) still go through the queue, where the receive loop raises.
    * the next connect (or handshake) that the server's advice asks for starts without
      `utils.defer`'s wrapper, which ran `functools.wraps` on every cycle.
    * the request body is orjson's bytes as they come (no decode and encode).
    """

    sink: Sink | None = None
    # The last long-poll failure (type: message), for the session's log when aiocometd then
    # reports only "no reply within connection_timeout".
    last_error: str | None = None
    # The longest hold (ms) this client has asked for in a connect's advice.timeout.
    asked_hold_ms: int | float = 0

    @property
    def request_timeout(self) -> int | float | None:
        """The library's (the server's advised timeout x 1.2), computed from the longer of
        that advice and the hold this client asked for. CometD servers honour a client's
        advice.timeout (the worker asks for poll_timeout), and some advise their own,
        shorter one in the reply: cometd-nodejs-server holds the 10 s asked for and advises
        its 1 s. Timed by the advice alone, every idle long-poll timed out after 1.2 s and
        the session ended 2 s later (connection_timeout), over and over."""
        hold = max(advised_ms(self.reconnect_advice.get("timeout")) or 0, self.asked_hold_ms)
        return hold / 1000 * float(self.REQUEST_TIMEOUT_INCREASE_FACTOR) if hold else None

    def _note_asked_hold(self, payload: Payload) -> None:
        first = payload[0] if payload else None
        if first is None or first.get("channel") != "/meta/connect":
            return
        advice = first.get("advice")
        asked = advised_ms(advice.get("timeout")) if isinstance(advice, dict) else None
        if asked is not None and asked > self.asked_hold_ms:
            self.asked_hold_ms = asked

    async def _send_final_payload(self, payload: Payload, *, headers: Headers) -> JsonObject:
        self._note_asked_hold(payload)
        http = self._http_session
        if not isinstance(http, LeanHttp):
            result: JsonObject = await super()._send_final_payload(payload, headers=headers)
            return result
        try:
            async with self._http_semaphore:
                response = await http.post(
                    self._url, dumps_request_bytes(payload), headers, self.request_timeout
                )
            # As aiohttp's response.json(): a body that is not JSON by its type is an error.
            kind = response.headers.get("content-type", "")
            if "json" not in kind:
                raise HttpError(
                    f"{response.status}, message='Attempt to decode JSON with unexpected"
                    f" mimetype: {kind}'"
                )
            response_payload = self._json_loads(response.body)
        except (HttpError, OSError, TimeoutError, ValueError) as error:
            log.debug("long-poll request failed", extra={"error": str(error)})
            self.last_error = f"{type(error).__name__}: {error}"
            raise TransportError(str(error) or type(error).__name__) from error
        response_message = await self._consume_payload(
            response_payload, headers=response.headers, find_response_for=payload[0]
        )
        if response_message is None:
            raise TransportError(
                "No response message received for the first message in the payload"
            )
        return response_message

    async def _consume_payload(
        self,
        payload: Payload,
        *,
        headers: Headers | None = None,
        find_response_for: JsonObject | None = None,
    ) -> JsonObject | None:
        """The library's `_consume_payload` (extensions, advice, subscriptions, the
        matching response), with the event messages handed to `sink` in one call."""
        await self._process_incoming_payload(payload, headers)
        result = None
        events: list[JsonObject] = []
        for message in payload:
            if "advice" in message:
                self._reconnect_advice = message["advice"]
            channel = message["channel"]
            if channel == "/meta/subscribe" or channel == "/meta/unsubscribe":
                self._update_subscriptions(message)  # (it looks at nothing else)
            if result is None and is_matching_response(message, find_response_for):
                result = message
                continue
            if is_event_message(message):
                events.append(message)
        if events:
            sink = self.sink
            if sink is None:
                for message in events:
                    await self.incoming_queue.put(message)
            else:
                failed = [m for m in events if not m.get("successful", True)]
                if failed:
                    events = [m for m in events if m.get("successful", True)]
                if events:
                    sink(events)
                for message in failed:
                    await self.incoming_queue.put(message)
        return result

    def _follow_advice(self, reconnect_advice: str, reconnect_timeout: int | float | None) -> None:
        if reconnect_advice == "retry":
            operation: Callable[[], Awaitable[JsonObject]] = self._connect
        elif reconnect_advice == "handshake":
            operation = functools.partial(self.handshake, [self.connection_type])
        else:
            super()._follow_advice(reconnect_advice, reconnect_timeout)
            return
        # utils.defer: "if delay: sleep(delay)", then the operation
        self._start_connect_task(
            _later(reconnect_timeout, operation) if reconnect_timeout else operation()
        )
