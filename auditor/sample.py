"""Deterministic Open Media lifecycles, shaped after the GWS documentation (PROTOCOL.md §3).

Used for the bundled sample data (auditor/data/sample.ndjson), the demo and the benchmarks.
Each line is a receipt as auditor would have taken it: account, received_at, channel and
the Bayeux message.
"""

from __future__ import annotations

import json
import random
import string
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

CHANNEL = "/v2/me/openmedia"
MESSAGE_TYPE = "OpenmediaStateChangeMessage"
_NAMESPACE = uuid.UUID("4f0d2b51-6d0c-4c55-9d6e-0c5b6a1f3e21")
_BASE = "http://gws.example:8080/api/v2"
PROCESSING_CAPS = [
    "Transfer",
    "AttachUserData",
    "UpdateUserData",
    "DeleteUserData",
    "SetInFocus",
    "Complete",
]
SCENARIOS = ("handled", "rejected", "transferred", "error", "outbound")


@dataclass
class _Item:
    id: str
    media_type: str
    openmedia_type: str
    received_date: str | None
    user_data: dict[str, Any] | None
    state: str = "Invited"
    capabilities: list[str] = field(default_factory=lambda: ["Accept", "Reject"])

    def resource(self) -> dict[str, Any]:
        plural = self.media_type + "s"
        res: dict[str, Any] = {
            "id": self.id,
            "state": self.state,
            "capabilities": list(self.capabilities),
            "mediaType": self.media_type,
            "openmediaType": self.openmedia_type,
            "uri": f"{_BASE}/openmedia/{plural}/{self.id}",
        }
        if self.received_date is not None:
            res["receivedDate"] = self.received_date
        if self.user_data is not None:
            res["userData"] = dict(self.user_data)
        return res


@dataclass(frozen=True)
class SampleLine:
    receipt_id: uuid.UUID
    received_at: datetime
    account: str
    channel: str
    message: dict[str, Any]

    def to_json(self) -> str:
        return json.dumps(
            {
                "receipt_id": str(self.receipt_id),
                "received_at": self.received_at.isoformat(timespec="microseconds"),
                "account": self.account,
                "channel": self.channel,
                "message": self.message,
            },
            separators=(",", ":"),
        )


class _Agent:
    def __init__(self, name: str) -> None:
        self.name = name
        self.reference = 0

    def next_reference(self) -> int:
        self.reference += 1
        return self.reference


def _notification(
    item: _Item, notification_type: str, reference: int | None, **extra: Any
) -> dict[str, Any]:
    data: dict[str, Any] = {"messageType": MESSAGE_TYPE, "notificationType": notification_type}
    if reference is not None:
        data["referenceId"] = reference
    data.update(extra)
    data["openmedia"] = item.resource()
    return {"channel": CHANNEL, "data": data}


