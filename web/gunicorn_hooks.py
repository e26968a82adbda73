"""gunicorn server hooks for `auditor serve` (loaded with `--config python:web.gunicorn_hooks`).

With AUDITOR_API_METRICS_ADDRESS set, the master process serves /metrics on that address (the
workers' values added up through PROMETHEUS_MULTIPROC_DIR) and the API's address answers 404
for it, so scrapers and clients need not share a port."""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from auditor.config import ApiSettings


def when_ready(server: Any) -> None:
    address = ApiSettings.from_env(os.environ).metrics_address
    if address is None or not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    host, port = address
    start_http_server(port, addr=host, registry=registry)
    server.log.info("metrics on http://%s:%d/metrics", host, port)


def child_exit(server: Any, worker: Any) -> None:
    # A dead worker's live gauges go; its counters stay summed (prometheus-client's rule).
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
