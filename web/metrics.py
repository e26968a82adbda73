"""Prometheus metrics: request counts and latency by endpoint and status.

Under gunicorn with several workers, `auditor serve` sets PROMETHEUS_MULTIPROC_DIR so that
/metrics adds up every worker; without it (tests, one process) each app has its own registry."""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

# Label values come from this set or the app's own route rules, never from the client, so a
# prober cannot grow the series (unknown paths are one endpoint label: "unmatched").
KNOWN_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"})
OTHER_METHOD = "other"
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        # In multiprocess mode values live in shared files, collected at scrape time.
        self._registry: CollectorRegistry | None = (
            None if self.multiprocess else CollectorRegistry()
        )
        self.requests = Counter(
            "auditor_api_requests",
            "API requests by endpoint, method and status",
            ["endpoint", "method", "status"],
            registry=self._registry,
        )
        self.latency = Histogram(
            "auditor_api_request_seconds",
            "API request latency (to the first byte for streamed exports)",
            ["endpoint", "method"],
            buckets=_BUCKETS,
            registry=self._registry,
        )
        self.export_rows = Counter(
            "auditor_api_export_rows", "rows sent by exports", registry=self._registry
        )

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        method = method if method in KNOWN_METHODS else OTHER_METHOD
        self.requests.labels(endpoint, method, str(status)).inc()
        self.latency.labels(endpoint, method).observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        if self._registry is not None:
            return generate_latest(self._registry), CONTENT_TYPE_LATEST
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
