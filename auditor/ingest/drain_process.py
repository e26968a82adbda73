"""The drain in a process of its own.

The receive loop, the spool's writer thread and the drain share one interpreter lock when
they share a process: at 8,000 notifications/s the worker was one full core, and the drain
(parsing, COPY, projection fold) fell behind while the loop received. As a child process
(`python -m auditor.ingest.drain_process`) the drain gets a core of its own. It reads the
spool file through its own SQLite connection and writes PostgreSQL through its own
connection; the worker learns what it did from one JSON line per batch on the child's
stdout, for its metrics.

The settings (the conninfo holds the password) go to the child on its stdin, never on its
command line. Closing that stdin tells the child to stop after its current batch; it is
closed too when the worker dies, however it dies, so a restarted worker never shares its
spool with an orphan for longer than one batch (and that is harmless: the writer is
idempotent). The child ignores SIGINT and SIGTERM, which a Ctrl-C sends to the whole
process group: the worker decides when it stops, and drains what is left itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import psycopg

from auditor.ingest import cpuprofile, logs, memtrace, trim
from auditor.ingest.backoff import backoff
from auditor.ingest.drain import BatchReport, Drainer, OnCommit
from auditor.ingest.metrics import Metrics
from auditor.ingest.spool import SpoolReader

log = logging.getLogger("auditor.ingest.drain")

_ERROR = '{"error":true}'  # the line sent instead of a report when a batch failed


def _child() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logs.setup()
    trace_seconds = memtrace.period(os.environ)
    if trace_seconds is not None:
        memtrace.in_thread(trace_seconds)
    settings = json.loads(sys.stdin.readline())
    stop = threading.Event()

    def watch_stdin() -> None:
        sys.stdin.read()  # returns at EOF: the worker closed it, or is gone
        stop.set()

    threading.Thread(target=watch_stdin, name="stdin", daemon=True).start()
    drainer = Drainer(
        settings["conninfo"],
        SpoolReader(Path(settings["spool"])),
        settings["batch_size"],
        settings["with_times"],
    )
    out = sys.stdout
    failures = 0
    trimmed = time.monotonic()
    try:
        while not stop.is_set():
            if time.monotonic() - trimmed > trim.TRIM_INTERVAL:
                trim.release()  # freed heap back to the OS (trim.py)
                trimmed = time.monotonic()
            try:
                report = drainer.drain_once()
                failures = 0
            except psycopg.Error:
                out.write(_ERROR + "\n")
                out.flush()
                failures += 1
                stop.wait(0.1 + backoff(failures, 0.2, 5.0))
                continue
            if report is None:
                stop.wait(settings["interval"])
            else:
                out.write(json.dumps(dataclasses.asdict(report)) + "\n")
                out.flush()
    except BrokenPipeError:
        pass  # the worker is gone
    finally:
        drainer.close()


class DrainProcess:
    """Starts the drain child, records its reports, restarts it if it dies."""

    def __init__(
        self,
        conninfo: str,
        spool_path: Path,
        metrics: Metrics,
        batch_size: int,
        interval: float,
        on_commit: OnCommit | None = None,
    ) -> None:
        self._settings = {
            "conninfo": conninfo,
            "spool": str(spool_path),
            "batch_size": batch_size,
            "interval": interval,
            "with_times": on_commit is not None,
        }
        self.metrics = metrics
        self.on_commit = on_commit
        self._process: subprocess.Popen[str] | None = None
        self._listener: threading.Thread | None = None
        self._stopping = False

    def start(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "auditor.ingest.drain_process"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._process.stdin.write(json.dumps(self._settings) + "\n")
        self._process.stdin.flush()
        self._listener = threading.Thread(
            target=self._listen, args=(self._process.stdout,), name="drain-reports", daemon=True
        )
        self._listener.start()

    def _listen(self, reports: IO[str]) -> None:
        for line in reports:
            try:
                message: dict[str, Any] = json.loads(line)
                if message.get("error"):
                    self.metrics.drain_errors.inc()
                    continue
                message["received_at"] = tuple(message["received_at"])
                report = BatchReport(**message)
            except (ValueError, TypeError, KeyError, AttributeError):
                # Not a report (something in the child wrote to stdout): only the metrics
                # miss it.
                log.warning("drain process wrote a line that is not a report: %.200s", line)
                continue
            self.take(report)

    def take(self, report: BatchReport) -> None:
        """Record a committed batch, from the child or from the worker's final drain."""
        self.metrics.batch_latency.observe(report.seconds)
        self.metrics.stored.inc(report.stored)
        self.metrics.duplicates.inc(report.duplicates)
        self.metrics.quarantined.inc(report.quarantined)
        if report.fenced:
            self.metrics.fenced.inc(report.fenced)
            log.warning(
                "snapshots left out: their lease passed to another worker",
                extra={"snapshots": report.fenced},
            )
        if self.on_commit is not None:
            self.on_commit(report)

    def ensure_running(self) -> None:
        """Restart the child if it died (it only should when the machine is in trouble)."""
        if self._stopping or self._process is None or self._process.poll() is None:
            return
        # Its reports up to the end are still read by the old listener, which stops at EOF.
        log.error("drain process exited; restarting", extra={"exitcode": self._process.returncode})
        self.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Let the child finish its batch and exit; then every report has been recorded."""
        self._stopping = True
        if self._process is None:
            return
        assert self._process.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self._process.stdin.close()
        end = time.monotonic() + timeout
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("drain process did not stop in time; killed")
            self._process.kill()  # its batch rolls back; the rows stay in the spool
            self._process.wait()
        if self._listener is not None:
            # It has read every report once the child's stdout is at EOF.
            self._listener.join(max(0.1, end - time.monotonic()))


if __name__ == "__main__":
    with cpuprofile.profiled(os.environ, ".drain"):  # AUDITOR_CPROFILE: off by default
        _child()
