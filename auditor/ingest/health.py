"""The worker's HTTP endpoint (127.0.0.1:[worker] metrics_port): /metrics, /healthz, /readyz.

It runs in its own thread, so it answers even when the event loop is saturated (which is
when an operator most wants to ask). /readyz is ready when:

* PostgreSQL answers `SELECT 1` (checked at most once a second);
* the spool is writable (its writer thread alive, no write error, the file writable);
* the worker is not saturated (event loop lag, or accounts held back by max_sessions);
* every account is subscribed, or in a stated backoff or wait with its reason, or setting
  up for less than a stated time.

The body says which of these fail, and lists the accounts that are not subscribed with
their reasons (at most 100; the counts cover all).
"""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import psycopg
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from auditor.errors import ConfigError
from auditor.ingest.admission import SETTING_UP, SUBSCRIBED

if TYPE_CHECKING:
    from auditor.ingest.worker import Worker

_LISTED = 100
_PG_CACHE = 1.0  # seconds a PostgreSQL probe result is reused


class Health:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self._pg_lock = threading.Lock()
        self._pg_checked = 0.0
        self._pg_error: str | None = "not checked yet"
        self._server: ThreadingHTTPServer | None = None

    def postgres_error(self) -> str | None:
        with self._pg_lock:
            if time.monotonic() - self._pg_checked > _PG_CACHE:
                try:
                    with psycopg.connect(self.worker.config.conninfo, connect_timeout=2) as conn:
                        conn.execute("SELECT 1")
                    self._pg_error = None
                except psycopg.Error as exc:
                    self._pg_error = str(exc).strip().splitlines()[0] if str(exc) else "error"
                self._pg_checked = time.monotonic()
            return self._pg_error

    def spool_error(self) -> str | None:
        spool = self.worker.spool
        if spool.error is not None:
            return f"write failed: {spool.error}"
        if not spool.writer_alive:
            return "writer thread stopped"
        if not os.access(spool.path, os.W_OK):
            return "spool file not writable"
        return None

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        worker = self.worker
        admission = worker.admission
        stuck_after = 3 * worker.config.connection_timeout + 30
        now = time.monotonic()
        problems: list[str] = []
        pg = self.postgres_error()
        if pg is not None:
            problems.append(f"postgres: {pg}")
        spool = self.spool_error()
        if spool is not None:
            problems.append(f"spool: {spool}")
        if admission.saturated:
            problems.append(f"saturated: {admission.waiting_reason()}")
        states = {name: admission.accounts.get(name) for name in list(worker.sources)}
        not_subscribed: dict[str, str] = {}
        stuck = 0
        for name, state in sorted(states.items()):
            if state is None:
                reason = "starting"
            elif state.state == SUBSCRIBED:
                continue
            else:
                reason = f"{state.state}: {state.reason}" if state.reason else state.state
                if state.state == SETTING_UP and now - state.since > stuck_after:
                    stuck += 1
                    reason += f" (for {now - state.since:.0f} s)"
            if len(not_subscribed) < _LISTED:
                not_subscribed[name] = reason
        if stuck:
            problems.append(f"{stuck} accounts setting up for more than {stuck_after:.0f} s")
        body = {
            "ready": not problems,
            "problems": problems,
            "accounts": len(states),
            "states": admission.counts(),
            "event_loop_lag_seconds": round(admission.lag, 3),
            "not_subscribed": not_subscribed,
        }
        return not problems, body

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        spool = self.spool_error()
        alive = spool is None
        return alive, {"alive": alive, "spool": spool or "ok"}

    def serve(self, port: int) -> None:
        if not port:
            return
        health = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(
                        200, CONTENT_TYPE_LATEST, generate_latest(health.worker.metrics.registry)
                    )
                elif path in ("/healthz", "/readyz"):
                    ok, body = health.liveness() if path == "/healthz" else health.readiness()
                    self._send(200 if ok else 503, "application/json", json.dumps(body).encode())
                else:
                    self._send(404, "text/plain", b"not found\n")

            def _send(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return  # probes every few seconds would flood the log

        try:
            self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        except OSError as exc:
            raise ConfigError(
                "[worker] metrics_port", f"cannot listen on 127.0.0.1:{port}: {exc.strerror}"
            ) from None
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="health", daemon=True).start()

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
