"""The lean long-poll HTTP client (auditor/ingest/lean_http.py) against real sockets.

The worker's fault tests (test_faults.py, test_cometd_nodejs.py, test_simulator_ack.py) run
it end to end against the simulator and the CometD project's Node server; these tests pin
the HTTP details those servers do not vary: framing by length, chunks and the connection's
end, responses arriving in any pieces, keep-alive reuse, a kept-alive connection the server
closed, cookies, timeouts.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiocometd_noloop.exceptions import TransportError
from hypothesis import given, settings
from hypothesis import strategies as st

from auditor.ingest.http import new_session
from auditor.ingest.lean_http import HttpError, LeanHttp, LeanLongPollingTransport, _Connection

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    lines = head.split("\r\n")
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return lines[0], headers, body


async def _serve(handler: Handler) -> tuple[asyncio.Server, str]:
    async def closing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(closing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/cometd"


async def _lean() -> LeanHttp:
    session, jar = new_session()
    return LeanHttp(session, jar)


def _feed() -> _Connection:
    """A connection whose bytes the test feeds itself (no socket)."""
    conn = _Connection()

    class _Transport:
        def write(self, data: bytes) -> None:
            pass

        def close(self) -> None:
            pass

    conn.transport = _Transport()  # type: ignore[assignment]
    return conn


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges) if b > a]


def _chunked(body: bytes, sizes: list[int]) -> bytes:
    out, at = b"", 0
    for size in sizes:
        piece = body[at : at + size]
        if not piece:
            break
        out += f"{len(piece):x};ext=1\r\n".encode() + piece + b"\r\n"
        at += len(piece)
    if at < len(body):
        out += f"{len(body) - at:X}\r\n".encode() + body[at:] + b"\r\n"
    return out + b"0\r\nX-Trailer: t\r\n\r\n"


@settings(max_examples=100, deadline=None)
@given(
    body=st.binary(max_size=300),
    chunk_sizes=st.lists(st.integers(1, 50), max_size=8),
    cuts=st.lists(st.integers(0, 2_000), max_size=12),
    chunked=st.booleans(),
)
def test_a_response_arriving_in_any_pieces_parses_to_its_body(
    body: bytes, chunk_sizes: list[int], cuts: list[int], chunked: bool
) -> None:
    if chunked:
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nSet-Cookie: a=1\r\n"
        wire = head + b"Set-Cookie: b=2\r\n\r\n" + _chunked(body, chunk_sizes)
    else:
        wire = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n" % len(body)
        wire += b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n" + body

    async def run() -> None:
        conn = _feed()
        waiter = conn.send(b"POST / HTTP/1.1\r\n\r\n")
        for piece in _split(wire, cuts):
            assert not waiter.done()
            conn.data_received(piece)
        response = await waiter
        assert response.status == 200
        assert response.body == body
        assert response.cookies == ["a=1", "b=2"]
        assert response.keep_alive

    asyncio.run(run())


def test_an_interim_100_continue_is_skipped() -> None:
    async def run() -> None:
        conn = _feed()
        waiter = conn.send(b"x")
        conn.data_received(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2")
        conn.data_received(b"\r\n\r\nok")
        assert (await waiter).body == b"ok"

    asyncio.run(run())


@pytest.mark.parametrize(
    "wire",
    [b"SSH-2.0-OpenSSH\r\n\r\n", b"HTTP/1.1 200 OK\r\nbroken\r\n\r\n", b"HTTP/1.1 OK OK\r\n\r\n"],
)
def test_what_is_not_http_fails_the_request(wire: bytes) -> None:
    async def run() -> None:
        conn = _feed()
        waiter = conn.send(b"x")
        conn.data_received(wire)
        with pytest.raises(HttpError):
            await waiter

    asyncio.run(run())


def test_keep_alive_reuses_one_connection_and_cookies_reach_the_jar() -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                line, headers, body = await _read_request(reader)
            except asyncio.IncompleteReadError:
                break
            assert line == "POST /cometd HTTP/1.1"
            assert headers["content-type"] == "application/json"
            reply = b'[{"echo": %s}]' % body
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json;charset=utf-8\r\n"
                b"Set-Cookie: BAYEUX_BROWSER=abc; Path=/\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(reply), reply)
            )
            await writer.drain()
        writer.close()

    async def run() -> None:
        server, url = await _serve(handler)
        http = await _lean()
        try:
            for n in range(3):
                response = await http.post(url, b"%d" % n, {"X-Test": "1"}, 5)
                assert response.body == b'[{"echo": %d}]' % n
            assert connections == 1
            assert http.jar.cookie_header(url) == "BAYEUX_BROWSER=abc"
        finally:
            await http.close()
            server.close()

    asyncio.run(run())


def test_a_kept_alive_connection_the_server_closed_is_replaced_once() -> None:
    """The server answers one request per connection and hangs up on the next without a
    byte (as a server does whose keep-alive timer ran out as the request came): that
    request goes out again on a new connection; each is answered once."""
    answered = 0
    hung_up = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal answered, hung_up
        _, _, body = await _read_request(reader)
        answered += 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        writer.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        try:
            await _read_request(reader)
            hung_up += 1
        except asyncio.IncompleteReadError:
            pass
        writer.close()

    async def run() -> None:
        server, url = await _serve(handler)
        http = await _lean()
        try:
            for n in range(3):
                assert (await http.post(url, b"[%d]" % n, {}, 5)).body == b"[%d]" % n
            assert answered == 3
            assert hung_up == 2
        finally:
            await http.close()
            server.close()

    asyncio.run(run())


def test_a_body_framed_by_the_connection_end_is_read_to_the_end() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n[1,")
        await writer.drain()
        writer.write(b"2]")
        writer.close()

    async def run() -> None:
        server, url = await _serve(handler)
        http = await _lean()
        try:
            response = await http.post(url, b"[]", {}, 5)
            assert response.body == b"[1,2]"
            assert not response.keep_alive
        finally:
            await http.close()
            server.close()

    asyncio.run(run())


async def _connect_reply(writer: asyncio.StreamWriter) -> None:
    """A successful reply to a /meta/connect with id "1"."""
    reply = b'[{"channel": "/meta/connect", "id": "1", "successful": true}]'
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
    writer.write(b"Content-Length: %d\r\n\r\n%s" % (len(reply), reply))
    await writer.drain()


def _transport(http: LeanHttp, url: str) -> LeanLongPollingTransport:
    return LeanLongPollingTransport(
        url=url, incoming_queue=asyncio.Queue(), http_session=http, json_loads=json.loads
    )


def test_the_transport_turns_a_stall_a_broken_connection_and_html_into_transport_errors() -> None:
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await asyncio.sleep(5)  # deliberate: a server that never answers in time

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n[")
        await writer.drain()
        writer.close()

    async def html(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 401 No\r\nContent-Type: text/html\r\nContent-Length: 2\r\n\r\nno")
        await writer.drain()

    async def run() -> None:
        for handler, expected in ((stall, "Timeout"), (hang_up, "closed"), (html, "mimetype")):
            server, url = await _serve(handler)
            http = await _lean()
            transport = _transport(http, url)
            transport._reconnect_advice = {"timeout": 200}  # request_timeout 0.24 s
            try:
                with pytest.raises(TransportError, match=expected):
                    await transport._send_final_payload(
                        [{"channel": "/meta/connect", "id": "1"}], headers={}
                    )
            finally:
                await http.close()
                server.close()

    asyncio.run(run())


def test_a_long_poll_is_timed_by_the_hold_it_asked_for_when_the_server_advises_less() -> None:
    """A server may honour the client's advice.timeout and advise its own shorter one
    (cometd-nodejs-server does): the request must wait for the hold it asked for."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await asyncio.sleep(0.5)  # deliberate: the 500 ms hold the client asked for
        await _connect_reply(writer)

    async def run() -> None:
        server, url = await _serve(hold)
        http = await _lean()
        transport = _transport(http, url)
        transport._reconnect_advice = {"timeout": 200}  # by the advice alone: 0.24 s
        try:
            reply = await transport._send_final_payload(
                [{"channel": "/meta/connect", "id": "1", "advice": {"timeout": 500}}],
                headers={},
            )
            assert reply["successful"] is True
            assert transport.request_timeout == pytest.approx(0.6)
        finally:
            await http.close()
            server.close()

    asyncio.run(run())


