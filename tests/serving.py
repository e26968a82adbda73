"""`auditor serve` (gunicorn, as deployed) in a subprocess, for the tests and bench/ that need
the real server: its environment, its log, a readiness wait and a clean stop, in one place.

The readiness wait is on a condition, not a time: it polls /readyz until it answers 200, and
fails at once (with the log's tail) if the server exits. Its deadline only bounds a server
that never becomes ready, so it is long: under heavy load (other test processes, 12+ load
average on 2 cores) gunicorn's master and workers take tens of seconds to import and boot."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sqlalchemy.engine import URL

from auditor.ports import free_port

READY_WITHIN = 180.0  # seconds: a deadline for a broken server, not the expected wait
STOP_WITHIN = 30.0


@dataclass
class Served:
    port: int
    process: subprocess.Popen[bytes]
    log: Path | None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log is not None else ""


def _readyz(port: int) -> bool:
    try:
        url = f"http://127.0.0.1:{port}/readyz"
        with urllib.request.urlopen(url, timeout=10) as response:
            return bool(response.status == 200)
    except OSError:  # not listening yet, still booting, or not ready (an HTTPError)
        return False


def wait_ready(served: Served, within: float = READY_WITHIN) -> None:
    deadline = time.monotonic() + within
    while not _readyz(served.port):
        code = served.process.poll()
        if code is not None:
            raise RuntimeError(f"auditor serve exited with {code}:\n{served.log_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"auditor serve not ready within {within:.0f} s:\n{served.log_text()[-3000:]}"
            )
        time.sleep(0.1)


@contextmanager
def serve(
    database_url: URL,
    log: Path | None,
    *,
    workers: int = 1,
    threads: int | None = None,
    env: Mapping[str, str] | None = None,
    access_log: Path | None = None,
) -> Iterator[Served]:
    """`auditor serve` on a free port over ``database_url`` (the API's login: serve refuses
    the owner), ready when this yields, stopped (SIGINT: gunicorn's quick shutdown) after.
    ``log`` takes stderr (gunicorn's error log), and stdout too unless ``access_log`` (where
    gunicorn writes its access log) is given; None discards them."""
    port = free_port()
    environment = {
        **os.environ,
        "AUDITOR_DATABASE_URL": database_url.render_as_string(hide_password=False),
        "AUDITOR_API_SECRET": secrets.token_urlsafe(32),
        **(env or {}),
    }
    environment.pop("PROMETHEUS_MULTIPROC_DIR", None)  # the server makes its own
    command = [str(Path(sys.executable).parent / "auditor"), "serve", "--port", str(port)]
    command += ["--workers", str(workers)]
    if threads is not None:
        command += ["--threads", str(threads)]
    files: list[IO[bytes]] = []

    def opened(path: Path | None) -> IO[bytes] | int:
        if path is None:
            return subprocess.DEVNULL
        files.append(path.open("wb"))
        return files[-1]

    stderr = opened(log)
    stdout = opened(access_log) if access_log is not None else stderr
    process = subprocess.Popen(command, env=environment, stdout=stdout, stderr=stderr)
    served = Served(port, process, log)
    try:
        wait_ready(served)
        yield served
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=STOP_WITHIN)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for file in files:
            file.close()
