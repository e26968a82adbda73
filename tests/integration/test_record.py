"""The hash-chained record: the writer and the sealer give every covered row its position,
gapless and in commit order, and `verify` recomputes the chain from the stored rows."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from hashlib import sha256
from typing import Any

import psycopg
import pytest
from psycopg import errors

from auditor.evidence import batches
from auditor.evidence.canonical import ZERO_HASH, chain_next, leaf_hash
from auditor.evidence.leaves import leaf_bytes, load_json
from auditor.evidence.merkle import node_hash
from auditor.store import integrity, sealer, writer
from auditor.store.writer import store_batch
from tests.helpers import om_message, receipt

Conn = psycopg.Connection[Any]


def _record(conn: Conn) -> list[tuple[int, str, int, bytes, bytes]]:
    return [
        (r[0], r[1], r[2], bytes(r[3]), bytes(r[4]))
        for r in conn.execute(
            "SELECT position, source, source_id, leaf_hash, chain_hash FROM record"
            " ORDER BY position"
        )
    ]


def _stored_leaf(conn: Conn, source: str, source_id: int) -> bytes:
    """The reference leaf hash of a row as PostgreSQL stored it."""
    table = "events" if source == "event" else "quarantine"
    cur = conn.cursor(row_factory=psycopg.rows.dict_row)
    row = cur.execute(f"SELECT * FROM {table} WHERE id = %s", (source_id,)).fetchone()
    assert row is not None
    if "payload" in row:
        row["payload"] = load_json(
            conn.execute("SELECT payload::text FROM events WHERE id = %s", (source_id,)).fetchone()[
                0
            ]  # type: ignore[index]
        )
    return leaf_hash(leaf_bytes(source, row))


def _store_two_events_and_a_reject(conn: Conn) -> list[int]:
    result = store_batch(
        conn,
        [
            receipt(om_message("I-1", "Invited"), at=1),
            receipt("not json", at=2),
            receipt(om_message("I-1", "Processing"), at=3),
        ],
    )
    assert (result.stored, result.quarantined) == (2, 1)
    return sorted(i for (i,) in conn.execute("SELECT id FROM events ORDER BY id DESC LIMIT 2"))


def test_writer_seals_each_event_and_quarantine_entry_in_its_transaction(
    conn: Conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Format 1 (one record row per event), as every writer before record format 2."""
    monkeypatch.setattr(writer, "RECORD_FORMAT", 1)
    before = len(_record(conn))
    ids = _store_two_events_and_a_reject(conn)
    rows = _record(conn)[before:]
    assert [(r[1]) for r in rows] == ["event", "event", "quarantine"]
    assert [r[2] for r in rows[:2]] == ids
    # The writer's leaves are the reference encoding of the rows as PostgreSQL stored them.
    for position, source, source_id, leaf, _ in rows:
        assert _stored_leaf(conn, source, source_id) == leaf, position
    assert integrity.verify(conn).ok


def test_writer_seals_a_batch_of_events_in_one_format_2_row_then_quarantine(conn: Conn) -> None:
    before = len(_record(conn))
    ids = _store_two_events_and_a_reject(conn)
    rows = conn.execute(
        "SELECT source, source_id, leaf_hash, format, leaf_count, leaves FROM record"
        " ORDER BY position OFFSET %s",
        (before,),
    ).fetchall()
    assert [(r[0], r[3]) for r in rows] == [("batch", 2), ("quarantine", 1)]
    _, first, leaf, _, count, leaves = rows[0]
    assert (first, count) == (ids[0], 2)
    assert ids == [ids[0], ids[0] + 1]
    # Each slot is the event's reference leaf hash; the row's leaf hash is over the slots.
    slots = batches.split(bytes(leaves))
    assert slots == [_stored_leaf(conn, "event", i) for i in ids]
    assert bytes(leaf) == sha256(b"\x02" + node_hash(slots[0], slots[1])).digest()
    assert bytes(rows[1][2]) == _stored_leaf(conn, "quarantine", rows[1][1])
    assert integrity.verify(conn).ok


def test_a_batch_across_a_month_boundary_is_sealed_in_one_row_per_month(conn: Conn) -> None:
    before = len(_record(conn))
    store_batch(
        conn,
        [
            replace(receipt(om_message("I-9", "Invited", reference_id=i)), received_at=at)
            for i, at in enumerate(
                (
                    datetime(2026, 10, 31, 23, 59, 59, tzinfo=UTC),
                    datetime(2026, 11, 1, 0, 0, 0, tzinfo=UTC),
                    datetime(2026, 11, 1, 0, 0, 1, tzinfo=UTC),
                )
            )
        ],
    )
    rows = conn.execute(
        "SELECT source, leaf_count FROM record ORDER BY position OFFSET %s", (before,)
    ).fetchall()
    assert rows == [("batch", 1), ("batch", 2)]
    assert integrity.verify(conn).ok