def test_with_an_aiohttp_session_the_transport_is_the_library_s_own() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await _connect_reply(writer)

    async def run() -> None:
        server, url = await _serve(handler)
        session = aiohttp.ClientSession()
        transport = LeanLongPollingTransport(
            url=url, incoming_queue=asyncio.Queue(), http_session=session
        )
        try:
            reply = await transport._send_final_payload(
                [{"channel": "/meta/connect", "id": "1"}], headers={}
            )
            assert reply["successful"] is True
        finally:
            await session.close()
            server.close()

    asyncio.run(run())


@pytest.mark.parametrize("advised", [None, 0])
def test_a_request_without_an_advised_timeout_still_ends(
    monkeypatch: pytest.MonkeyPatch, advised: float | None
) -> None:
    """A handshake has no timeout from the server's advice (and aiohttp took 0 as none): a
    server that never answers must not hold the request, and the session's set-up slot,
    for ever."""
    monkeypatch.setattr("auditor.ingest.lean_http.DEFAULT_TIMEOUT", 0.3)

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await asyncio.sleep(5)  # deliberate: a server that never answers in time

    async def run() -> None:
        server, url = await _serve(stall)
        http = await _lean()
        try:
            with pytest.raises(TimeoutError):
                await http.post(url, b"[]", {}, advised)
        finally:
            await http.close()
            server.close()

    asyncio.run(run())


