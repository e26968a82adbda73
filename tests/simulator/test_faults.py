"""Faults: malformed notifications, CometD restart, stalls and dropped connections."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.simulator.support import SimThread, fast_config, open_cometd, receive
from tests.simulator.test_bayeux_wire import Raw


def test_malformed_notifications_are_sent_and_recorded_in_ground_truth(tmp_path: Path) -> None:
    log = tmp_path / "gt.ndjson"
    with SimThread(fast_config(agents=1, malformed_rate=1.0, ground_truth=log)) as server:

        async def run() -> list[dict[str, Any]]:
            # A raw client: aiocometd silently skips a message without `data`.
            raw = Raw(server.url)
            try:
                await raw.handshake()
                await raw.connect()
                await raw.subscribe("/v2/me/openmedia")
                await asyncio.to_thread(server.control, "generate", {"count": 40})
                body = await raw.connect(advice={"timeout": 0})
                return [m for m in body if m["channel"] == "/v2/me/openmedia"]
            finally:
                await raw.close()

        received = asyncio.run(run())
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    kinds = {line["malformed"] for line in lines}
    assert kinds == {
        "missing-data",
        "data-not-object",
        "openmedia-without-id",
        "unknown-message-type",
    }
    assert [line["message"] for line in lines if line["status"] == "delivered"] == received
    assert any("data" not in m for m in received)


def test_restart_loses_every_session_and_clients_come_back() -> None:
    with SimThread(fast_config(agents=2)) as server:

        async def run() -> None:
            c1, h1 = await open_cometd(server.url, "agent001")
            c2, h2 = await open_cometd(server.url, "agent002")
            try:
                lost = await asyncio.to_thread(server.control, "restart")
                assert lost["sessions_lost"] == 2
                async with asyncio.timeout(5):
                    while h1.handshakes < 2 or h2.handshakes < 2:
                        await asyncio.sleep(0.02)
            finally:
                await c1.close()
                await c2.close()

        asyncio.run(run())
        assert server.stats()["restarts"] == 1


def test_stall_holds_responses_for_the_given_seconds() -> None:
    with SimThread(fast_config()) as server:
        server.control("stall", {"seconds": 0.3})
        t0 = time.monotonic()
        url = f"{server.url}/api/v2/diagnostics/version"
        with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310
            assert r.status == 200
        assert time.monotonic() - t0 >= 0.25


def test_drop_aborts_held_connects_and_the_client_reconnects_without_loss() -> None:
    # aiocometd waits 1 s before it reconnects; the session must outlive that wait, or the
    # test would be about expiry (402), not about a dropped connection.
    with SimThread(fast_config(agents=1, timeout_ms=2000, max_interval_ms=5000)) as server:

        async def run() -> int:
            client, _ = await open_cometd(server.url, "agent001")
            try:
                await asyncio.sleep(0.1)
                dropped = await asyncio.to_thread(server.control, "drop")
                await asyncio.to_thread(server.control, "generate", {"count": 10})
                await receive(client, 10, timeout=8)
                return int(dropped["connects_dropped"])
            finally:
                await client.close()

        assert asyncio.run(run()) == 1


def test_control_endpoint_rejects_bad_input_with_json_errors() -> None:
    with SimThread(fast_config()) as server:
        for action, body in (("stall", b'{"seconds": "x"}'), ("nothing", b"{}"), ("drop", b"[")):
            request = urllib.request.Request(  # noqa: S310
                f"{server.url}/sim/{action}", data=body, method="POST"
            )
            with pytest.raises(urllib.error.HTTPError) as info:
                urllib.request.urlopen(request, timeout=5)  # noqa: S310
            assert 400 <= info.value.code < 500
            assert json.loads(info.value.read())["statusMessage"]
            info.value.close()
