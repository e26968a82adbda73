"""How many notifications/s one simulator process delivers over long-polling to 100 sessions.

Starts `auditor simulate` in a subprocess on loopback, opens 100 agent sessions (login,
handshake, subscribe, long-poll loop) with a small aiohttp client of its own (aiocometd's
receive() costs three tasks per message and would measure the client, not the server), lets the
generator run at several target rates, and prints what the clients received per second. The
simulator's own count (/sim/stats `delivered`) is shown next to it.

    python bench/simulator.py [--sessions 100] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import subprocess
import sys
import time

import aiohttp

from auditor.ports import free_port

CHANNEL = "/v2/me/openmedia"


class Session:
    def __init__(self, url: str, agent: str) -> None:
        auth = base64.b64encode(f"{agent}:secret".encode()).decode()
        self.url = url
        self.http = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            headers={"Authorization": f"Basic {auth}"},
        )
        self.client_id = ""
        self.received = 0

    async def post(self, messages: list[dict[str, object]]) -> list[dict[str, object]]:
        async with self.http.post(f"{self.url}/api/v2/notifications", json=messages) as r:
            body: list[dict[str, object]] = json.loads(await r.read())
            return body

    async def open(self) -> None:
        async with self.http.get(f"{self.url}/api/v2/me") as r:
            await r.read()
        reply = await self.post(
            [
                {
                    "channel": "/meta/handshake",
                    "version": "1.0",
                    "supportedConnectionTypes": ["long-polling"],
                }
            ]
        )
        self.client_id = str(reply[0]["clientId"])
        await self.post(
            [
                {
                    "channel": "/meta/connect",
                    "clientId": self.client_id,
                    "connectionType": "long-polling",
                }
            ]
        )
        await self.post(
            [{"channel": "/meta/subscribe", "clientId": self.client_id, "subscription": CHANNEL}]
        )

    async def poll(self) -> None:
        connect = [
            {
                "channel": "/meta/connect",
                "clientId": self.client_id,
                "connectionType": "long-polling",
            }
        ]
        while True:
            body = await self.post(connect)
            self.received += sum(1 for m in body if m.get("channel") == CHANNEL)


async def control(http: aiohttp.ClientSession, url: str, action: str) -> dict[str, int]:
    async with http.post(f"{url}/sim/{action}", json={}) as r:
        result: dict[str, int] = await r.json()
        return result


async def stats(http: aiohttp.ClientSession, url: str) -> dict[str, int]:
    async with http.get(f"{url}/sim/stats") as r:
        result: dict[str, int] = await r.json()
        return result


async def measure(url: str, sessions: list[Session], seconds: float) -> tuple[float, float]:
    async with aiohttp.ClientSession() as http:
        await control(http, url, "resume")
        await asyncio.sleep(1.0)  # warm up
        before = sum(s.received for s in sessions)
        server_before = (await stats(http, url))["delivered"]
        t0 = time.perf_counter()
        await asyncio.sleep(seconds)
        elapsed = time.perf_counter() - t0
        after = sum(s.received for s in sessions)
        server_after = (await stats(http, url))["delivered"]
        await control(http, url, "pause")
        await asyncio.sleep(0.5)  # drain
    return (after - before) / elapsed, (server_after - server_before) / elapsed


async def run_rate(rate: int, n_sessions: int, seconds: float) -> tuple[float, float]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from auditor.cli import main; main()",
            "simulate",
            "--port",
            str(port),
            "--agents",
            str(n_sessions),
            "--rate",
            str(rate),
            "--timeout-ms",
            "5000",
            "--no-csrf",
        ],
        stderr=subprocess.DEVNULL,
    )
    sessions: list[Session] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                try:
                    await control(http, url, "pause")
                    break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
        sessions = [Session(url, f"agent{i:03d}") for i in range(1, n_sessions + 1)]
        await asyncio.gather(*(s.open() for s in sessions))
        tasks = [asyncio.create_task(s.poll()) for s in sessions]
        return await measure(url, sessions, seconds)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for s in sessions:
            await s.http.close()
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rates", default="5000,10000,20000,40000")
    args = parser.parse_args()
    print(
        f"simulator long-polling delivery, {args.sessions} sessions, loopback, "
        f"{args.seconds:g} s per rate (one simulator process; client: own aiohttp poller)"
    )
    print(f"{'target/s':>10} {'received/s':>12} {'server delivered/s':>20}")
    for rate in (int(r) for r in args.rates.split(",")):
        received, delivered = asyncio.run(run_rate(rate, args.sessions, args.seconds))
        print(f"{rate:>10} {received:>12,.0f} {delivered:>20,.0f}")


if __name__ == "__main__":
    main()