def test_bytes_on_an_idle_connection_retire_it() -> None:
    """A server that writes to a kept-alive connection nobody asked anything on (a 408
    before closing it) leaves a connection whose next answer could be misread: it is
    closed, and the next request goes out on a new one."""
    connections = 0
    sent_to_a_spoiled_connection: list[int] = []
    retired: dict[int, asyncio.Event] = {}  # per connection: the client closed it

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        number = connections
        await _read_request(reader)
        answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n[]"
        late = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n"
        if number == 1:  # with the answer, in the same segment
            writer.write(answer + late)
        else:  # after the answer, on the idle connection
            writer.write(answer)
            await writer.drain()
            await asyncio.sleep(0.05)  # deliberate: the 408 comes in a segment of its own
            writer.write(late)
        await writer.drain()
        try:
            await _read_request(reader)
            sent_to_a_spoiled_connection.append(number)
        except asyncio.IncompleteReadError:
            retired.setdefault(number, asyncio.Event()).set()  # the client closed it: right

    async def run() -> None:
        server, url = await _serve(handler)
        http = await _lean()
        try:
            assert (await http.post(url, b"[]", {}, 5)).body == b"[]"
            assert (await http.post(url, b"[]", {}, 5)).body == b"[]"
            # The late 408 reaches the idle connection, and the client retires it.
            await asyncio.wait_for(retired.setdefault(2, asyncio.Event()).wait(), 5)
            assert (await http.post(url, b"[]", {}, 5)).body == b"[]"
            assert connections == 3
            assert sent_to_a_spoiled_connection == []
        finally:
            await http.close()
            server.close()

    asyncio.run(run())


def test_a_session_keeps_at_most_one_idle_connection() -> None:
    """Two requests at once (a subscribe beside the held connect) need two connections;
    afterwards one is kept for the next request and the other closed, so 10,000 sessions
    hold 10,000 sockets, not 20,000."""
    open_now = 0
    release = asyncio.Event()
    holding = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal open_now
        open_now += 1
        try:
            while True:
                try:
                    _, _, body = await _read_request(reader)
                except asyncio.IncompleteReadError:
                    return
                if body == b"[1]":
                    holding.set()
                    await release.wait()  # the held connect
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
                writer.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        finally:
            open_now -= 1

    async def run() -> None:
        server, url = await _serve(handler)
        http = await _lean()
        try:
            held = asyncio.ensure_future(http.post(url, b"[1]", {}, 5))
            await asyncio.wait_for(holding.wait(), 5)  # its connection is busy
            assert (await http.post(url, b"[2]", {}, 5)).body == b"[2]"
            release.set()
            assert (await held).body == b"[1]"
            for _ in range(50):  # the server sees the close
                if open_now == 1:
                    break
                await asyncio.sleep(0.02)
            assert open_now == 1
            assert (await http.post(url, b"[3]", {}, 5)).body == b"[3]"
            assert open_now == 1
        finally:
            await http.close()
            server.close()

    asyncio.run(run())
