"""The simulator's CometD ack extension (AcknowledgedMessagesExtension semantics), on the wire:
a batch stays unacknowledged and is re-sent until the next /meta/connect acks it; the ground
truth says `delivered` only once acked, and `undeliverable` when the session dies first."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from tests.simulator.support import SimThread, fast_config
from tests.simulator.test_bayeux_wire import HANDSHAKE, Raw


def _truth(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x]


def test_unacked_batch_is_resent_with_ids_and_counted_delivered_only_when_acked(
    tmp_path: Path,
) -> None:
    truth = tmp_path / "truth.ndjson"
    with SimThread(fast_config(agents=1, timeout_ms=300, ground_truth=truth)) as server:

        async def run() -> tuple[Any, ...]:
            raw = Raw(server.url)
            _, body = await raw.post([{**HANDSHAKE, "ext": {"ack": True}}])
            raw.client_id = body[0]["clientId"]
            await raw.connect(advice={"timeout": 0})
            await raw.subscribe("/v2/me/openmedia")
            server.control("generate", {"count": 5})
            first = await raw.connect()  # batch 1, not acked by the next connect
            again = await raw.connect()  # re-sent as batch 2
            await raw.connect(ext={"ack": again[-1]["ext"]["ack"]})
            await raw.close()
            return body[0], first, again

        handshake, first, again = asyncio.run(run())
        server.control("pause")
    assert handshake["ext"] == {"ack": True}
    sent = [m for m in first if not m["channel"].startswith("/meta/")]
    resent = [m for m in again if not m["channel"].startswith("/meta/")]
    assert len(sent) >= 5
    assert [m["id"] for m in resent[: len(sent)]] == [m["id"] for m in sent]
    assert again[-1]["ext"]["ack"] == first[-1]["ext"]["ack"] + 1
    delivered = [t for t in _truth(truth) if t["status"] == "delivered"]
    assert sorted(t["seq"] for t in delivered) == sorted(int(m["id"]) for m in resent)


def test_a_session_lost_before_its_ack_marks_the_batch_undeliverable(tmp_path: Path) -> None:
    truth = tmp_path / "truth.ndjson"
    with SimThread(fast_config(agents=1, timeout_ms=300, ground_truth=truth)) as server:

        async def run() -> list[dict[str, Any]]:
            raw = Raw(server.url)
            _, body = await raw.post([{**HANDSHAKE, "ext": {"ack": True}}])
            raw.client_id = body[0]["clientId"]
            await raw.connect(advice={"timeout": 0})
            await raw.subscribe("/v2/me/openmedia")
            server.control("generate", {"count": 3})
            batch = await raw.connect()
            server.control("expire", {"agent": "agent001"})
            await raw.close()
            return batch

        batch = asyncio.run(run())
    sent = {int(m["id"]) for m in batch if not m["channel"].startswith("/meta/")}
    lines = _truth(truth)
    assert not [t for t in lines if t["status"] == "delivered"]
    lost = {t["seq"] for t in lines if t["reason"] == "session lost before ack"}
    assert sent
    assert lost == sent
