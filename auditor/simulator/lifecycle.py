"""Open Media state per agent and the deterministic lifecycle generator.

Every change goes through `Engine.operate` or the generator's own internal operations, the way an
agent clicking in a desktop would: each operation takes the next referenceId of that agent and
emits one notification (two for a transfer to another agent: one per session).

Determinism: the generator draws the acting agent from one `random.Random` and every detail of
an agent's items from that agent's own `random.Random`; receivedDate comes from a virtual clock
(`SimConfig.clock_start` plus 1/rate per generated notification). The same seed therefore gives
the same sequence of notifications, whatever the timing and whoever is connected.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from auditor.simulator.config import SimConfig

CHANNEL = "/v2/me/openmedia"
MESSAGE_TYPE = "OpenmediaStateChangeMessage"
INVITED, PROCESSING, COMPLETED = "Invited", "Processing", "Completed"
CAPS_INVITED = ("Accept", "Reject")
CAPS_PROCESSING = (
    "Transfer",
    "AttachUserData",
    "UpdateUserData",
    "DeleteUserData",
    "SetInFocus",
    "Complete",
)
ITEM_OPERATIONS = frozenset({*CAPS_INVITED, *CAPS_PROCESSING, "AddContent", "PlaceInQueue"})
# Error codes and texts are a simulator choice (GWS documents none for Open Media errors).
ERRORS = (
    (1203, "Interaction is locked or not owned by this agent"),
    (1004, "Interaction Server request timed out"),
    (1110, "Operation is not allowed in the current state of the interaction"),
)
_ID_ALPHABET = string.digits + string.ascii_uppercase
_NOTE_KEYS = ("CaseId", "Disposition", "Note", "Priority", "CustomerId", "Subject")
_SEGMENTS = ("default", "gold", "silver", "bronze")

Emit = Callable[[str, dict[str, Any]], None]


class OperationError(Exception):
    """A request the simulator refuses synchronously (HTTP 4xx with a JSON body)."""

    def __init__(self, http_status: int, status_code: int, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.status_code = status_code
        self.message = message


def pluralise(media_type: str) -> str:
    """The collection name used in `uri` (GWS: `promotion` -> `promotions`)."""
    if media_type.endswith(("s", "x", "ch", "sh")):
        return media_type + "es"
    if len(media_type) > 1 and media_type.endswith("y") and media_type[-2] not in "aeiou":
        return media_type[:-1] + "ies"
    return media_type + "s"


def format_received_date(moment: datetime) -> str:
    """`yyyy-MM-dd HH:mm:ss.SSSZ`, e.g. `2014-03-26 16:02:22.000+0000`."""
    return (
        moment.strftime("%Y-%m-%d %H:%M:%S.")
        + f"{moment.microsecond // 1000:03d}"
        + (moment.strftime("%z") or "+0000")
    )


@dataclass
class Item:
    id: str
    media_type: str
    openmedia_type: str
    state: str
    user_data: dict[str, Any] | None
    received_date: str | None

    def capabilities(self) -> list[str]:
        if self.state == INVITED:
            return list(CAPS_INVITED)
        if self.state == PROCESSING:
            return list(CAPS_PROCESSING)
        return []

    def resource(self, base_url: str) -> dict[str, Any]:
        res: dict[str, Any] = {
            "id": self.id,
            "state": self.state,
            "capabilities": self.capabilities(),
            "mediaType": self.media_type,
            "openmediaType": self.openmedia_type,
            "uri": f"{base_url}/api/v2/openmedia/{pluralise(self.media_type)}/{self.id}",
        }
        if self.received_date is not None:
            res["receivedDate"] = self.received_date
        if self.user_data is not None:
            res["userData"] = dict(self.user_data)
        return res


@dataclass
class AgentState:
    name: str
    index: int
    rng: random.Random
    reference: int = 0
    items: dict[str, Item] = field(default_factory=dict)

    def next_reference(self) -> int:
        self.reference += 1
        return self.reference


class Engine:
    def __init__(self, config: SimConfig, emit: Emit, base_url: str) -> None:
        self.config = config
        self.emit = emit
        self.base_url = base_url
        names = config.agent_list()
        self.agents = {
            name: AgentState(name, i + 1, random.Random(f"{config.seed}:agent:{name}"))
            for i, name in enumerate(names)
        }
        self._names = names
        self._schedule = random.Random(f"{config.seed}:schedule")
        self._ids: set[str] = set()
        start = config.clock_start or datetime.now(UTC).replace(microsecond=0)
        self._clock_start = start if start.tzinfo else start.replace(tzinfo=UTC)
        self.generated = 0  # notifications emitted by the generator
        self.emitted = 0  # all notifications emitted (generator + REST operations)

    # -- helpers -------------------------------------------------------------------------------

    def _now(self) -> datetime:
        rate = self.config.rate * (len(self._names) if self.config.per_agent else 1)
        step = 1.0 / rate if rate > 0 else 1.0
        return self._clock_start + timedelta(seconds=self.generated * step)

    def _new_id(self, agent: AgentState) -> str:
        while True:
            new = "0" + "".join(agent.rng.choice(_ID_ALPHABET) for _ in range(15))
            if new not in self._ids:
                self._ids.add(new)
                return new

    def _send(self, agent: str, notification_type: str, item: Item, ref: int | None) -> None:
        data: dict[str, Any] = {
            "messageType": MESSAGE_TYPE,
            "notificationType": notification_type,
        }
        if ref is not None:
            data["referenceId"] = ref
        elif self.config.invite_reference_id == "null":
            data["referenceId"] = None
        data["openmedia"] = item.resource(self.base_url)
        self.emitted += 1
        self.emit(agent, {"channel": CHANNEL, "data": data})

    def _send_error(self, agent: AgentState, item: Item, ref: int, code: int, text: str) -> None:
        data: dict[str, Any] = {
            "messageType": MESSAGE_TYPE,
            "notificationType": "Error",
            "referenceId": ref,
            "errorCode": code,
            "errorMessage": text,
        }
        if self.config.error_includes_openmedia:
            data["openmedia"] = item.resource(self.base_url)
        self.emitted += 1
        self.emit(agent.name, {"channel": CHANNEL, "data": data})

    def items(self, agent: str, media_type: str) -> list[dict[str, Any]]:
        self._check_media_type(media_type)
        return [
            item.resource(self.base_url)
            for item in self.agents[agent].items.values()
            if item.media_type == media_type
        ]

    def _check_media_type(self, media_type: str) -> None:
        if media_type not in self.config.media_types:
            raise OperationError(
                404,
                2,
                f"Unknown media type '{media_type}'; known: " + ", ".join(self.config.media_types),
            )

    # -- operations (REST and generator) -------------------------------------------------------

    def invite(self, agent: AgentState, media_type: str) -> None:
        """An inbound item routed to the agent: unsolicited Invited, no referenceId."""
        user_data: dict[str, Any] = {
            "RTenant": "Environment",
            "RStrategyName": "Openmedia",
            "RTargetAgentSelected": agent.name,
            "RTargetPlaceSelected": f"place{agent.index}",
            "RTargetAgentGroup": "Openmedia",
            "RRequestedSkills": None,
            "CustomerSegment": agent.rng.choice(_SEGMENTS),
            "ServiceType": "default",
            "ServiceObjective": 0,
            "PegAGOpenmedia": 1,
        }
        item = Item(
            self._new_id(agent),
            media_type,
            "Inbound",
            INVITED,
            user_data,
            format_received_date(self._now()),
        )
        agent.items[item.id] = item
        self._send(agent.name, "StatusChange", item, None)

    def create(self, agent: str, media_type: str, body: dict[str, Any]) -> int:
        self._check_media_type(media_type)
        if body.get("operationName") != "Create":
            raise OperationError(
                400,
                2,
                f"Unknown operation '{body.get('operationName')}' on a collection; "
                "only Create is allowed here",
            )
        state = self.agents[agent]
        ref = state.next_reference()
        item = Item(self._new_id(state), media_type, "Outbound", PROCESSING, None, None)
        state.items[item.id] = item
        self._send(agent, "StatusChange", item, ref)
        return ref

    def operate(self, agent: str, media_type: str, item_id: str, body: dict[str, Any]) -> int:
        """Validate synchronously (4xx), then act and notify; returns the referenceId.

        An operation that is valid but not in the item's capabilities is accepted (statusCode 0)
        and fails asynchronously with an Error notification, as GWS reports backend failures.
        """
        self._check_media_type(media_type)
        op = body.get("operationName")
        if not isinstance(op, str) or op not in ITEM_OPERATIONS:
            raise OperationError(400, 2, f"Unknown operationName {op!r}")
        state = self.agents[agent]
        item = state.items.get(item_id)
        if item is None or item.media_type != media_type:
            raise OperationError(404, 3, f"No {media_type} interaction '{item_id}' for this agent")
        target: str | None = None
        if op in ("AttachUserData", "UpdateUserData"):
            if not isinstance(body.get("userData"), dict):
                raise OperationError(400, 1, f"{op} needs a 'userData' object")
        elif op == "DeleteUserData":
            keys = body.get("keys")
            if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
                raise OperationError(400, 1, "DeleteUserData needs 'keys', a list of strings")
        elif op == "Transfer":
            uri = body.get("targetUri")
            if not isinstance(uri, str) or not uri:
                raise OperationError(400, 1, "Transfer needs a 'targetUri'")
            target = uri.rstrip("/").rsplit("/", 1)[-1]
        ref = state.next_reference()
        if op not in item.capabilities():
            code, text = ERRORS[2]
            self._send_error(state, item, ref, code, f"{text}: {op} in state {item.state}")
            return ref
        self._apply(state, item, op, body, ref, target)
        return ref

    def _apply(
        self,
        state: AgentState,
        item: Item,
        op: str,
        body: dict[str, Any],
        ref: int,
        target: str | None,
    ) -> None:
        notification = "StatusChange"
        if op == "Accept":
            item.state = PROCESSING
        elif op in ("Reject", "Complete") or op == "Transfer":
            item.state = COMPLETED
        elif op in ("AttachUserData", "UpdateUserData"):
            item.user_data = {**(item.user_data or {}), **body["userData"]}
            notification = "PropertiesUpdated"
        elif op == "DeleteUserData":
            data = dict(item.user_data or {})
            for key in body["keys"]:
                data.pop(key, None)
            item.user_data = data
            notification = "PropertiesUpdated"
        else:  # SetInFocus, AddContent, PlaceInQueue: a properties notification
            notification = "PropertiesUpdated"
        self._send(state.name, notification, item, ref)
        if item.state == COMPLETED:
            del state.items[item.id]
            if op == "Transfer" and target in self.agents and target != state.name:
                receiver = self.agents[target]
                moved = Item(
                    item.id,
                    item.media_type,
                    item.openmedia_type,
                    INVITED,
                    dict(item.user_data or {}),
                    item.received_date,
                )
                receiver.items[moved.id] = moved
                self._send(receiver.name, "StatusChange", moved, None)

    # -- the generator -------------------------------------------------------------------------

    def step(self) -> None:
        """One generated operation by one agent (at least one notification)."""
        before = self.emitted
        agent = self.agents[self._schedule.choice(self._names)]
        self._step_agent(agent)
        self.generated += self.emitted - before

    def _step_agent(self, agent: AgentState) -> None:
        rng = agent.rng
        invited = [i for i in agent.items.values() if i.state == INVITED]
        processing = [i for i in agent.items.values() if i.state == PROCESSING]
        roll = rng.random()
        if invited and roll < 0.6:
            item = invited[0]
            op = "Accept" if rng.random() < 0.85 else "Reject"
            self._generated_op(agent, item, op, {"operationName": op})
        elif processing and (roll < 0.9 or len(agent.items) >= self.config.max_items_per_agent):
            item = rng.choice(processing)
            op = rng.choices(
                ("AttachUserData", "UpdateUserData", "DeleteUserData", "Complete", "Transfer"),
                weights=(5, 2, 1, 3, 1),
            )[0]
            self._generated_op(agent, item, op, self._generated_body(agent, item, op))
        elif len(agent.items) < self.config.max_items_per_agent:
            media_type = rng.choice(self.config.media_types)
            if rng.random() < 0.8:
                self.invite(agent, media_type)
            else:
                self.create(agent.name, media_type, {"operationName": "Create"})
        else:
            item = next(iter(agent.items.values()))
            op = "Accept" if item.state == INVITED else "Complete"
            self._generated_op(agent, item, op, {"operationName": op})

    def _generated_body(self, agent: AgentState, item: Item, op: str) -> dict[str, Any]:
        rng = agent.rng
        body: dict[str, Any] = {"operationName": op}
        if op == "AttachUserData":
            key = rng.choice(_NOTE_KEYS)
            body["userData"] = {key: f"{key.lower()}-{rng.randrange(10_000)}"}
        elif op == "UpdateUserData":
            body["userData"] = {"Priority": rng.randrange(1, 6)}
        elif op == "DeleteUserData":
            own = [k for k in (item.user_data or {}) if k in _NOTE_KEYS]
            body["keys"] = [rng.choice(own)] if own else ["Note"]
        elif op == "Transfer":
            others = [n for n in self._names if n != agent.name]
            target = rng.choice(others) if others else agent.name
            body["targetUri"] = f"{self.base_url}/api/v2/users/{target}"
        return body

    def _generated_op(self, agent: AgentState, item: Item, op: str, body: dict[str, Any]) -> None:
        if agent.rng.random() < self.config.error_rate:
            ref = agent.next_reference()
            code, text = agent.rng.choice(ERRORS[:2])
            self._send_error(agent, item, ref, code, text)
            return
        self.operate(agent.name, item.media_type, item.id, body)
