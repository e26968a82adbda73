"""Fault injection: malformed notifications, stalls, and the periodic fault schedule."""

from __future__ import annotations

import random
import time
from typing import Any

# Realistic breakage that still fits in a JSON long-poll response (truncated JSON cannot).
MALFORMED_KINDS = (
    "missing-data",
    "data-not-object",
    "openmedia-without-id",
    "unknown-message-type",
)


def malform(message: dict[str, Any], kind: str) -> dict[str, Any]:
    """A broken copy of a notification (the original is not modified)."""
    data = message.get("data")
    if kind == "missing-data":
        return {"channel": message["channel"]}
    if kind == "data-not-object":
        text = str(data)
        return {"channel": message["channel"], "data": text[: max(1, len(text) // 2)]}
    if not isinstance(data, dict):
        return dict(message)
    broken = dict(data)
    if kind == "openmedia-without-id":
        resource = broken.get("openmedia")
        if isinstance(resource, dict):
            broken["openmedia"] = {k: v for k, v in resource.items() if k != "id"}
        else:
            broken["openmedia"] = {"state": "Processing"}
    else:
        broken["messageType"] = "OpenmediaStateChangeMessageV3"
    return {"channel": message["channel"], "data": broken}


class Faults:
    """Mutable fault state, changed by CLI flags at start and by the control endpoint."""

    def __init__(self, seed: int, malformed_rate: float) -> None:
        self.malformed_rate = malformed_rate
        self.stall_until = 0.0
        self._rng = random.Random(f"{seed}:malformed")
        self.malformed = 0

    def maybe_malform(self, message: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        if self.malformed_rate <= 0:
            return message, None
        # One draw per notification keeps the choice deterministic for a seed.
        roll = self._rng.random()
        kind = self._rng.choice(MALFORMED_KINDS)
        if roll >= self.malformed_rate:
            return message, None
        self.malformed += 1
        return malform(message, kind), kind

    def stall(self, seconds: float) -> None:
        self.stall_until = max(self.stall_until, time.monotonic() + seconds)

    def stall_remaining(self) -> float:
        return max(0.0, self.stall_until - time.monotonic())
