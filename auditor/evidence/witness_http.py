"""An HTTP witness: each new checkpoint POSTed (JSON, as `auditor checkpoint latest --json`
prints it) to AUDITOR_CHECKPOINT_WITNESS_URL, a service outside PostgreSQL that keeps them.
What it received is what `auditor verify --against` and `auditor checkpoint consistency`
take.

Delivery never holds up the worker: ``submit`` only queues; a thread of its own sends, in
order, retrying a failed POST (no answer, or a status other than 2xx) with exponential
backoff from RETRY_FIRST up to RETRY_MAX seconds, for ever, so a witness that was down gets
every checkpoint when it is back. The queue holds at most QUEUE_MAX checkpoints; beyond it
the oldest not yet sent is dropped with a warning (the later ones sign everything it did).
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from auditor.errors import ConfigError
from auditor.evidence.checkpoints import Checkpoint

WITNESS_URL = "AUDITOR_CHECKPOINT_WITNESS_URL"
TIMEOUT_SECONDS = 10.0
RETRY_FIRST = 1.0
RETRY_MAX = 300.0
QUEUE_MAX = 1000

log = logging.getLogger("auditor.evidence.witness")


def url_from_env(environ: Mapping[str, str]) -> str | None:
    """The witness URL, checked: http or https with a host; None when not set."""
    raw = environ.get(WITNESS_URL, "").strip()
    if not raw:
        return None
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018  (a bad port raises here)
    except ValueError:
        raise ConfigError(WITNESS_URL, "not a URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(WITNESS_URL, "expected an http:// or https:// URL with a host")
    return raw


def _shown(url: str) -> str:
    """The URL for logs: scheme, host and path (never a password or a query's token)."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"


class HttpWitness:
    def __init__(
        self, url: str, *, retry_first: float | None = None, retry_max: float | None = None
    ) -> None:
        self.url = url
        self.retry_first = RETRY_FIRST if retry_first is None else retry_first
        self.retry_max = RETRY_MAX if retry_max is None else retry_max
        self._queue: deque[dict[str, Any]] = deque()
        self._wake = threading.Condition()
        self._closing = False
        self.delivered = 0
        self._thread = threading.Thread(target=self._run, name="checkpoint-witness", daemon=True)
        self._thread.start()

    def submit(self, checkpoint: Checkpoint) -> None:
        """Queue a checkpoint for the witness; returns at once."""
        with self._wake:
            if len(self._queue) >= QUEUE_MAX:
                dropped = self._queue.popleft()
                log.warning(
                    "witness queue full: a checkpoint was not sent",
                    extra={"tree_size": dropped["tree_size"], "url": _shown(self.url)},
                )
            self._queue.append(checkpoint.to_json())
            self._wake.notify()

    def close(self, timeout: float = 5.0) -> None:
        """Stop after what is queued was sent, waiting at most ``timeout`` seconds."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join(timeout)

    def pending(self) -> int:
        with self._wake:
            return len(self._queue)

    def _run(self) -> None:
        delay = self.retry_first
        while True:
            with self._wake:
                while not self._queue and not self._closing:
                    self._wake.wait()
                if not self._queue:
                    return
                body = self._queue[0]
            if self._post(body):
                delay = self.retry_first
                with self._wake:
                    if self._queue and self._queue[0] is body:
                        self._queue.popleft()
                    self.delivered += 1
                continue
            with self._wake:
                if self._closing:
                    return  # what is left is still in the database's checkpoints
                self._wake.wait(delay)
            delay = min(delay * 2, self.retry_max)

    def _post(self, body: dict[str, Any]) -> bool:
        data = json.dumps(body, indent=2).encode() + b"\n"
        # the scheme was checked to be http or https (url_from_env)
        request = urllib.request.Request(  # noqa: S310
            self.url, data=data, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as answer:  # noqa: S310
                ok = bool(200 <= answer.status < 300)
        except urllib.error.HTTPError as exc:
            ok, status = False, str(exc.code)
        except (urllib.error.URLError, OSError) as exc:
            ok, status = False, type(exc).__name__
        else:
            status = str(answer.status)
        if not ok:
            log.warning(
                "witness did not take the checkpoint; retrying",
                extra={"tree_size": body["tree_size"], "url": _shown(self.url), "status": status},
            )
        return ok
