"""Tampering by a superuser who bypasses every trigger, and what `verify` alone makes of it.

Each test stores a few batches, then, as the superuser the tests connect as, switches off the
event triggers and the append-only triggers (session_replication_role = replica is not
enough any more: they fire ALWAYS) and changes history the way an insider would. Everything
happens in the test's transaction and is rolled back.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditor.evidence import checkpoints, keys
from auditor.evidence.canonical import chain_next, leaf_hash
from auditor.evidence.leaves import leaf_bytes, load_json
from auditor.store import integrity, leaf_copy, writer
from auditor.store.sources import Hasher, rows_by_id
from auditor.store.writer import store_batch
from tests.helpers import om_message, receipt

Conn = psycopg.Connection[Any]

_GUARDED = ("events", "quarantine", "record", "coverage_intervals", "access_log")


@pytest.fixture(autouse=True, params=["fast", "leaf_sql"])
def _leaf_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each tamper case with verify's fast path (C, binary COPY) and without it."""
    if request.param == "leaf_sql":
        monkeypatch.setattr(leaf_copy, "hash_copy", None)
    elif leaf_copy.hash_copy is None:
        pytest.skip("the fast path is not built")


def _bypass(conn: Conn) -> None:
    """What a superuser can do: every protection off, for this transaction."""
    conn.execute("ALTER EVENT TRIGGER auditor_guard_alter DISABLE")
    conn.execute("ALTER EVENT TRIGGER auditor_guard_drop DISABLE")
    conn.execute("SET LOCAL session_replication_role = replica")
    for table in _GUARDED:
        conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")


@pytest.fixture
def sealed(conn: Conn, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str, int]]:
    """Twelve events in three batches, sealed in record format 1 (one row per event; format 2
    in test_tamper_batches.py); returns their (position, source, id)."""
    monkeypatch.setattr(writer, "RECORD_FORMAT", 1)
    for batch in range(3):
        store_batch(
            conn,
            [
                receipt(om_message(f"T-{batch}", "Processing", reference_id=i), at=batch * 10 + i)
                for i in range(4)
            ],
        )
    report = integrity.verify(conn)
    assert report.ok, report.problem
    rows = conn.execute(
        "SELECT position, source, source_id FROM record ORDER BY position DESC LIMIT 12"
    ).fetchall()
    return sorted((int(p), str(s), int(i)) for p, s, i in rows)


def _problem(conn: Conn) -> integrity.Problem:
    report = integrity.verify(conn)
    assert report.problem is not None, "verify missed the tampering"
    return report.problem


def _forged_leaf(conn: Conn, event_id: int) -> bytes:
    cur = conn.cursor(row_factory=psycopg.rows.dict_row)
    row = cur.execute("SELECT * FROM events WHERE id = %s", (event_id,)).fetchone()
    assert row is not None
    text = conn.execute("SELECT payload::text FROM events WHERE id = %s", (event_id,)).fetchone()
    assert text is not None
    row["payload"] = load_json(text[0])
    return leaf_hash(leaf_bytes("event", row))


def _chain_at(conn: Conn, position: int) -> bytes:
    row = conn.execute("SELECT chain_hash FROM record WHERE position = %s", (position,)).fetchone()
    assert row is not None
    return bytes(row[0])


def test_one_changed_payload_byte_is_found_altered_at_its_position(
    conn: Conn, sealed: list[tuple[int, str, int]]
) -> None:
    position, _, event_id = sealed[5]
    _bypass(conn)
    conn.execute(
        "UPDATE events SET payload = jsonb_set(payload, '{data,referenceId}', '2') WHERE id = %s",
        (event_id,),
    )
    problem = _problem(conn)
    assert (problem.position, problem.kind) == (position, "altered")


def test_a_deleted_event_is_found_missing_at_its_position(
    conn: Conn, sealed: list[tuple[int, str, int]]
) -> None:
    position, _, event_id = sealed[7]
    _bypass(conn)
    conn.execute("DELETE FROM events WHERE id = %s", (event_id,))
    problem = _problem(conn)
    assert (problem.position, problem.kind) == (position, "missing")


def test_a_deleted_record_row_is_found_missing_at_its_position(
    conn: Conn, sealed: list[tuple[int, str, int]]
) -> None:
    position = sealed[4][0]
    _bypass(conn)
    conn.execute("DELETE FROM record WHERE position = %s", (position,))
    problem = _problem(conn)
    assert (problem.position, problem.kind) == (position, "missing")


