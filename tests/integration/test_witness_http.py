"""The HTTP witness: the worker's checkpointer POSTs each new checkpoint to a URL, retrying
while the witness fails, without waiting for it; what the witness kept is a checkpoint
`auditor verify --against` accepts (and the rewrite of the tail it catches)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import URL

from auditor.config import libpq_conninfo
from auditor.errors import ConfigError
from auditor.evidence import checkpoints, keys, schedule, witness_http
from auditor.store.writer import store_batch
from tests.helpers import om_message, receipt


@dataclass
class Witness:
    """A tiny HTTP server keeping what it is sent; it refuses the first ``failures`` POSTs."""

    failures: int
    received: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    changed: threading.Condition = field(default_factory=threading.Condition)
    url: str = ""

    def wait_for(self, count: int, timeout: float = 20.0) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.received) >= count, timeout), (
                f"the witness got {len(self.received)} of {count} after {self.attempts} tries"
            )


@pytest.fixture
def witness() -> Iterator[Witness]:
    kept = Witness(failures=2)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with kept.changed:
                kept.attempts += 1
                refuse = kept.attempts <= kept.failures
                if not refuse:
                    kept.received.append(json.loads(body))
                kept.changed.notify_all()
            self.send_response(503 if refuse else 201)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    kept.url = f"http://127.0.0.1:{server.server_address[1]}/checkpoints"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield kept
    server.shutdown()
    server.server_close()


def test_each_checkpoint_reaches_the_witness_after_its_failures_and_verifies_there(
    fresh_db: URL, tmp_path: Path, witness: Witness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(witness_http, "RETRY_FIRST", 0.05)
    key = tmp_path / "k.pem"
    signer = keys.create(key)
    conninfo = libpq_conninfo(fresh_db)
    env = {"AUDITOR_SIGNING_KEY_FILE": str(key), "AUDITOR_CHECKPOINT_WITNESS_URL": witness.url}
    checkpointer = schedule.Checkpointer.from_env(conninfo, env)
    assert checkpointer is not None
    assert checkpointer.http_witness is not None
    try:
        with psycopg.connect(conninfo) as conn:
            store_batch(conn, [receipt(om_message("H-1", "Invited"), at=i) for i in range(3)])
            conn.commit()
            first = checkpointer.tick(now=10_000.0)  # returns while the witness still refuses
            store_batch(conn, [receipt(om_message("H-1", "Accept"), at=10 + i) for i in range(2)])
            conn.commit()
            second = checkpointer.tick(now=20_000.0)
            assert first is not None
            assert second is not None
            witness.wait_for(2)
            assert witness.attempts == 4  # two refused, then each once, in order
            assert witness.received == [first.to_json(), second.to_json()]
            # what the witness kept proves the record, with the key alone
            assert checkpoints.verify_against(conn, witness.received[1], signer.public) == []
            # and catches a consistent rewrite of the tail (the chain alone would not)
            conn.execute("ALTER EVENT TRIGGER auditor_guard_alter DISABLE")
            conn.execute("SET LOCAL session_replication_role = replica")
            conn.execute("ALTER TABLE record DISABLE TRIGGER USER")
            conn.execute(
                "UPDATE record SET leaf_hash = sha256(leaf_hash) WHERE position = %s",
                (first.tree_size,),
            )
            assert checkpoints.verify_against(conn, witness.received[0], signer.public)
            conn.rollback()
    finally:
        checkpointer.close()


def test_a_bad_witness_url_names_the_setting(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    keys.create(key)
    for bad in ("ftp://example.org/x", "not a url", "http://"):
        env = {"AUDITOR_SIGNING_KEY_FILE": str(key), "AUDITOR_CHECKPOINT_WITNESS_URL": bad}
        with pytest.raises(ConfigError, match="AUDITOR_CHECKPOINT_WITNESS_URL"):
            schedule.Checkpointer.from_env("", env)


def test_a_witness_that_never_answers_does_not_hold_up_checkpoints(tmp_path: Path) -> None:
    # nothing listens on port 9 of localhost (discard): every POST fails at once
    sender = witness_http.HttpWitness("http://127.0.0.1:9/", retry_first=0.01, retry_max=0.02)
    made = checkpoints.Checkpoint(1, 1, bytes(32), bytes(32), {}, _now(), "k", b"s")
    try:
        for _ in range(3):
            sender.submit(made)  # returns at once
        assert sender.pending() == 3
    finally:
        sender.close(timeout=1.0)
    assert sender.delivered == 0


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)
