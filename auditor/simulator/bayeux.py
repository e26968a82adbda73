"""A Bayeux 1.0 server with CometD 3 (Java) semantics, transport-neutral.

Sessions are bound to an agent and to the HTTP session (JSESSIONID) that handshook; a message
whose clientId is unknown, expired, or presented with another HTTP session gets
`402::Unknown client` with advice reconnect=handshake. Each session has one FIFO queue; a
publish appends to the queues of that agent's subscribed sessions and wakes a held
/meta/connect, which then returns everything queued, in order. No task is created per message.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from auditor.simulator.config import SimConfig

Message = dict[str, Any]

WAKE, EXPIRED, DROPPED = "wake", "expired", "dropped"


class Queued(NamedTuple):
    seq: int
    message: Message
    generated_at: str
    malformed: str | None


# Called with the queued entries of a session that went away before they were delivered.
LostHandler = Callable[[str, str, list[Queued], str], None]
ACK_LOST = "session lost before ack"


def channel_matches(pattern: str, channel: str) -> bool:
    """Bayeux wildcards: `/a/*` matches one segment below /a, `/a/**` any depth."""
    if pattern == channel:
        return True
    if pattern.endswith("/**"):
        return channel.startswith(pattern[:-2])
    if pattern.endswith("/*"):
        prefix = pattern[:-1]
        return channel.startswith(prefix) and "/" not in channel[len(prefix) :]
    return False


def valid_channel(name: Any) -> bool:
    if not isinstance(name, str) or not name.startswith("/") or name.endswith("/"):
        return False
    segments = name[1:].split("/")
    if any(not s for s in segments):
        return False
    return all(s not in ("*", "**") for s in segments[:-1])


@dataclass(eq=False)
class ServerSession:
    client_id: str
    agent: str
    http_sid: str
    transport: str
    last_active: float
    subscriptions: set[str] = field(default_factory=set)
    queue: deque[Queued] = field(default_factory=deque)
    waiter: asyncio.Future[str] | None = None
    connected: bool = False
    holding: int = 0
    alive: bool = True
    # Ack extension: the last batch sent and not yet acknowledged (re-sent until it is).
    ack: bool = False
    batch: int = 0
    unacked: list[Queued] = field(default_factory=list)
    _cache: dict[str, bool] = field(default_factory=dict)

    def matches(self, channel: str) -> bool:
        hit = self._cache.get(channel)
        if hit is None:
            hit = any(channel_matches(p, channel) for p in self.subscriptions)
            self._cache[channel] = hit
        return hit

    def wake(self, why: str) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(why)

    def take_queue(self) -> list[Queued]:
        items = list(self.queue)
        self.queue.clear()
        return items


@dataclass
class RequestContext:
    """What the HTTP layer knows about the request that carried the messages."""

    transport: str
    http_sid: str | None  # JSESSIONID of a valid HTTP session, if the request carried one
    agent: str | None  # the agent of that HTTP session, or from a valid Basic header
    new_http_sid: Callable[[str], str] | None = None  # creates an HTTP session for an agent
    set_cookie: str | None = None  # filled when a handshake created an HTTP session


@dataclass
class Result:
    replies: list[Message]
    session: ServerSession | None
    send_queue: bool
    dropped: bool = False


def _error(msg: Any, channel: str, error: str, **extra: Any) -> Message:
    reply: Message = {"channel": channel, "successful": False, "error": error}
    if isinstance(msg, dict) and "id" in msg:
        reply["id"] = msg["id"]
    reply.update(extra)
    return reply


class BayeuxServer:
    def __init__(self, config: SimConfig, on_lost: LostHandler) -> None:
        self.config = config
        self.on_lost = on_lost
        # Called with a session's batch when the client acknowledges it (ack extension).
        self.on_acked: Callable[[ServerSession, list[Queued]], None] | None = None
        self.sessions: dict[str, ServerSession] = {}
        self.by_agent: dict[str, list[ServerSession]] = {}
        self.stats = {
            "handshakes": 0,
            "connects": 0,
            "disconnects": 0,
            "unknown_client": 0,
            "expired": 0,
        }

    # -- publishing ------------------------------------------------------------------------

    def publish(self, agent: str, entry: Queued) -> int:
        """Queue for every subscribed session of the agent; returns how many got a copy."""
        count = 0
        channel = entry.message.get("channel", "")
        for session in self.by_agent.get(agent, ()):
            if session.matches(channel):
                session.queue.append(entry)
                session.wake(WAKE)
                count += 1
        return count

    def has_receiver(self, agent: str, channel: str) -> bool:
        return any(s.matches(channel) for s in self.by_agent.get(agent, ()))

    # -- session lifecycle -----------------------------------------------------------------

    def remove(self, session: ServerSession, reason: str, why: str = EXPIRED) -> None:
        if not session.alive:
            return
        session.alive = False
        self.sessions.pop(session.client_id, None)
        peers = self.by_agent.get(session.agent)
        if peers is not None and session in peers:
            peers.remove(session)
            if not peers:
                del self.by_agent[session.agent]
        session.wake(why)
        unacked, session.unacked = session.unacked, []
        if unacked:
            self.on_lost(session.agent, session.client_id, unacked, ACK_LOST)
        lost = session.take_queue()
        if lost:
            self.on_lost(session.agent, session.client_id, lost, reason)

    def expire(self, agent: str | None = None, reason: str = "session expired") -> int:
        victims = [s for s in self.sessions.values() if agent is None or s.agent == agent]
        for session in victims:
            self.remove(session, reason)
        self.stats["expired"] += len(victims)
        return len(victims)

    def drop(self) -> int:
        """Abort every held /meta/connect without a reply (the queue stays for the next one)."""
        held = [s for s in self.sessions.values() if s.holding]
        for session in held:
            session.wake(DROPPED)
        return len(held)

    def sweep(self) -> None:
        """Expire sessions that did not come back within maxInterval (CometD 3 semantics)."""
        now = time.monotonic()
        limit = (self.config.interval_ms + self.config.max_interval_ms) / 1000
        stale = [s for s in self.sessions.values() if not s.holding and now - s.last_active > limit]
        for session in stale:
            self.remove(session, "session expired (no /meta/connect within maxInterval)")
        self.stats["expired"] += len(stale)

    def _advice(self, timeout: int | None = None) -> Message:
        return {
            "reconnect": "retry",
            "interval": self.config.interval_ms,
            "timeout": self.config.timeout_ms if timeout is None else timeout,
        }

    def _unknown(self, msg: Message) -> Message:
        self.stats["unknown_client"] += 1
        return _error(
            msg,
            msg["channel"],
            "402::Unknown client",
            advice={"reconnect": "handshake", "interval": 0},
        )

    # -- message handling ------------------------------------------------------------------

    async def handle(self, messages: list[Any], ctx: RequestContext) -> Result:
        replies: list[Message] = []
        session: ServerSession | None = None
        send_queue = False
        dropped = False
        for msg in messages:
            if not isinstance(msg, dict) or not isinstance(msg.get("channel"), str):
                replies.append(_error(msg, "/meta/unknown", "400::Malformed message"))
                continue
            channel = msg["channel"]
            if channel == "/meta/handshake":
                reply, session = self._handshake(msg, ctx)
                replies.append(reply)
                continue
            client_id = msg.get("clientId")
            found = self.sessions.get(client_id) if isinstance(client_id, str) else None
            if found is None or (found.http_sid != ctx.http_sid):
                replies.append(self._unknown(msg))
                continue
            session = found
            session.last_active = time.monotonic()
            if channel == "/meta/connect":
                if session.ack:
                    self._acknowledge(msg, session)
                reply, why = await self._connect(msg, session, len(messages) == 1)
                if why == DROPPED:
                    dropped = True
                    break
                replies.append(reply)
                send_queue = reply["successful"]
            elif channel in ("/meta/subscribe", "/meta/unsubscribe"):
                replies.append(self._subscribe(msg, session, channel == "/meta/subscribe"))
                # With acks, CometD delivers on /meta/connect replies only.
                send_queue = send_queue or not (
                    self.config.meta_connect_delivery_only or session.ack
                )
            elif channel == "/meta/disconnect":
                self.stats["disconnects"] += 1
                self.remove(session, "client disconnected", WAKE)
                reply = {"channel": channel, "successful": True}
                if "id" in msg:
                    reply["id"] = msg["id"]
                replies.append(reply)
            elif channel.startswith("/meta/"):
                replies.append(_error(msg, channel, f"400::Unknown meta channel {channel}"))
            else:
                # GWS topics are server-to-client only.
                replies.append(_error(msg, channel, "403::Publish denied"))
        if session is not None and not session.alive:
            send_queue = False
        return Result(replies, session, send_queue, dropped)

    def _handshake(self, msg: Message, ctx: RequestContext) -> tuple[Message, ServerSession | None]:
        types = msg.get("supportedConnectionTypes")
        offered = [t for t in types if isinstance(t, str)] if isinstance(types, list) else []
        if ctx.agent is None:
            return _error(
                msg,
                "/meta/handshake",
                "403::Authentication failed",
                advice={"reconnect": "none"},
            ), None
        if ctx.transport not in self.config.transports or (
            offered and not set(offered) & set(self.config.transports)
        ):
            return _error(
                msg,
                "/meta/handshake",
                "406::Unsupported connection types",
                supportedConnectionTypes=list(self.config.transports),
                advice={"reconnect": "none"},
            ), None
        http_sid = ctx.http_sid
        if http_sid is None:
            assert ctx.new_http_sid is not None
            http_sid = ctx.new_http_sid(ctx.agent)
            ctx.set_cookie = http_sid
            ctx.http_sid = http_sid
        client_id = secrets.token_hex(13)
        session = ServerSession(client_id, ctx.agent, http_sid, ctx.transport, time.monotonic())
        self.sessions[client_id] = session
        self.by_agent.setdefault(ctx.agent, []).append(session)
        self.stats["handshakes"] += 1
        reply: Message = {
            "channel": "/meta/handshake",
            "successful": True,
            "version": "1.0",
            "minimumVersion": "1.0",
            "clientId": client_id,
            "supportedConnectionTypes": list(self.config.transports),
            "advice": self._advice(),
        }
        if "id" in msg:
            reply["id"] = msg["id"]
        ext = msg.get("ext")
        if self.config.ack_extension and isinstance(ext, dict) and ext.get("ack") is True:
            session.ack = True
            reply["ext"] = {"ack": True}
        return reply, session

    def _acknowledge(self, msg: Message, session: ServerSession) -> None:
        ext = msg.get("ext")
        acked = ext.get("ack") if isinstance(ext, dict) else None
        if isinstance(acked, int) and acked >= session.batch and session.unacked:
            batch, session.unacked = session.unacked, []
            if self.on_acked is not None:
                self.on_acked(session, batch)

    def next_batch(self, session: ServerSession, fresh: list[Queued]) -> tuple[int, list[Queued]]:
        """Ack extension: what was not acknowledged is re-sent with the fresh entries, as one
        new batch that stays unacknowledged until the client's next /meta/connect acks it."""
        session.batch += 1
        session.unacked = session.unacked + fresh
        return session.batch, session.unacked

    async def _connect(
        self, msg: Message, session: ServerSession, can_suspend: bool
    ) -> tuple[Message, str]:
        self.stats["connects"] += 1
        advice = msg.get("advice")
        timeout = self.config.timeout_ms
        if isinstance(advice, dict) and isinstance(advice.get("timeout"), int):
            timeout = max(0, min(advice["timeout"], self.config.timeout_ms))
        was_connected = session.connected or not self.config.first_connect_immediate
        session.connected = True
        why = WAKE
        if can_suspend and timeout > 0 and was_connected and not (session.queue or session.unacked):
            session.wake(WAKE)  # a newer connect replaces a held one
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[str] = loop.create_future()
            session.waiter = waiter
            session.holding += 1
            timer = loop.call_later(timeout / 1000, _settle, waiter)
            try:
                why = await waiter
            finally:
                timer.cancel()
                session.holding -= 1
                if session.waiter is waiter:
                    session.waiter = None
                session.last_active = time.monotonic()
        if why == EXPIRED or not session.alive:
            return self._unknown(msg), why
        reply: Message = {"channel": "/meta/connect", "successful": True}
        if "id" in msg:
            reply["id"] = msg["id"]
        reply["advice"] = self._advice()
        return reply, why

    def _subscribe(self, msg: Message, session: ServerSession, add: bool) -> Message:
        channel = msg["channel"]
        sub = msg.get("subscription")
        subs = sub if isinstance(sub, list) else [sub]
        if not subs or not all(valid_channel(s) for s in subs):
            return _error(msg, channel, f"400::Invalid subscription {sub!r}", subscription=sub)
        if any(isinstance(s, str) and s.startswith("/meta/") for s in subs):
            return _error(msg, channel, "403::Subscription denied", subscription=sub)
        for s in subs:
            assert isinstance(s, str)  # checked by valid_channel above
            if add:
                session.subscriptions.add(s)
            else:
                session.subscriptions.discard(s)
        session._cache.clear()
        reply: Message = {"channel": channel, "successful": True, "subscription": sub}
        if "id" in msg:
            reply["id"] = msg["id"]
        return reply


def _settle(waiter: asyncio.Future[str]) -> None:
    if not waiter.done():
        waiter.set_result(WAKE)
