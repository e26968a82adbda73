"""aiocometd-noloop (the client the ingest worker uses) against the simulator."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.simulator.support import SimThread, fast_config, login, open_cometd, receive


def _ids(messages: list[dict[str, Any]]) -> list[tuple[str, int | None]]:
    return [(m["data"]["openmedia"]["state"], m["data"].get("referenceId")) for m in messages]


def test_aiocometd_long_polling_receives_every_notification_in_order() -> None:
    with SimThread(fast_config(agents=1)) as server:

        async def run() -> list[dict[str, Any]]:
            client, _ = await open_cometd(server.url, "agent001")
            try:
                await asyncio.to_thread(server.control, "generate", {"count": 200})
                return await receive(client, 200)
            finally:
                await client.close()

        messages = asyncio.run(run())
    refs = [m["data"]["referenceId"] for m in messages if "referenceId" in m["data"]]
    assert refs == sorted(refs)  # one agent: referenceIds increase in delivery order
    assert all(m["channel"] == "/v2/me/openmedia" for m in messages)


@pytest.mark.filterwarnings(
    # aiocometd-noloop passes a float receive_timeout and ssl=False to aiohttp's ws_connect,
    # which aiohttp 3.14 deprecates (COMETD-CLIENT.md, gotcha 4). Only these two are allowed.
    "ignore:.*receive_timeout.*:DeprecationWarning",
    "ignore:.*ssl.*:DeprecationWarning",
)
def test_aiocometd_websocket_receives_notifications() -> None:
    with SimThread(fast_config(agents=1)) as server:

        async def run() -> list[dict[str, Any]]:
            client, _ = await open_cometd(server.url, "agent001", transport="websocket")
            try:
                await asyncio.to_thread(server.control, "generate", {"count": 20})
                return await receive(client, 20)
            finally:
                await client.close()

        messages = asyncio.run(run())
    assert len(messages) == 20


def test_aiocometd_rehandshakes_and_resubscribes_after_402_unknown_client() -> None:
    with SimThread(fast_config(agents=1)) as server:

        async def run() -> int:
            client, headers = await open_cometd(server.url, "agent001")
            try:
                await asyncio.to_thread(server.control, "expire", {"agent": "agent001"})
                async with asyncio.timeout(5):
                    while server.stats()["sessions"] == 0 or headers.handshakes < 2:
                        await asyncio.sleep(0.02)
                await asyncio.sleep(0.1)  # the resubscribe is batched with the next connect
                await asyncio.to_thread(server.control, "generate", {"count": 5})
                await receive(client, 5)
                return headers.handshakes
            finally:
                await client.close()

        assert asyncio.run(run()) == 2
        assert server.stats()["unknown_client"] >= 1


def test_rest_operation_answers_reference_id_and_the_notification_carries_it() -> None:
    with SimThread(fast_config(agents=1)) as server:

        async def run() -> tuple[int, dict[str, Any]]:
            client, _ = await open_cometd(server.url, "agent001")
            http, token = await login(server.url, "agent001")
            try:
                async with http.post(
                    f"{server.url}/api/v2/me/openmedia/workitem",
                    json={"operationName": "Create", "queueUri": "http://x/api/v2/queues/q1"},
                    headers={"X-CSRF-TOKEN": token},
                ) as response:
                    body = await response.json()
                created = (await receive(client, 1))[0]
                item = created["data"]["openmedia"]["id"]
                async with http.post(
                    f"{server.url}/api/v2/me/openmedia/workitem/{item}",
                    json={"operationName": "AttachUserData", "userData": {"A": 1}},
                    headers={"X-CSRF-TOKEN": token},
                ) as response:
                    attach = await response.json()
                updated = (await receive(client, 1))[0]
                assert updated["data"]["referenceId"] == attach["referenceId"]
                assert updated["data"]["notificationType"] == "PropertiesUpdated"
                assert updated["data"]["openmedia"]["userData"] == {"A": 1}
                return body["referenceId"], created
            finally:
                await http.close()
                await client.close()

        ref, created = asyncio.run(run())
    assert created["data"]["referenceId"] == ref
    assert created["data"]["openmedia"]["openmediaType"] == "Outbound"
    assert created["data"]["openmedia"]["state"] == "Processing"


def test_transfer_sends_completed_to_sender_and_invited_to_receiver_session() -> None:
    with SimThread(fast_config(agents=2)) as server:

        async def run() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            sender, _ = await open_cometd(server.url, "agent001")
            receiver, _ = await open_cometd(server.url, "agent002")
            http, token = await login(server.url, "agent001")
            try:
                csrf = {"X-CSRF-TOKEN": token}
                base = f"{server.url}/api/v2/me/openmedia/workitem"
                async with http.post(base, json={"operationName": "Create"}, headers=csrf) as r:
                    assert r.status == 200
                item = (await receive(sender, 1))[0]["data"]["openmedia"]["id"]
                async with http.post(
                    f"{base}/{item}",
                    json={
                        "operationName": "Transfer",
                        "targetUri": f"{server.url}/api/v2/users/agent002",
                    },
                    headers=csrf,
                ) as r:
                    assert (await r.json())["statusCode"] == 0
                return await receive(sender, 1), await receive(receiver, 1)
            finally:
                await http.close()
                await sender.close()
                await receiver.close()

        sent, got = asyncio.run(run())
    assert sent[0]["data"]["openmedia"]["state"] == "Completed"
    assert sent[0]["data"]["openmedia"]["capabilities"] == []
    assert got[0]["data"]["openmedia"]["state"] == "Invited"
    assert "referenceId" not in got[0]["data"]
    assert got[0]["data"]["openmedia"]["id"] == sent[0]["data"]["openmedia"]["id"]
