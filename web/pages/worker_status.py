"""The worker's status, read from its Prometheus text exposition (a short timeout: the
overview must not wait on a worker that does not answer)."""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

TIMEOUT_SECONDS = 1.0
SHOWN = {
    "auditor_sessions_connected": "Subscribed sessions",
    "auditor_spool_depth": "Spool depth (rows waiting)",
    "auditor_spool_oldest_age_seconds": "Oldest spooled row (s)",
    "auditor_saturated": "Saturated (1 = yes)",
    "auditor_leases_held": "Accounts leased",
    "auditor_stored_total": "Events stored (since start)",
    "auditor_drain_errors_total": "Failed drain batches",
}


@dataclass
class WorkerStatus:
    reachable: bool
    error: str | None = None
    values: list[tuple[str, float]] = field(default_factory=list)


def parse(text: str) -> list[tuple[str, float]]:
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in SHOWN and not sample.labels:
                found[sample.name] = sample.value
    return [(SHOWN[name], found[name]) for name in SHOWN if name in found]


def read(url: str) -> WorkerStatus:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310 (http(s) checked at start-up)
            text = response.read(2_000_000).decode("utf-8", "replace")
    except (OSError, ValueError) as exc:
        return WorkerStatus(False, f"{type(exc).__name__}: {exc}")
    try:
        return WorkerStatus(True, values=parse(text))
    except ValueError as exc:
        return WorkerStatus(False, f"unreadable metrics: {exc}")
