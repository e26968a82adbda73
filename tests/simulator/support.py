"""Helpers for the simulator tests: a real simulator on an ephemeral port in a thread, real
clients (aiohttp, aiocometd-noloop) talking to it over loopback."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import urllib.request
from dataclasses import replace
from types import TracebackType
from typing import Any

import aiohttp
from aiocometd_noloop import Client, ConnectionType, Extension

from auditor.simulator.app import Simulator, serve
from auditor.simulator.config import SimConfig

PASSWORD = "secret"


def fast_config(**overrides: Any) -> SimConfig:
    """Small timeouts, no background generation unless asked: tests drive /sim/generate."""
    base = SimConfig(
        port=0,
        agents=3,
        rate=0,
        timeout_ms=1000,
        max_interval_ms=1000,
        error_rate=0.0,
    )
    return replace(base, **overrides)


class SimThread:
    """Runs the simulator's own event loop in a thread; tests talk to it over HTTP only."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.url = ""
        self.sim: Simulator | None = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._error: BaseException | None = None

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # surfaced in __enter__/__exit__
            self._error = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        runner, self.sim, self.url = await serve(self.config)
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def __enter__(self) -> SimThread:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        if self._error is not None:
            raise self._error

    def control(self, action: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        request = urllib.request.Request(  # noqa: S310  (http://127.0.0.1 only)
            f"{self.url}/sim/{action}",
            data=json.dumps(body or {}).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            result: dict[str, Any] = json.load(response)
        return result

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/sim/stats", timeout=10) as response:  # noqa: S310
            result: dict[str, Any] = json.load(response)
        return result


class Headers(Extension):  # type: ignore[misc]
    """Adds HTTP headers (CSRF token) to every CometD request, as the ingest worker does."""

    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers
        self.handshakes = 0

    async def outgoing(self, payload: list[dict[str, Any]], headers: dict[str, str]) -> None:
        headers.update(self.headers)

    async def incoming(
        self, payload: list[dict[str, Any]], headers: dict[str, str] | None = None
    ) -> None:
        for message in payload:
            if message.get("channel") == "/meta/handshake" and message.get("successful"):
                self.handshakes += 1


def basic(agent: str, password: str = PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{agent}:{password}".encode()).decode()


async def login(url: str, agent: str) -> tuple[aiohttp.ClientSession, str]:
    """GET /api/v2/me with Basic auth; returns the cookie-keeping session and the CSRF token."""
    http = aiohttp.ClientSession(
        cookie_jar=aiohttp.CookieJar(unsafe=True),
        headers={"Authorization": basic(agent)},
        json_serialize=json.dumps,
    )
    async with http.get(f"{url}/api/v2/me") as response:
        assert response.status == 200
        token = response.headers.get("X-CSRF-TOKEN", "")
    return http, token


async def open_cometd(
    url: str, agent: str, transport: str = "long-polling", channel: str = "/v2/me/*"
) -> tuple[Client, Headers]:
    http, token = await login(url, agent)
    headers = Headers({"X-CSRF-TOKEN": token})
    client = Client(
        f"{url}/api/v2/notifications",
        connection_types=[ConnectionType(transport)],
        extensions=[headers],
        connection_timeout=5,
        max_pending_count=0,
        ssl=False,
    )
    client._http_session = http
    try:
        await client.open()
        await client.subscribe(channel)
    except BaseException:
        await client.close()
        raise
    return client, headers


async def receive(client: Client, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    received: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while len(received) < count:
            received.append(await client.receive())
    return received


async def settle(seconds: float = 0.05) -> None:
    await asyncio.sleep(seconds)
