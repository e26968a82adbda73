"""Events stored by the writer with the C leaf encoder and without it verify alike: `auditor
verify` (with and without the encoder) finds the record intact, so the two write the same
leaf hashes for the same rows, on real PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import URL

from auditor.config import libpq_conninfo
from auditor.evidence import native
from auditor.store import integrity, writer
from auditor.store.writer import store_batch
from tests.helpers import om_message, receipt

AUDITOR = str(Path(sys.executable).with_name("auditor"))

# Payloads through every branch: plain GWS data (the C path), floats and integers beyond
# 64 bits (the Python path), astral keys (Python), escapes and non-ASCII text (C).
USER_DATA: list[dict[str, object]] = [
    {"case": "4711", "customer": 'Zoë "Q" O\'Brien\n\t\\', "n": 42},
    {"amount": 12.5, "ratio": 1e16},
    {"id": 123456789012345678901234567890},
    {"\U0001f600": "smile", "\uffff": "last BMP", "emoji": "\U0001f680"},
    {"nested": [{"b": 1, "a": [None, True, False, "\u20ac"]}, []], "empty": {}},
    {"big": 2**63 - 1, "small": -(2**63), "u64": 2**64 - 1},
]


def _store(url: URL, at: int) -> None:
    with psycopg.connect(libpq_conninfo(url)) as conn:
        store_batch(
            conn,
            [
                receipt(
                    om_message(f"N-{at}-{i}", "Processing", reference_id=i, user_data=data),
                    at=at + i,
                )
                for i, data in enumerate(USER_DATA)
            ]
            + [receipt(b"{not json", at=at + 99)],  # a quarantine row too
        )


def _verify(url: URL, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AUDITOR_")}
    environ.update(env, AUDITOR_DATABASE_URL=url.render_as_string(hide_password=False))
    return subprocess.run(
        [AUDITOR, "verify"], env=environ, capture_output=True, text=True, timeout=240
    )


@pytest.mark.skipif(native.leafc is None, reason=f"C encoder {native.UNAVAILABLE}")
def test_events_sealed_with_and_without_the_c_encoder_verify_either_way(
    fresh_db: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert writer._EVENT_NATIVE is not None
    _store(fresh_db, 0)
    with monkeypatch.context() as off:
        off.setattr(writer, "_EVENT_NATIVE", None)
        off.setattr(writer._EVENT_LEAF, "_native", None)
        off.setattr(writer._QUARANTINE_LEAF, "_native", None)
        _store(fresh_db, 1000)
    _store(fresh_db, 2000)
    with psycopg.connect(libpq_conninfo(fresh_db)) as conn:
        report = integrity.verify(conn)
        assert report.ok, report.problem
        events = conn.execute("SELECT count(*) FROM events").fetchone()
        assert events is not None
        assert events[0] == 3 * len(USER_DATA)
        payload = conn.execute(
            "SELECT payload::text FROM events WHERE payload @> %s::jsonb",
            (json.dumps({"data": {"openmedia": {"userData": USER_DATA[2]}}}),),
        ).fetchall()
        assert len(payload) == 3  # the exact big integer, stored and sealed three times
    for env in ({}, {"AUDITOR_NATIVE": "0"}):
        done = _verify(fresh_db, **env)
        assert done.returncode == 0, (env, done.stdout, done.stderr)
