"""The writer keeps user_data_values: per event, the userData values it brought. Whatever the
batches, they say which values each interaction held and from which event; the migration's
backfill says the same."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine, inspect, pool
from sqlalchemy.engine import URL

from auditor.config import libpq_conninfo
from auditor.sample import generate
from auditor.store import schema, userdata_values
from auditor.store.receipts import Receipt
from auditor.store.writer import store_batch
from tests.helpers import from_sample, om_message, receipt

Conn = psycopg.Connection[Any]


def _receipts() -> list[Receipt]:
    maps: list[tuple[str, dict[str, Any] | None]] = [
        ("a", {"Case": "4711", "Step": 1}),
        ("b", {"Case": "4711"}),
        ("a", None),  # no userData: changes nothing
        ("a", {"Case": "4711", "Step": 2}),
        ("a", {"Case": "4711", "Step": 2}),
        ("a", {"Case": "4712", "Step": 2, "Big": {"nested": 1}, "Long": "x" * 300}),
        ("b", {"Case": "4711", "Flag": True}),
        ("a", {"Case": "4711", "Step": 2}),  # 4711 again: a new row
        ("b", {"Flag": 1}),  # true then 1: JSON tells them apart
    ]
    return [
        receipt(om_message(iid, "Handling", user_data=ud), at=n) for n, (iid, ud) in enumerate(maps)
    ]


# Each (interaction, key, value) ever held, with the first event that brought it.
_HELD = (
    "SELECT v.interaction_id, kv.key, kv.value, min(v.event_id) AS first_event_id"
    " FROM user_data_values AS v, jsonb_each(v.changed) AS kv GROUP BY 1, 2, 3"
)


def _rows(conn: Conn) -> list[tuple[Any, ...]]:
    found = conn.execute(
        f"SELECT h.interaction_id, h.key, h.value, f.received_at FROM ({_HELD}) AS h"  # type: ignore[arg-type]
        " JOIN events AS f ON f.id = h.first_event_id ORDER BY 1, 2, 4"
    ).fetchall()
    start = min(r[3] for r in found)
    # event positions instead of ids, so that runs in separate batches compare
    return [(r[0], r[1], r[2], int((r[3] - start).total_seconds() * 1000)) for r in found]


EXPECTED = [
    ("a", "Big", {"nested": 1}, 5),
    ("a", "Case", "4711", 0),
    ("a", "Case", "4712", 5),
    ("a", "Long", "x" * 300, 5),
    ("a", "Step", 1, 0),
    ("a", "Step", 2, 3),
    ("b", "Case", "4711", 1),
    ("b", "Flag", True, 6),
    ("b", "Flag", 1, 8),
]


@pytest.mark.parametrize("batch", [1, 2, 100])
def test_the_rows_say_each_value_an_interaction_held_and_the_first_event_that_brought_it(
    conn: Conn, batch: int
) -> None:
    receipts = _receipts()
    for start in range(0, len(receipts), batch):
        store_batch(conn, receipts[start : start + batch])
    assert _rows(conn) == EXPECTED


def test_storing_a_batch_again_adds_no_rows(conn: Conn) -> None:
    receipts = _receipts()
    store_batch(conn, receipts)
    store_batch(conn, receipts[3:])
    assert _rows(conn) == EXPECTED


def test_an_event_repeating_its_interactions_map_adds_no_row(conn: Conn) -> None:
    receipts = _receipts()
    store_batch(conn, receipts)
    rows = conn.execute("SELECT count(*) FROM user_data_values").fetchone()
    # of 9 events: one without userData, one repeating the map before it
    assert rows == (7,)


@pytest.mark.parametrize("batch", [1, 3])
def test_a_value_changing_only_its_json_type_is_a_change(conn: Conn, batch: int) -> None:
    """Python calls {"Flag": true} and {"Flag": 1} equal; JSON, containment and the migration's
    backfill do not: an event whose map differs only so still writes the value it brought."""
    maps = [{"Flag": True, "Case": "1"}, {"Flag": 1, "Case": "1"}, {"Flag": 1.0, "Case": "1"}]
    receipts = [
        receipt(om_message("c", "Handling", user_data=ud), at=n) for n, ud in enumerate(maps)
    ]
    for start in range(0, len(receipts), batch):
        store_batch(conn, receipts[start : start + batch])
    rows = conn.execute("SELECT changed FROM user_data_values ORDER BY event_id").fetchall()
    assert [r[0] for r in rows] == [{"Flag": True, "Case": "1"}, {"Flag": 1}, {"Flag": 1.0}]


@pytest.mark.usefixtures("record_format_1")  # format-2 record rows refuse the downgrade
def test_the_migration_fills_the_table_from_events_stored_before_it_as_the_writer_would(
    fresh_db: URL,
) -> None:
    """Events stored, the database taken back to the revision before user_data_values, then
    upgraded: the migration's backfill says what the writer's rows said."""
    with psycopg.connect(libpq_conninfo(fresh_db)) as conn:
        receipts = _receipts() + [
            from_sample(line) for line in generate(interactions=40, extra_updates=3)
        ]
        for start in range(0, len(receipts), 97):
            store_batch(conn, receipts[start : start + 97])
        conn.commit()
        by_writer = conn.execute(_ALL).fetchall()
    assert len(by_writer) > 100
    engine = create_engine(fresh_db, poolclass=pool.NullPool)
    try:
        with engine.begin() as connection:
            schema.downgrade(connection, PREVIOUS)
        with engine.connect() as connection:
            assert "user_data_values" not in inspect(connection).get_table_names()
        with engine.begin() as connection:
            schema.upgrade(connection)
    finally:
        engine.dispose()
    with psycopg.connect(libpq_conninfo(fresh_db)) as conn:
        assert conn.execute(_ALL).fetchall() == by_writer
        # the live copy of the statement (bench/api.py's bulk load) agrees
        conn.execute("DELETE FROM user_data_values")
        conn.execute(userdata_values.BACKFILL)
        assert conn.execute(_ALL).fetchall() == by_writer


PREVIOUS = "2026_12_02_event_ids"
_ALL = _HELD + " ORDER BY 1, 2, 3"
