"""Simulator settings: one frozen dataclass, built by the CLI or by tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

LONG_POLLING = "long-polling"
WEBSOCKET = "websocket"
TRANSPORTS = (LONG_POLLING, WEBSOCKET)
DEFAULT_PASSWORD = "secret"  # noqa: S105  (simulator accounts, documented)
PASSWORD_ENV = "AUDITOR_SIM_PASSWORD"  # noqa: S105  (a variable name)


def agent_names(count: int) -> list[str]:
    """agent001..agentNNN (at least three digits, so names sort in numeric order)."""
    width = max(3, len(str(count)))
    return [f"agent{i:0{width}d}" for i in range(1, count + 1)]


@dataclass(frozen=True)
class SimConfig:
    host: str = "127.0.0.1"
    port: int = 8090
    agents: int = 10
    password: str = DEFAULT_PASSWORD
    # Generation: notifications per second, for all agents together (per_agent=False)
    # or for each agent (per_agent=True). 0 disables the generator.
    rate: float = 10.0
    per_agent: bool = False
    media_types: tuple[str, ...] = ("workitem",)
    seed: int = 1
    # Stop generating after this many notifications (None: run forever).
    count: int | None = None
    max_items_per_agent: int = 3
    # Share of generated operations that fail with an Error notification.
    error_rate: float = 0.02
    # receivedDate of generated items: a virtual clock that starts here and advances by
    # 1/rate per generated notification, so the same seed gives the same content.
    clock_start: datetime | None = None
    # Payload choices where GWS docs are silent (PROTOCOL.md section 5).
    invite_reference_id: Literal["absent", "null"] = "absent"
    error_includes_openmedia: bool = True
    # REST
    csrf: bool = True
    csrf_on_cometd: bool = False
    auth_failure_status: int = 401
    version: str = "8.5.200.50"
    # The base of `uri` fields in resources; default http://{host}:{port}.
    public_url: str | None = None
    # Bayeux (CometD 3 Java defaults)
    transports: tuple[str, ...] = TRANSPORTS
    timeout_ms: int = 30_000
    interval_ms: int = 0
    max_interval_ms: int = 10_000
    first_connect_immediate: bool = True
    meta_connect_delivery_only: bool = False
    # CometD 3 AcknowledgedMessagesExtension, for clients that ask (ext.ack on handshake).
    ack_extension: bool = True
    # Faults
    malformed_rate: float = 0.0
    expire_every: float = 0.0
    restart_every: float = 0.0
    drop_every: float = 0.0
    stall_every: float = 0.0
    stall_for: float = 0.0
    # Ground truth NDJSON log (None: off).
    ground_truth: Path | None = None
    extra_agents: tuple[str, ...] = field(default_factory=tuple)

    def agent_list(self) -> list[str]:
        return agent_names(self.agents) + list(self.extra_agents)

    def base_url(self, port: int | None = None) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"http://{self.host}:{port if port is not None else self.port}"
