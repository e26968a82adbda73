"""Tampering with events sealed in record format 2 (one record row per writer batch), by a
superuser who bypasses every trigger: `verify` alone finds the same kinds as for format 1
(test_tamper.py), at the position of the batch row, naming the event."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditor.evidence import batches, checkpoints, keys
from auditor.evidence.canonical import chain_next
from auditor.store import integrity
from auditor.store.sources import Hasher, rows_by_id
from auditor.store.writer import store_batch
from tests.helpers import om_message, receipt
from tests.integration.test_tamper import (
    _bypass,
    _chain_at,
    _forged_leaf,
    _leaf_path,  # noqa: F401  (autouse: both paths here too)
    _problem,
)

Conn = psycopg.Connection[Any]
Batch = tuple[int, int, int]  # (position, first event id, events)


@pytest.fixture
def sealed(conn: Conn) -> list[Batch]:
    """Twelve events in three writer batches, each one format-2 record row."""
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
        "SELECT position, source, source_id, leaf_count FROM record ORDER BY position DESC LIMIT 3"
    ).fetchall()
    assert {r[1] for r in rows} == {"batch"}
    return sorted((int(p), int(i), int(n)) for p, _, i, n in rows)


def test_one_changed_payload_byte_is_found_altered_at_its_batch(
    conn: Conn, sealed: list[Batch]
) -> None:
    position, first, _ = sealed[1]
    _bypass(conn)
    conn.execute(
        "UPDATE events SET payload = jsonb_set(payload, '{data,referenceId}', '7') WHERE id = %s",
        (first + 2,),
    )
    problem = _problem(conn)
    assert (problem.position, problem.kind) == (position, "altered")
    assert f"event {first + 2}" in problem.detail


def test_a_deleted_event_is_found_missing_at_its_batch(conn: Conn, sealed: list[Batch]) -> None:
    position, first, _ = sealed[2]
    _bypass(conn)
    conn.execute("DELETE FROM events WHERE id = %s", (first + 1,))
    problem = _problem(conn)
    assert (problem.position, problem.kind) == (position, "missing")
    assert f"event {first + 1}" in problem.detail


def test_a_deleted_batch_row_is_found_missing_at_its_position(
    conn: Conn, sealed: list[Batch]
) -> None:
    position = sealed[1][0]
    _bypass(conn)
    conn.execute("DELETE FROM record WHERE position = %s", (position,))
    problem = _problem(conn)
    assert (problem.position, problem.kind) == (position, "missing")


def test_two_swapped_batch_rows_are_found_reordered_at_the_first(
    conn: Conn, sealed: list[Batch]
) -> None:
    first, second = sealed[0][0], sealed[2][0]
    _bypass(conn)
    parked = 2**62
    conn.execute("UPDATE record SET position = %s WHERE position = %s", (parked, first))
    conn.execute("UPDATE record SET position = %s WHERE position = %s", (first, second))
    conn.execute("UPDATE record SET position = %s WHERE position = %s", (second, parked))
    problem = _problem(conn)
    assert (problem.position, problem.kind) == (first, "reordered")


def test_two_events_of_a_batch_with_swapped_payloads_are_found_reordered(
    conn: Conn, sealed: list[Batch]
) -> None:
    position, first, _ = sealed[0]
    _bypass(conn)
    conn.execute(
        "UPDATE events AS e SET payload = o.payload FROM events AS o"
        " WHERE (e.id, o.id) IN ((%s, %s), (%s, %s))",
        (first + 1, first + 3, first + 3, first + 1),
    )
    problem = _problem(conn)
    assert problem.position == position
    assert problem.kind in ("altered", "reordered")


def test_a_changed_slot_in_a_batch_row_is_found_altered(conn: Conn, sealed: list[Batch]) -> None:
    """Someone replaces one event's sealed leaf hash (to match an edited event) but cannot
    give the batch row a leaf hash the chain still accepts."""
    position, first, _ = sealed[1]
    _bypass(conn)
    conn.execute(
        "UPDATE events SET payload = jsonb_set(payload, '{data,referenceId}', '7') WHERE id = %s",
        (first,),
    )
    conn.execute(
        "UPDATE record SET leaves = overlay(leaves PLACING %s FROM 1 FOR 32) WHERE position = %s",
        (_forged_leaf(conn, first), position),
    )
    problem = _problem(conn)
    assert (problem.position, problem.kind) == (position, "altered")


def test_a_forged_batch_with_a_valid_looking_hash_is_found_inserted(
    conn: Conn, sealed: list[Batch]
) -> None:
    position = sealed[1][0]
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
    slot = _forged_leaf(conn, forged[0])
    leaf = batches.leaf_hash_of([slot])
    conn.execute(
        "INSERT INTO record (position, source, source_id, leaf_hash, chain_hash, format,"
        " leaf_count, leaves) VALUES (%s, 'batch', %s, %s, %s, 2, 1, %s)",
        (position, forged[0], leaf, chain_next(_chain_at(conn, position - 1), leaf), slot),
    )
    problem = _problem(conn)
    assert (problem.position, problem.kind) == (position, "inserted")


def test_an_event_slipped_in_beside_batches_is_reported_unsealed(
    conn: Conn, sealed: list[Batch]
) -> None:
    conn.execute(
        "INSERT INTO events (receipt_id, received_at, account, payload)"
        """ VALUES (gen_random_uuid(), now(), 'agent001', '{"forged": true}')"""
    )
    report = integrity.verify(conn)
    assert report.ok
    assert report.unsealed == {"event": 1}


def _rewrite_tail_from(conn: Conn, position: int, event_id: int) -> None:
    """Change one event, then recompute every slot, leaf and chain hash from its batch on."""
    _bypass(conn)
    conn.execute(
        "UPDATE events SET payload = jsonb_set(payload, '{data,referenceId}', '7') WHERE id = %s",
        (event_id,),
    )
    chain = _chain_at(conn, position - 1)
    rows = conn.execute(
        "SELECT position, source, source_id, leaf_count FROM record WHERE position >= %s"
        " ORDER BY position",
        (position,),
    ).fetchall()
    hasher = Hasher("event")
    for at, source, source_id, count in rows:
        if source != "batch":  # the checkpoint: its row is unchanged, its link is not
            leaf = Hasher(source).leaf(rows_by_id(conn, source, source_id, source_id)[source_id])
            chain = chain_next(chain, leaf)
            conn.execute(
                "UPDATE record SET leaf_hash = %s, chain_hash = %s WHERE position = %s",
                (leaf, chain, at),
            )
            continue
        stored = rows_by_id(conn, "event", source_id, source_id + count - 1)
        slots = [hasher.leaf(stored[i]) for i in range(source_id, source_id + count)]
        leaf = batches.leaf_hash_of(slots)
        chain = chain_next(chain, leaf)
        conn.execute(
            "UPDATE record SET leaf_hash = %s, chain_hash = %s, leaves = %s WHERE position = %s",
            (leaf, chain, b"".join(slots), at),
        )


def test_a_consistently_rewritten_tail_of_batches_passes_verify_alone_not_a_checkpoint(
    conn: Conn, sealed: list[Batch]
) -> None:
    signer = keys.Signer(Ed25519PrivateKey.generate())
    made = checkpoints.make(conn, signer)
    assert made is not None
    kept = made.to_json()
    assert checkpoints.verify_against(conn, kept, signer.public) == []
    position, first, _ = sealed[1]
    _rewrite_tail_from(conn, position, first + 1)
    assert integrity.verify(conn).ok
    assert checkpoints.verify_against(conn, kept, signer.public) != []


def test_batches_read_in_groups_smaller_than_a_batch_still_find_the_altered_event(
    conn: Conn, sealed: list[Batch], monkeypatch: pytest.MonkeyPatch
) -> None:
    """verify reads record rows in groups of at most _BATCH stored rows: here one batch row
    a group, so the next group is read while this one is checked."""
    monkeypatch.setattr(integrity, "_BATCH", 3)
    assert integrity.verify(conn).ok
    position, first, _ = sealed[2]
    _bypass(conn)
    conn.execute(
        "UPDATE events SET payload = jsonb_set(payload, '{data,referenceId}', '7') WHERE id = %s",
        (first + 3,),
    )
    problem = _problem(conn)
    assert (problem.position, problem.kind) == (position, "altered")
