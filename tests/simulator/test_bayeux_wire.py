"""The Bayeux server on the wire, with a plain aiohttp client (what CometD 3 Java would do)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from tests.simulator.support import SimThread, basic, fast_config

HANDSHAKE = {
    "channel": "/meta/handshake",
    "version": "1.0",
    "supportedConnectionTypes": ["long-polling"],
}


class Raw:
    """One agent's HTTP session speaking raw Bayeux over long-polling."""

    def __init__(self, url: str, agent: str = "agent001") -> None:
        self.url = url
        self.http = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True), headers={"Authorization": basic(agent)}
        )
        self.client_id = ""

    async def post(self, messages: Any) -> tuple[int, Any]:
        async with self.http.post(f"{self.url}/api/v2/notifications", json=messages) as r:
            return r.status, await r.json()

    async def handshake(self) -> dict[str, Any]:
        _, body = await self.post([HANDSHAKE])
        self.client_id = body[0]["clientId"]
        return dict(body[0])

    async def connect(self, **extra: Any) -> list[dict[str, Any]]:
        msg = {"channel": "/meta/connect", "clientId": self.client_id}
        msg["connectionType"] = "long-polling"
        msg.update(extra)
        _, body = await self.post([msg])
        return list(body)

    async def subscribe(self, sub: str) -> dict[str, Any]:
        _, body = await self.post(
            [{"channel": "/meta/subscribe", "clientId": self.client_id, "subscription": sub}]
        )
        return dict(body[-1])

    async def close(self) -> None:
        await self.http.close()


def test_handshake_reply_carries_client_id_and_cometd3_advice() -> None:
    with SimThread(fast_config(timeout_ms=1000)) as server:

        async def run() -> dict[str, Any]:
            raw = Raw(server.url)
            try:
                return await raw.handshake()
            finally:
                await raw.close()

        reply = asyncio.run(run())
    assert reply["successful"] is True
    assert reply["advice"] == {"reconnect": "retry", "interval": 0, "timeout": 1000}
    assert "long-polling" in reply["supportedConnectionTypes"]


def test_first_connect_returns_at_once_and_later_connects_are_held_for_timeout() -> None:
    with SimThread(fast_config(timeout_ms=400)) as server:

        async def run() -> tuple[float, float, float]:
            raw = Raw(server.url)
            try:
                await raw.handshake()
                t0 = time.monotonic()
                await raw.connect()
                t1 = time.monotonic()
                await raw.connect()
                t2 = time.monotonic()
                await raw.connect(advice={"timeout": 0})
                t3 = time.monotonic()
                return t1 - t0, t2 - t1, t3 - t2
            finally:
                await raw.close()

        first, held, immediate = asyncio.run(run())
    assert first < 0.2
    assert held >= 0.35
    assert immediate < 0.2


def test_wildcard_subscription_delivers_queued_messages_before_the_connect_reply() -> None:
    with SimThread(fast_config(agents=1)) as server:

        async def run() -> list[dict[str, Any]]:
            raw = Raw(server.url)
            try:
                await raw.handshake()
                await raw.connect()
                assert (await raw.subscribe("/v2/**"))["successful"]
                await asyncio.to_thread(server.control, "generate", {"count": 3})
                return await raw.connect()
            finally:
                await raw.close()

        body = asyncio.run(run())
    assert [m["channel"] for m in body[:-1]] == ["/v2/me/openmedia"] * (len(body) - 1)
    assert len(body) >= 4
    assert body[-1]["channel"] == "/meta/connect"
    assert body[-1]["successful"] is True


def test_unknown_client_id_gets_402_with_handshake_advice() -> None:
    with SimThread(fast_config()) as server:

        async def run() -> dict[str, Any]:
            raw = Raw(server.url)
            try:
                await raw.handshake()
                raw.client_id = "nonexistent"
                return (await raw.connect())[0]
            finally:
                await raw.close()

        reply = asyncio.run(run())
    assert reply["successful"] is False
    assert reply["error"] == "402::Unknown client"
    assert reply["advice"]["reconnect"] == "handshake"


def test_connect_from_another_http_session_gets_402() -> None:
    with SimThread(fast_config()) as server:

        async def run() -> dict[str, Any]:
            owner, thief = Raw(server.url), Raw(server.url)
            try:
                await owner.handshake()
                await thief.handshake()  # same agent, its own JSESSIONID
                thief.client_id = owner.client_id
                return (await thief.connect())[0]
            finally:
                await owner.close()
                await thief.close()

        assert asyncio.run(run())["error"] == "402::Unknown client"


