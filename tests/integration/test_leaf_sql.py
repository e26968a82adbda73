"""Leaf pieces written by PostgreSQL (auditor.store.leaf_sql) against the leaves the writer
sealed, for awkward text, and verify's second opinion when the fast bytes differ."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditor.evidence import batches, checkpoints, keys, pack
from auditor.evidence.canonical import leaf_hash
from auditor.store import integrity, sealer
from auditor.store.leaf_reader import _hash_range
from auditor.store.sources import Hasher, rows_by_id
from auditor.store.writer import store_batch
from tests.helpers import T0, om_message, receipt
from tests.integration.test_tamper import _bypass

Conn = psycopg.Connection[Any]

AWKWARD = [
    'quote " backslash \\ slash /',
    "controls \x01\x08\t\n\x0c\r\x1f\x7f",
    "latin é, line separator \u2028, cjk 漢字",
    "astral \U0001f600 key order",
]


def _sealed(conn: Conn, source: str) -> dict[int, bytes]:
    """Leaf hashes sealed per row id: events also from their slots in format-2 batch rows."""
    rows = conn.execute("SELECT source_id, leaf_hash FROM record WHERE source = %s", (source,))
    found = {int(i): bytes(h) for i, h in rows}
    if source == "event":
        for first, joined in conn.execute(
            "SELECT source_id, leaves FROM record WHERE source = 'batch'"
        ):
            for slot, leaf in enumerate(batches.split(bytes(joined))):
                found[int(first) + slot] = leaf
    return found


@pytest.mark.parametrize("text", AWKWARD)
def test_postgres_written_pieces_give_the_sealed_leaf(conn: Conn, text: str) -> None:
    store_batch(
        conn,
        [
            receipt(
                om_message(text, text, user_data={text: text, "n": 12, "list": [text, None]}),
                account=text,
                at=1,
            ),
            receipt(f"not json {text}", account=text, at=2),
        ],
    )
    for source in ("event", "quarantine"):
        sealed = _sealed(conn, source)
        ids, hashes = _hash_range(conn, source, min(sealed), max(sealed))
        assert ids
        assert dict(zip(ids, hashes, strict=True)) == {i: sealed[i] for i in ids}


def test_verify_asks_the_careful_encoder_before_calling_a_float_payload_altered(
    conn: Conn,
) -> None:
    # orjson writes 1.0 and 1e+21 where the canonical form is 1 and 1000000000000000000000:
    # the fast bytes differ from the sealed ones, the careful ones do not.
    raw = om_message("I-float", "Invited", user_data={"a": 1.0, "b": 1e21, "c": 0.5})
    store_batch(conn, [receipt(raw, at=3)])
    sealed = _sealed(conn, "event")
    newest = max(sealed)
    _, hashes = _hash_range(conn, "event", newest, newest)
    assert hashes[0] != sealed[newest]
    sealer.seal(conn)
    report = integrity.verify(conn)
    assert report.ok, report.problem
    # ...and a real change to that row is still found: 0.5 -> 0.25, as a superuser would.
    _bypass(conn)
    conn.execute(
        "UPDATE events SET payload = jsonb_set(payload, '{data,openmedia,userData,c}', '0.25')"
        " WHERE id = %s",
        (newest,),
    )
    problem = integrity.verify(conn).problem
    assert problem is not None
    assert problem.kind == "altered"
    at = conn.execute(
        "SELECT position FROM record WHERE (source = 'event' AND source_id = %s)"
        " OR (source = 'batch' AND %s BETWEEN source_id AND source_id + leaf_count - 1)",
        (newest, newest),
    ).fetchone()
    assert at is not None
    assert problem.position == at[0]


def test_pack_lines_are_the_careful_leaves_where_the_fast_ones_differ_or_are_unsealed(
    conn: Conn,
) -> None:
    """A float in a payload (fast bytes differ) and a closed interval not sealed yet (no
    sealed hash to compare with) both get the careful bytes: the leaf the record holds."""
    account = "float-agent"
    store_batch(
        conn,
        [
            receipt(om_message("I-f", "Invited", user_data={"a": 1.0}), account=account, at=5),
            receipt(om_message("I-f", "Processing"), account=account, at=6),
        ],
    )
    conn.execute(
        "INSERT INTO coverage_intervals (account, worker_id, channels, started_at,"
        " heartbeat_at, ended_at, end_reason) VALUES (%s, 'w1', ARRAY['/v2/me/openmedia'],"
        " %s, %s, %s, 'stopped')",
        (account, T0, T0 + timedelta(seconds=9), T0 + timedelta(seconds=9)),
    )
    signer = keys.Signer(Ed25519PrivateKey.generate())
    assert checkpoints.make(conn, signer) is not None
    made = pack.export(conn, pack.Query(interaction="I-f"), signer, made_by="test")
    lines = {name: made.files[name].splitlines() for name in ("events.ndjson", "coverage.ndjson")}
    assert len(lines["events.ndjson"]) == 2
    assert len(lines["coverage.ndjson"]) == 1
    assert made.manifest["unproven"] == [
        {"file": "coverage.ndjson", "line": 1, "reason": "not yet sealed"}
    ]
    sealed = _sealed(conn, "event")
    for line in lines["events.ndjson"]:
        event_id = json.loads(line)["id"]
        assert leaf_hash(line) == sealed[event_id]
    (line,) = lines["coverage.ndjson"]
    interval_id = json.loads(line)["id"]
    row = rows_by_id(conn, "coverage", interval_id, interval_id)[interval_id]
    assert leaf_hash(line) == Hasher("coverage").leaf(row)
