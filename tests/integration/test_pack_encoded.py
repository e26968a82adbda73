"""The export's encoded read (a binary COPY written by C: auditor/evidence/pack_rows.py
``encoded``) makes the very pack the row path makes: on awkward values, rows C leaves to
Python (floats), rows not sealed, an altered sealed row, a forged twin of a sealed row,
chunks of a few rows, ids that are and are not contiguous."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditor.evidence import checkpoints, keys, pack, pack_rows
from auditor.store import leaf_copy
from auditor.store.writer import store_batch
from tests.helpers import om_message, receipt
from tests.integration.test_pack_csv import _store_tricky

Conn = psycopg.Connection[Any]
pytestmark = pytest.mark.skipif(
    leaf_copy.export_copy is None, reason="_leafcopy not built or switched off"
)
MADE_AT = datetime(2026, 12, 1, tzinfo=UTC)


def _files(conn: Conn, query: pack.Query, signer: keys.Signer, chunk_rows: int) -> dict[str, bytes]:
    plan = pack.prepare(conn, query, signer, made_by="test", now=MADE_AT)
    files: dict[str, bytearray] = {}
    for name, data in pack.PackStream(conn, plan, chunk_rows):
        files.setdefault(name, bytearray()).extend(data)
    return {name: bytes(data) for name, data in files.items()}


@pytest.mark.parametrize("chunk_rows", [3, 5000])
def test_the_encoded_read_makes_the_row_paths_pack(
    conn: Conn, chunk_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    signer = keys.Signer(Ed25519PrivateKey.generate())
    query = _store_tricky(conn)
    # another account's events between, so that a chunk's ids are not one range
    store_batch(
        conn, [receipt(om_message(f"O-{i}", "Processing"), account="other", at=i) for i in range(4)]
    )
    checkpoints.make(conn, signer)
    # an altered sealed event: its line must be the careful encoder's, both ways (the
    # triggers that keep the record append-only set aside, as an intruder would; the
    # test's transaction is rolled back)
    row = conn.execute("SELECT id, tableoid::regclass::text FROM events ORDER BY id LIMIT 1")
    event_id, partition = row.fetchone() or (None, None)
    conn.execute("ALTER EVENT TRIGGER auditor_guard_alter DISABLE")
    conn.execute(f"ALTER TABLE {partition} DISABLE TRIGGER events_append_only")
    conn.execute("""UPDATE events SET payload = '{"altered": 1}' WHERE id = %s""", (event_id,))
    # and a forged twin of a sealed event (same id, another time within the range): both
    # reads give both keys the row the by-id read meets last
    conn.execute(
        "INSERT INTO events (id, receipt_id, received_at, account, payload)"
        " OVERRIDING SYSTEM VALUE"
        """ SELECT id, gen_random_uuid(), received_at + interval '1 second', account,"""
        """ '{"forged": true}' FROM events WHERE id = %s""",
        (event_id + 2,),
    )
    conn.execute(f"ALTER TABLE {partition} ENABLE TRIGGER events_append_only")
    conn.execute("ALTER EVENT TRIGGER auditor_guard_alter ENABLE")
    twins = conn.execute(
        "SELECT count(*) FROM events WHERE id = %s AND account = %s AND received_at < %s",
        (event_id + 2, query.account, query.end),
    ).fetchone()
    assert twins == (2,)  # both in the pack's range
    used = []
    write = pack_rows.EventRows._write

    def counted(self: pack_rows.EventRows, raw: Any) -> pack_rows.Encoded:
        used.append(len(raw.keys))
        return write(self, raw)

    monkeypatch.setattr(pack_rows.EventRows, "_write", counted)
    encoded = _files(conn, query, signer, chunk_rows)
    assert sum(used) == encoded["events.ndjson"].count(b"\n") > 20  # the encoded read ran
    monkeypatch.setattr(leaf_copy, "export_copy", None)
    rows = _files(conn, query, signer, chunk_rows)
    assert encoded == rows