def test_a_batch_going_back_and_forth_across_months_is_sealed_in_one_row_per_run(
    conn: Conn,
) -> None:
    # a spool drained late can interleave an old month's receipts with this month's
    before = len(_record(conn))
    months = (10, 11, 11, 10, 11)
    store_batch(
        conn,
        [
            replace(
                receipt(om_message("I-8", "Invited", reference_id=i)),
                received_at=datetime(2026, month, 15, 12, 0, i, tzinfo=UTC),
            )
            for i, month in enumerate(months)
        ],
    )
    rows = conn.execute(
        "SELECT source, leaf_count FROM record ORDER BY position OFFSET %s", (before,)
    ).fetchall()
    assert rows == [("batch", 1), ("batch", 2), ("batch", 1), ("batch", 1)]
    assert integrity.verify(conn).ok


def test_positions_are_gapless_and_chained_from_zero(conn: Conn) -> None:
    store_batch(conn, [receipt(om_message("I-2", "Invited"), at=i) for i in range(5)])
    store_batch(conn, [receipt(om_message("I-2", "Processing"), at=10 + i) for i in range(3)])
    rows = _record(conn)
    assert [r[0] for r in rows] == list(range(1, len(rows) + 1))
    chain = ZERO_HASH
    for _, _, _, leaf, stored in rows:
        chain = chain_next(chain, leaf)
        assert chain == stored
    report = integrity.verify(conn)
    assert report.ok, report.problem
    assert report.checked == len(rows)


def test_the_database_refuses_a_gap_in_positions(conn: Conn) -> None:
    store_batch(conn, [receipt(om_message("I-3", "Invited"))])
    last = conn.execute("SELECT max(position) FROM record").fetchone()[0]  # type: ignore[index]
    with (
        pytest.raises(errors.IntegrityConstraintViolation, match="without a gap"),
        conn.transaction(),
    ):
        conn.execute(
            "INSERT INTO record (position, source, source_id, leaf_hash, chain_hash)"
            " VALUES (%s, 'access', 1, %s, %s)",
            (last + 2, bytes(32), bytes(32)),
        )


@pytest.mark.parametrize(
    "statement",
    ["UPDATE record SET source_id = 0", "DELETE FROM record", "TRUNCATE record"],
)
def test_the_record_is_append_only(conn: Conn, statement: str) -> None:
    store_batch(conn, [receipt(om_message("I-4", "Invited"))])
    with pytest.raises(errors.InsufficientPrivilege, match="append-only"), conn.transaction():
        conn.execute(statement)


def test_sealer_enters_closed_coverage_and_access_rows_not_open_intervals(conn: Conn) -> None:
    conn.execute(
        "INSERT INTO coverage_intervals (account, worker_id, channels, started_at, heartbeat_at,"
        " ended_at, end_reason) VALUES ('a', 'w', '{/v2/me/openmedia}', now(), now(), now(), 'x'),"
        " ('b', 'w', '{/v2/me/openmedia}', now(), now(), NULL, NULL)"
    )
    conn.execute(
        "INSERT INTO access_log (method, endpoint, status, filters)"
        """ VALUES ('GET', '/api/v1/events', 200, '{"q": [1, 2.5, "x"]}')"""
    )
    result = sealer.seal(conn)
    assert result.sealed == {"coverage": 1, "access": 1, "hold": 0, "release": 0}
    assert sealer.seal(conn).total == 0
    report = integrity.verify(conn)
    assert report.ok, report.problem
    assert "coverage" not in report.unsealed


def test_a_closed_coverage_interval_cannot_change(conn: Conn) -> None:
    conn.execute(
        "INSERT INTO coverage_intervals (account, worker_id, channels, started_at, heartbeat_at)"
        " VALUES ('a', 'w', '{c}', now(), now())"
    )
    conn.execute("UPDATE coverage_intervals SET heartbeat_at = now() WHERE account = 'a'")
    conn.execute("UPDATE coverage_intervals SET ended_at = now(), end_reason = 'stop'")
    for statement in (
        "UPDATE coverage_intervals SET ended_at = ended_at + interval '1 hour'",
        "DELETE FROM coverage_intervals",
        "TRUNCATE coverage_intervals",
    ):
        with pytest.raises(errors.InsufficientPrivilege), conn.transaction():
            conn.execute(statement)


def test_the_writer_role_stores_seals_and_records_progress_with_its_grants(conn: Conn) -> None:
    conn.execute("INSERT INTO access_log (method, endpoint, status) VALUES ('GET', '/y', 200)")
    conn.execute("SET LOCAL ROLE auditor_writer")
    result = store_batch(conn, [receipt(om_message("W-1", "Invited")), receipt("[")])
    assert (result.stored, result.quarantined) == (1, 1)
    assert sealer.seal(conn).sealed["access"] >= 1
    conn.execute("INSERT INTO drain_progress (worker_id, stored_through) VALUES ('w', now())")
    with pytest.raises(errors.InsufficientPrivilege), conn.transaction():
        conn.execute("SELECT nextval('events_id_seq')")


def test_events_in_batch_rows_are_sealed_for_the_backfill_and_the_unsealed_counts(
    conn: Conn,
) -> None:
    """`auditor seal --backfill` must not give an event in a format-2 batch a second place."""
    store_batch(conn, [receipt(om_message("I-7", "Invited"), at=i) for i in range(4)])
    assert sealer.unsealed_counts(conn)["event"] == 0
    before = _record(conn)
    sealer.seal(conn, sealer.BACKFILL_SOURCES)
    assert _record(conn) == before
