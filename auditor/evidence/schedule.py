"""When the worker signs a checkpoint: every AUDITOR_CHECKPOINT_INTERVAL seconds (default
300) or as soon as AUDITOR_CHECKPOINT_ROWS positions were appended since the last one
(default 0: no row trigger), whichever comes first. Each one can also be written to
AUDITOR_CHECKPOINT_WITNESS_DIR, a directory outside PostgreSQL (mount it from elsewhere), and
POSTed to AUDITOR_CHECKPOINT_WITNESS_URL (auditor.evidence.witness_http: queued, retried, never
in the way), so a rewrite by whoever controls the database is caught against a copy they do
not control."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from auditor.errors import ConfigError
from auditor.evidence import checkpoints, keys
from auditor.evidence.witness_http import HttpWitness, url_from_env

INTERVAL = "AUDITOR_CHECKPOINT_INTERVAL"
ROWS = "AUDITOR_CHECKPOINT_ROWS"
WITNESS_DIR = "AUDITOR_CHECKPOINT_WITNESS_DIR"
# How often the row trigger looks at the record's head (one index probe).
POLL_SECONDS = 5.0

log = logging.getLogger("auditor.evidence.schedule")


def _number(environ: Mapping[str, str], name: str, default: float, lo: float) -> float:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(name, f"{raw!r} is not a number") from None
    if value < lo:
        raise ConfigError(name, f"must be at least {lo:g}")
    return value


@dataclass
class Checkpointer:
    conninfo: str
    signer: keys.Signer
    interval: float = 300.0
    rows: int = 0
    witness: Path | None = None
    http_witness: HttpWitness | None = None
    _last_made: float = 0.0
    _conn: psycopg.Connection[Any] | None = None

    @classmethod
    def from_env(cls, conninfo: str, environ: Mapping[str, str]) -> Checkpointer | None:
        """None when no signing key is configured (checkpoints off; the worker says so)."""
        signer = keys.load_signer(environ, required=False)
        interval = _number(environ, INTERVAL, 300.0, 1.0)
        rows = int(_number(environ, ROWS, 0, 0))
        witness = environ.get(WITNESS_DIR) or None
        url = url_from_env(environ)
        if signer is None:
            return None
        return cls(
            conninfo,
            signer,
            interval,
            rows,
            Path(witness) if witness else None,
            HttpWitness(url) if url else None,
        )

    @property
    def poll_seconds(self) -> float:
        return min(self.interval, POLL_SECONDS) if self.rows else self.interval

    def due(self, now: float, appended: int) -> bool:
        return now - self._last_made >= self.interval or (0 < self.rows <= appended)

    def tick(self, now: float | None = None) -> checkpoints.Checkpoint | None:
        """Make a checkpoint if one is due; called from the worker's periodic task."""
        now = time.monotonic() if now is None else now
        conn = self._connection()
        try:
            appended = 0
            if self.rows:
                latest = checkpoints.latest(conn)
                head = conn.execute("SELECT coalesce(max(position), 0) FROM record").fetchone()
                conn.rollback()
                appended = int(head[0] if head else 0) - (latest.tree_size if latest else 0)
            if not self.due(now, appended):
                return None
            with conn.transaction():
                made = checkpoints.make(conn, self.signer)
        except psycopg.Error:
            self._drop_connection()  # the witness goes on sending what it has
            raise
        self._last_made = now
        if made is not None:
            log.info(
                "checkpoint signed",
                extra={"tree_size": made.tree_size, "key_id": made.key_id},
            )
            if self.witness is not None:
                checkpoints.write_witness(self.witness, made)
            if self.http_witness is not None:
                self.http_witness.submit(made)
        return made

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.conninfo, connect_timeout=10)
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        self._drop_connection()
        if self.http_witness is not None:
            self.http_witness.close()