def test_session_expires_when_client_does_not_reconnect_within_max_interval() -> None:
    with SimThread(fast_config(max_interval_ms=200)) as server:

        async def run() -> dict[str, Any]:
            raw = Raw(server.url)
            try:
                await raw.handshake()
                await raw.connect()
                await asyncio.sleep(0.5)
                return (await raw.connect())[0]
            finally:
                await raw.close()

        assert asyncio.run(run())["error"] == "402::Unknown client"
        assert server.stats()["expired"] >= 1


def test_batched_messages_in_one_post_each_get_a_reply() -> None:
    with SimThread(fast_config()) as server:

        async def run() -> list[dict[str, Any]]:
            raw = Raw(server.url)
            try:
                await raw.handshake()
                cid = raw.client_id
                _, body = await raw.post(
                    [
                        {"id": "2", "channel": "/meta/connect", "clientId": cid},
                        {
                            "id": "3",
                            "channel": "/meta/subscribe",
                            "clientId": cid,
                            "subscription": "/v2/me/openmedia",
                        },
                        {
                            "id": "4",
                            "channel": "/meta/unsubscribe",
                            "clientId": cid,
                            "subscription": "/v2/me/openmedia",
                        },
                    ]
                )
                return list(body)
            finally:
                await raw.close()

        body = asyncio.run(run())
    assert [(m["id"], m["successful"]) for m in body] == [("2", True), ("3", True), ("4", True)]


def test_malformed_bayeux_gets_a_bayeux_error_reply_not_a_trace() -> None:
    with SimThread(fast_config()) as server:

        async def run() -> list[tuple[int, Any]]:
            raw = Raw(server.url)
            try:
                await raw.handshake()
                results = []
                async with raw.http.post(
                    f"{server.url}/api/v2/notifications",
                    data=b"[{not json",
                    headers={"Content-Type": "application/json"},
                ) as r:
                    results.append((r.status, await r.json()))
                results.append(await raw.post([{"no": "channel"}]))
                results.append(await raw.post([42]))
                results.append(
                    await raw.post(
                        [
                            {
                                "channel": "/meta/subscribe",
                                "clientId": raw.client_id,
                                "subscription": "bad//channel",
                            }
                        ]
                    )
                )
                results.append(
                    await raw.post(
                        [{"channel": "/v2/me/openmedia", "clientId": raw.client_id, "data": {}}]
                    )
                )
                return results
            finally:
                await raw.close()

        results = asyncio.run(run())
    status, body = results[0]
    assert status == 400
    assert body[0]["successful"] is False
    assert body[0]["error"].startswith("400::")
    for _, reply in results[1:]:
        assert reply[0]["successful"] is False
        assert reply[0]["error"][:3] in ("400", "403")
        assert "Traceback" not in str(reply)


def test_each_agent_session_sees_only_its_own_notifications_and_peers_get_copies() -> None:
    with SimThread(fast_config(agents=2)) as server:

        async def run() -> dict[str, list[dict[str, Any]]]:
            a1, a1bis, a2 = Raw(server.url), Raw(server.url), Raw(server.url, "agent002")
            try:
                for raw in (a1, a1bis, a2):
                    await raw.handshake()
                    await raw.connect()
                    await raw.subscribe("/v2/me/openmedia")
                await asyncio.to_thread(server.control, "generate", {"count": 40})
                return {
                    "a1": await a1.connect(advice={"timeout": 0}),
                    "a1bis": await a1bis.connect(advice={"timeout": 0}),
                    "a2": await a2.connect(advice={"timeout": 0}),
                }
            finally:
                for raw in (a1, a1bis, a2):
                    await raw.close()

        got = asyncio.run(run())
    a1 = [m for m in got["a1"] if m["channel"] == "/v2/me/openmedia"]
    a2 = [m for m in got["a2"] if m["channel"] == "/v2/me/openmedia"]
    assert a1 == [m for m in got["a1bis"] if m["channel"] == "/v2/me/openmedia"]
    assert a1
    assert a2
    ids1 = {m["data"]["openmedia"]["id"] for m in a1}
    for m in a2:
        agent = m["data"]["openmedia"].get("userData", {}).get("RTargetAgentSelected")
        assert agent in (None, "agent002") or m["data"]["openmedia"]["id"] in ids1
