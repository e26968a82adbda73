"""Ground truth: what was delivered, to whom, when, and what nobody could receive."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.simulator.support import SimThread, fast_config, open_cometd, receive

CLOCK = datetime(2024, 3, 1, tzinfo=UTC)


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_notifications_without_a_subscribed_session_are_logged_undeliverable(
    tmp_path: Path,
) -> None:
    log = tmp_path / "gt.ndjson"
    with SimThread(fast_config(ground_truth=log)) as server:
        server.control("generate", {"count": 10})
    lines = _lines(log)
    assert len(lines) >= 10
    assert {line["status"] for line in lines} == {"undeliverable"}
    assert all(line["delivered_at"] is None for line in lines)
    assert all(line["reason"] == "no subscribed session" for line in lines)


def test_delivered_lines_match_what_the_client_received(tmp_path: Path) -> None:
    log = tmp_path / "gt.ndjson"
    with SimThread(fast_config(agents=1, ground_truth=log)) as server:

        async def run() -> list[dict[str, Any]]:
            client, _ = await open_cometd(server.url, "agent001")
            try:
                await asyncio.to_thread(server.control, "generate", {"count": 50})
                return await receive(client, 50)
            finally:
                await client.close()

        received = asyncio.run(run())
    delivered = [line for line in _lines(log) if line["status"] == "delivered"]
    assert [line["message"] for line in delivered] == received
    for line in delivered:
        assert line["agent"] == "agent001"
        stamp = datetime.fromisoformat(line["delivered_at"].replace("Z", "+00:00"))
        assert stamp.tzinfo is not None
        assert len(line["delivered_at"].split(".")[1]) == len("123456Z")


def test_same_seed_gives_the_same_ground_truth_content(tmp_path: Path) -> None:
    contents = []
    for run in ("a", "b"):
        log = tmp_path / f"{run}.ndjson"
        with SimThread(
            fast_config(
                agents=4,
                seed=11,
                clock_start=CLOCK,
                ground_truth=log,
                public_url="http://gws.example:8080",
                error_rate=0.05,
            )
        ) as server:
            server.control("generate", {"count": 300})
        contents.append([(x["seq"], x["agent"], x["message"]) for x in _lines(log)])
    assert contents[0] == contents[1]
    assert len(contents[0]) >= 300


def test_each_agents_ground_truth_holds_only_that_agents_items(tmp_path: Path) -> None:
    log = tmp_path / "gt.ndjson"
    with SimThread(fast_config(agents=3, ground_truth=log)) as server:
        server.control("generate", {"count": 300})
    owners: dict[str, set[str]] = {}
    for line in _lines(log):
        om = line["message"]["data"].get("openmedia")
        if om:
            owners.setdefault(om["id"], set()).add(line["agent"])
    # an item is seen by more than one agent only after a transfer
    assert all(len(agents) <= 3 for agents in owners.values())
    assert any(len(agents) == 1 for agents in owners.values())