def test_two_swapped_rows_are_found_reordered_at_the_first(
    conn: Conn, sealed: list[tuple[int, str, int]]
) -> None:
    first, second = sealed[3][0], sealed[8][0]
    _bypass(conn)
    parked = 2**62
    conn.execute("UPDATE record SET position = %s WHERE position = %s", (parked, first))
    conn.execute("UPDATE record SET position = %s WHERE position = %s", (first, second))
    conn.execute("UPDATE record SET position = %s WHERE position = %s", (second, parked))
    problem = _problem(conn)
    assert (problem.position, problem.kind) == (first, "reordered")


def test_two_events_with_swapped_payloads_are_found_at_the_first(
    conn: Conn, sealed: list[tuple[int, str, int]]
) -> None:
    (first, _, a), (_, _, b) = sealed[2], sealed[3]
    _bypass(conn)
    # The two notifications trade places: each row takes the other's payload.
    conn.execute(
        "UPDATE events AS e SET payload = o.payload FROM events AS o"
        " WHERE (e.id, o.id) IN ((%s, %s), (%s, %s))",
        (a, b, b, a),
    )
    problem = _problem(conn)
    assert problem.position == first
    assert problem.kind in ("altered", "reordered")


def test_a_forged_row_with_a_valid_looking_hash_is_found_inserted(
    conn: Conn, sealed: list[tuple[int, str, int]]
) -> None:
    position = sealed[6][0]
    _bypass(conn)
    forged = conn.execute(
        "INSERT INTO events (receipt_id, received_at, account, payload)"
        """ VALUES (gen_random_uuid(), now(), 'agent001', '{"forged": true}') RETURNING id"""
    ).fetchone()
    assert forged is not None
    parked = 2**40
    conn.execute(
        "UPDATE record SET position = position + %s WHERE position >= %s", (parked, position)
    )
    conn.execute(
        "UPDATE record SET position = position - %s + 1 WHERE position >= %s", (parked, parked)
    )
    leaf = _forged_leaf(conn, forged[0])
    conn.execute(
        "INSERT INTO record (position, source, source_id, leaf_hash, chain_hash)"
        " VALUES (%s, 'event', %s, %s, %s)",
        (position, forged[0], leaf, chain_next(_chain_at(conn, position - 1), leaf)),
    )
    problem = _problem(conn)
    assert (problem.position, problem.kind) == (position, "inserted")


def test_an_event_slipped_in_without_a_place_in_the_record_is_reported_unsealed(
    conn: Conn, sealed: list[tuple[int, str, int]]
) -> None:
    conn.execute(
        "INSERT INTO events (receipt_id, received_at, account, payload)"
        """ VALUES (gen_random_uuid(), now(), 'agent001', '{"forged": true}')"""
    )
    report = integrity.verify(conn)
    assert report.ok
    assert report.unsealed == {"event": 1}


def _rewrite_tail_from(conn: Conn, position: int, event_id: int) -> None:
    """Change one event, then recompute every leaf and chain hash from its position on."""
    _bypass(conn)
    conn.execute(
        "UPDATE events SET payload = jsonb_set(payload, '{data,referenceId}', '2') WHERE id = %s",
        (event_id,),
    )
    chain = _chain_at(conn, position - 1)
    rows = conn.execute(
        "SELECT position, source, source_id FROM record WHERE position >= %s ORDER BY position",
        (position,),
    ).fetchall()
    for at, source, source_id in rows:
        row = rows_by_id(conn, source, source_id, source_id)[source_id]
        leaf = Hasher(source).leaf(row)
        chain = chain_next(chain, leaf)
        conn.execute(
            "UPDATE record SET leaf_hash = %s, chain_hash = %s WHERE position = %s",
            (leaf, chain, at),
        )


def test_a_consistently_rewritten_tail_passes_verify_alone(
    conn: Conn, sealed: list[tuple[int, str, int]]
) -> None:
    """The limit of a chain checked against itself: whoever can rewrite every hash from a
    position on can make a changed history look whole."""
    position, _, event_id = sealed[5]
    _rewrite_tail_from(conn, position, event_id)
    assert integrity.verify(conn).ok


def test_a_consistently_rewritten_tail_fails_against_a_kept_checkpoint(
    conn: Conn, sealed: list[tuple[int, str, int]]
) -> None:
    """What verify alone cannot see, a checkpoint kept outside the database shows
    (`auditor checkpoint latest --json`, later `auditor verify --against FILE`)."""
    signer = keys.Signer(Ed25519PrivateKey.generate())
    made = checkpoints.make(conn, signer)
    assert made is not None
    kept = made.to_json()
    assert checkpoints.verify_against(conn, kept, signer.public) == []
    position, _, event_id = sealed[5]
    _rewrite_tail_from(conn, position, event_id)
    assert integrity.verify(conn).ok
    assert checkpoints.verify_against(conn, kept, signer.public) != []
