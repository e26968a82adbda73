"""The simulator object, the aiohttp application factory and the CometD endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from auditor.simulator import control, rest
from auditor.simulator.bayeux import BayeuxServer, Queued, RequestContext, Result, ServerSession
from auditor.simulator.config import LONG_POLLING, WEBSOCKET, SimConfig
from auditor.simulator.faults import Faults
from auditor.simulator.groundtruth import DELIVERED, UNDELIVERABLE, GroundTruth, utc_now_iso
from auditor.simulator.lifecycle import Engine, OperationError
from auditor.simulator.rest import COOKIE, HttpSessions, csrf_ok, json_error

log = logging.getLogger("auditor.simulator")
NOTIFICATIONS = "/api/v2/notifications"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Simulator:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.base_url = config.base_url()
        self.http_sessions = HttpSessions(dict.fromkeys(config.agent_list(), config.password))
        self.ground_truth = GroundTruth(config.ground_truth)
        self.faults = Faults(config.seed, config.malformed_rate)
        self.bayeux = BayeuxServer(config, self._lost)
        self.bayeux.on_acked = self._delivered
        self.engine = Engine(config, self._emit, self.base_url)
        self.seq = 0
        self.paused = False
        self.restarts = 0
        # Open websockets and the request that opened each (to abort its TCP connection).
        self.websockets: dict[web.WebSocketResponse, web.Request] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._resume = asyncio.Event()

    def set_base_url(self, url: str) -> None:
        """For an ephemeral port: the `uri` fields must name the port actually bound."""
        if not self.config.public_url:
            self.base_url = url
            self.engine.base_url = url

    # -- notifications in and out --------------------------------------------------------------

    def _emit(self, agent: str, message: dict[str, Any]) -> None:
        self.seq += 1
        message, kind = self.faults.maybe_malform(message)
        entry = Queued(self.seq, message, utc_now_iso(), kind)
        if self.bayeux.publish(agent, entry) == 0:
            self.ground_truth.record(
                seq=entry.seq,
                agent=agent,
                message=message,
                status=UNDELIVERABLE,
                generated_at=entry.generated_at,
                reason="no subscribed session",
                malformed=kind,
            )

    def _lost(self, agent: str, client_id: str, entries: list[Queued], reason: str) -> None:
        for entry in entries:
            self.ground_truth.record(
                seq=entry.seq,
                agent=agent,
                message=entry.message,
                status=UNDELIVERABLE,
                generated_at=entry.generated_at,
                client_id=client_id,
                reason=reason,
                malformed=entry.malformed,
            )

    def _delivered(self, session: ServerSession, entries: list[Queued]) -> None:
        now = utc_now_iso()
        for entry in entries:
            self.ground_truth.record(
                seq=entry.seq,
                agent=session.agent,
                message=entry.message,
                status=DELIVERED,
                generated_at=entry.generated_at,
                client_id=session.client_id,
                delivered_at=now,
                malformed=entry.malformed,
            )

    def outgoing(self, result: Result) -> tuple[list[dict[str, Any]], list[Queued]]:
        """The messages to write before the replies, and the entries they carry. With the ack
        extension, a connect reply carries the unacknowledged batch plus what is queued,
        each message with an `id` (so a client can drop a re-sent copy), and `ext.ack`."""
        session = result.session
        if not result.send_queue or session is None:
            return [], []
        if not session.ack:
            entries = session.take_queue()
            return [e.message for e in entries], entries
        connect = next(
            (r for r in result.replies if r.get("channel") == "/meta/connect" and r["successful"]),
            None,
        )
        if connect is None:
            return [], []
        batch, entries = self.bayeux.next_batch(session, session.take_queue())
        connect["ext"] = {"ack": batch}
        return [dict(e.message, id=str(e.seq)) for e in entries], []

    def after_operation(self) -> None:
        """Hook after a REST operation emitted its notification(s)."""
        self.ground_truth.flush()

    def generate(self, count: int) -> int:
        """Run the generator for at least `count` notifications now; returns how many."""
        before = self.engine.generated
        while self.engine.generated - before < count:
            self.engine.step()
        return self.engine.generated - before

    # -- the CometD endpoint -------------------------------------------------------------------

    def _context(self, request: web.Request, transport: str) -> RequestContext:
        session = self.http_sessions.from_request(request)
        basic = self.http_sessions.check_basic(request.headers.get("Authorization"))
        if session is not None and (basic is None or basic == session.agent):
            return RequestContext(transport, session.sid, session.agent, self.http_sessions.create)
        return RequestContext(transport, None, basic, self.http_sessions.create)

    async def notifications(self, request: web.Request) -> web.StreamResponse:
        if request.method == "GET" and request.headers.get("Upgrade", "").lower() == "websocket":
            if WEBSOCKET not in self.config.transports:
                return json_error(400, 2, "websocket transport is disabled")
            return await self._websocket(request)
        if request.method != "POST":
            return json_error(405, 2, "CometD endpoint: POST Bayeux messages (or open a websocket)")
        if LONG_POLLING not in self.config.transports:
            return _bayeux_error(400, "long-polling transport is disabled")
        if self.config.csrf_on_cometd and not csrf_ok(self, request):
            return json_error(403, 20, rest.CSRF_MESSAGE)
        messages = _parse_bayeux(await request.text())
        if messages is None:
            return _bayeux_error(400, "400::Malformed JSON: expected a Bayeux message array")
        ctx = self._context(request, LONG_POLLING)
        result = await self.bayeux.handle(messages, ctx)
        if result.dropped:
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=503)
        messages, entries = self.outgoing(result)
        # orjson: at 10,000+ notifications/s encoding is most of the simulator's CPU.
        body = orjson.dumps(messages + result.replies)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(body)
        if ctx.set_cookie:
            response.set_cookie(COOKIE, ctx.set_cookie, path="/", httponly=True)
        try:
            await response.prepare(request)
            await response.write(body)
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            if entries and result.session is not None:
                self._lost(
                    result.session.agent,
                    result.session.client_id,
                    entries,
                    "connection lost while writing the /meta/connect reply",
                )
            return response
        if entries and result.session is not None:
            self._delivered(result.session, entries)
        return response

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.websockets[ws] = request
        ctx = self._context(request, WEBSOCKET)
        lock = asyncio.Lock()
        pending: set[asyncio.Task[None]] = set()

        async def process(messages: list[Any]) -> None:
            result = await self.bayeux.handle(messages, ctx)
            if result.dropped:
                await ws.close()
                return
            async with lock:
                messages, entries = self.outgoing(result)
                text = orjson.dumps(messages + result.replies).decode()
                try:
                    await ws.send_str(text)
                except (ConnectionError, RuntimeError):
                    if entries and result.session is not None:
                        self._lost(
                            result.session.agent,
                            result.session.client_id,
                            entries,
                            "websocket closed while sending",
                        )
                    return
                if entries and result.session is not None:
                    self._delivered(result.session, entries)

        try:
            async for frame in ws:
                if frame.type != WSMsgType.TEXT:
                    break
                messages = _parse_bayeux(frame.data)
                if messages is None:
                    await ws.send_str(
                        json.dumps(
                            [
                                {
                                    "channel": "/meta/unknown",
                                    "successful": False,
                                    "error": "400::Malformed JSON",
                                }
                            ]
                        )
                    )
                    continue
                # A /meta/connect may be held; run it aside so the socket keeps reading.
                task = asyncio.create_task(process(messages))
                pending.add(task)
                task.add_done_callback(pending.discard)
        finally:
            self.websockets.pop(ws, None)
            for task in list(pending):
                task.cancel()
        return ws

    # -- background loops ----------------------------------------------------------------------

    async def _generator(self) -> None:
        cfg = self.config
        rate = cfg.rate * (len(self.engine.agents) if cfg.per_agent else 1)
        if rate <= 0:
            return
        loop = asyncio.get_running_loop()
        start, base = loop.time(), self.engine.generated
        while cfg.count is None or self.engine.generated < cfg.count:
            if self.paused:
                await self._resume.wait()
                start, base = loop.time(), self.engine.generated
            due = int((loop.time() - start) * rate) - (self.engine.generated - base)
            budget = min(due, 2000)
            if cfg.count is not None:
                budget = min(budget, cfg.count - self.engine.generated)
            target = self.engine.generated + budget
            while self.engine.generated < target:
                self.engine.step()
            if due > 2 * rate:  # far behind (e.g. after a stall): do not burst forever
                start, base = loop.time(), self.engine.generated
            await asyncio.sleep(0.005 if budget < 2000 else 0)

    async def _sweeper(self) -> None:
        period = max(0.02, min(1.0, self.config.max_interval_ms / 4000))
        while True:
            await asyncio.sleep(period)
            self.bayeux.sweep()
            self.ground_truth.flush()

    async def _every(self, seconds: float, action: str) -> None:
        while True:
            await asyncio.sleep(seconds)
            control.apply_fault(self, action, {"seconds": self.config.stall_for})

    def abort_websockets(self) -> int:
        """Cut every websocket's TCP connection without a close frame (a network drop)."""
        count = 0
        for request in list(self.websockets.values()):
            if request.transport is not None:
                request.transport.abort()
                count += 1
        return count

    def pause(self, paused: bool) -> None:
        self.paused = paused
        if paused:
            self._resume.clear()
        else:
            self._resume.set()

    async def start(self) -> None:
        self._resume.set()
        self._tasks.append(asyncio.create_task(self._generator()))
        self._tasks.append(asyncio.create_task(self._sweeper()))
        cfg = self.config
        for seconds, action in (
            (cfg.expire_every, "expire"),
            (cfg.restart_every, "restart"),
            (cfg.drop_every, "drop"),
            (cfg.stall_every, "stall"),
        ):
            if seconds > 0:
                self._tasks.append(asyncio.create_task(self._every(seconds, action)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for ws in list(self.websockets):
            await ws.close()
        self.bayeux.expire(None, "simulator stopped")
        self.ground_truth.close()


def _is_cometd(path: str) -> bool:
    return path == NOTIFICATIONS or path.startswith(NOTIFICATIONS + "/")


def _parse_bayeux(text: str) -> list[Any] | None:
    try:
        parsed = json.loads(text)
    except ValueError:
        return None
    if isinstance(parsed, dict):
        return [parsed]
    if isinstance(parsed, list) and parsed:
        return parsed
    return None


def _bayeux_error(status: int, error: str) -> web.Response:
    return web.json_response(
        [{"channel": "/meta/unknown", "successful": False, "error": error}], status=status
    )


SIMULATOR = web.AppKey("simulator", Simulator)


def create_app(config: SimConfig) -> web.Application:
    sim = Simulator(config)

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        is_control = request.path.startswith("/sim/")
        if not is_control:
            stall = sim.faults.stall_remaining()
            if stall > 0:
                await asyncio.sleep(stall)
            if (
                request.path.startswith("/api/v2/")
                and not _is_cometd(request.path)
                and not csrf_ok(sim, request)
            ):
                return json_error(403, 20, rest.CSRF_MESSAGE)
        try:
            return await handler(request)
        except OperationError as exc:
            return json_error(exc.http_status, exc.status_code, exc.message)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return json_error(exc.status, exc.status, exc.reason)
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception:
            log.exception("unexpected error on %s %s", request.method, request.path)
            return json_error(500, 4, "Internal simulator error (logged on the simulator side)")

    app = web.Application(middlewares=[guard])
    app[SIMULATOR] = sim
    app.router.add_routes(rest.routes(sim))
    app.router.add_route("*", NOTIFICATIONS, sim.notifications)
    # CometD JS appends the meta channel to the URL (appendMessageTypeToURL), e.g.
    # /api/v2/notifications/handshake; the CometD servlet is mapped to the whole subtree.
    app.router.add_route("*", NOTIFICATIONS + "/{tail:.*}", sim.notifications)
    app.router.add_routes(control.routes(sim))

    async def on_cleanup(app: web.Application) -> None:
        await sim.stop()

    app.on_cleanup.append(on_cleanup)
    return app


async def serve(config: SimConfig) -> tuple[web.AppRunner, Simulator, str]:
    """Bind, then start generation (so `uri` fields name the port actually bound)."""
    app = create_app(config)
    sim = app[SIMULATOR]
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    await site.start()
    sockets = runner.addresses
    port = sockets[0][1] if sockets else config.port
    url = f"http://{config.host}:{port}"
    sim.set_base_url(url)
    await sim.start()
    return runner, sim, url