class _Builder:
    def __init__(self, rng: random.Random, agents: list[_Agent], media_types: list[str]) -> None:
        self.rng = rng
        self.agents = agents
        self.media_types = media_types

    def _id(self) -> str:
        alphabet = string.digits + string.ascii_uppercase
        return "03W0" + "".join(self.rng.choice(alphabet) for _ in range(12))

    def _routing_data(self, agent: _Agent) -> dict[str, Any]:
        return {
            "RTenant": "Environment",
            "RStrategyName": "Openmedia",
            "RTargetAgentSelected": agent.name,
            "RTargetPlaceSelected": f"place_{agent.name}",
            "CustomerSegment": self.rng.choice(["default", "gold", "silver"]),
            "ServiceType": self.rng.choice(["default", "sales", "support"]),
            "PegAGOpenmedia": 1,
        }

    def lifecycle(
        self, scenario: str, start: datetime, extra_updates: int = 0
    ) -> Iterator[tuple[datetime, str, dict[str, Any]]]:
        """(received_at, account, message) in the order the agents' sessions saw them."""
        rng = self.rng
        agent, other = rng.sample(self.agents, 2)
        media = rng.choice(self.media_types)
        at = start

        def step() -> datetime:
            nonlocal at
            at += timedelta(milliseconds=rng.randint(300, 20_000))
            return at

        if scenario == "outbound":
            item = _Item(self._id(), media, "Outbound", None, None, "Processing", PROCESSING_CAPS)
            yield step(), agent.name, _notification(item, "StatusChange", agent.next_reference())
        else:
            received = start.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.") + "000+0000"
            item = _Item(self._id(), media, "Inbound", received, self._routing_data(agent))
            yield step(), agent.name, _notification(item, "StatusChange", None)
            if scenario == "rejected":
                item.state, item.capabilities = "Completed", []
                yield (
                    step(),
                    agent.name,
                    _notification(item, "StatusChange", agent.next_reference()),
                )
                return
            item.state, item.capabilities = "Processing", list(PROCESSING_CAPS)
            yield step(), agent.name, _notification(item, "StatusChange", agent.next_reference())

        user_data = item.user_data = item.user_data or {}
        user_data.update({"CaseId": f"C-{rng.randint(10_000, 99_999)}", "Priority": 2})
        yield step(), agent.name, _notification(item, "PropertiesUpdated", agent.next_reference())
        for n in range(extra_updates):
            user_data["Priority"] = rng.randint(1, 5)
            user_data[f"Note{n}"] = rng.choice(["called back", "waiting", "escalated"])
            ref = agent.next_reference()
            yield step(), agent.name, _notification(item, "PropertiesUpdated", ref)

        if scenario == "error":
            yield (
                step(),
                agent.name,
                _notification(
                    item,
                    "Error",
                    agent.next_reference(),
                    errorCode=1203,
                    errorMessage="Interaction is locked or not owned by this agent",
                ),
            )
        if scenario == "transferred":
            item.state, item.capabilities = "Completed", []
            yield step(), agent.name, _notification(item, "StatusChange", agent.next_reference())
            item.state, item.capabilities = "Invited", ["Accept", "Reject"]
            yield step(), other.name, _notification(item, "StatusChange", None)
            agent = other
            item.state, item.capabilities = "Processing", list(PROCESSING_CAPS)
            yield step(), agent.name, _notification(item, "StatusChange", agent.next_reference())

        user_data.pop("Priority", None)  # DeleteUserData
        yield step(), agent.name, _notification(item, "PropertiesUpdated", agent.next_reference())
        item.state, item.capabilities = "Completed", []
        yield step(), agent.name, _notification(item, "StatusChange", agent.next_reference())


def generate(
    *,
    interactions: int,
    agents: int = 6,
    media_types: tuple[str, ...] = ("email", "workitem", "promotion", "messaging_inbound"),
    seed: int = 7,
    start: datetime = datetime(2026, 11, 2, 9, 0, tzinfo=UTC),
    spacing: timedelta = timedelta(seconds=40),
    extra_updates: int = 0,
) -> list[SampleLine]:
    """Lifecycles of ``interactions`` items over ``agents`` agents, interleaved in time."""
    rng = random.Random(seed)
    people = [_Agent(f"agent{n:03d}") for n in range(1, agents + 1)]
    builder = _Builder(rng, people, list(media_types))
    rows: list[tuple[datetime, str, dict[str, Any]]] = []
    for n in range(interactions):
        scenario = SCENARIOS[n % len(SCENARIOS)] if n < len(SCENARIOS) else rng.choice(SCENARIOS)
        rows.extend(builder.lifecycle(scenario, start + n * spacing, extra_updates))
    rows.sort(key=lambda row: row[0])
    return [
        SampleLine(uuid.uuid5(_NAMESPACE, f"{seed}:{n}"), at, account, CHANNEL, message)
        for n, (at, account, message) in enumerate(rows)
    ]


def main() -> None:
    """Writes the bundled sample: python -m auditor.sample > auditor/data/sample.ndjson"""
    for line in generate(interactions=40, extra_updates=1):
        sys.stdout.write(line.to_json() + "\n")


if __name__ == "__main__":
    main()
