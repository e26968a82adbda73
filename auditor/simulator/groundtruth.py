"""The ground-truth log: one NDJSON line per notification copy actually written to a client,
and one per notification that no session could receive (generated while the agent had no
subscribed session, queued for a session that then expired, or lost with a connection).

Fields: seq (emission order, deterministic for a seed), agent, status (`delivered` or
`undeliverable`), delivered_at (ISO 8601 UTC with microseconds; null when undeliverable),
generated_at, client_id (null when undeliverable at generation), reason, malformed (the fault
kind, or null) and message (the full Bayeux message: channel + data, exactly as sent).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson

DELIVERED = "delivered"
UNDELIVERABLE = "undeliverable"


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class GroundTruth:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._file: IO[str] | None = None
        self.delivered = 0
        self.undeliverable = 0
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("a", encoding="utf-8")

    def record(
        self,
        *,
        seq: int,
        agent: str,
        message: dict[str, Any],
        status: str,
        generated_at: str,
        client_id: str | None = None,
        reason: str | None = None,
        malformed: str | None = None,
        delivered_at: str | None = None,
    ) -> None:
        if status == DELIVERED:
            self.delivered += 1
        else:
            self.undeliverable += 1
        if self._file is None:
            return
        line = {
            "seq": seq,
            "agent": agent,
            "status": status,
            "delivered_at": delivered_at,
            "generated_at": generated_at,
            "client_id": client_id,
            "reason": reason,
            "malformed": malformed,
            "message": message,
        }
        self._file.write(orjson.dumps(line).decode() + "\n")

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
