"""The writer compares an interaction's first event in a batch with the map it stored last
(auditor.store.userdata_values.LastMaps) only when PostgreSQL confirms that map is still the
interaction's latest. Each test here breaks that claim one way (a rollback, a savepoint, another
writer, a purge, a second database, the projection rebuilt, a full cache) and checks that
every value any stored event holds still has its user_data_values row, and so is found."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import URL

from auditor.config import libpq_conninfo
from auditor.store import projection_rebuild, queries, userdata, userdata_values
from auditor.store.userdata import EVENT_USER_DATA_SQL
from auditor.store.writer import store_batch
from tests.helpers import om_message, receipt
from tests.retention.support import run as purge_older_than
from tests.retention.support import store_month

Conn = psycopg.Connection[Any]

_CARRIED = EVENT_USER_DATA_SQL.replace("payload", "e.payload")
# Every (interaction, key, value) a stored event holds that no row of its interaction holds.
_MISSING = f"""
SELECT e.interaction_id, kv.key, kv.value
FROM events AS e,
     jsonb_each(CASE WHEN jsonb_typeof({_CARRIED}) = 'object' THEN {_CARRIED}
                ELSE '{{}}'::jsonb END) AS kv
WHERE e.interaction_id IS NOT NULL
  AND NOT EXISTS (SELECT FROM user_data_values AS v
                  WHERE v.interaction_id = e.interaction_id
                    AND v.changed @> jsonb_build_object(kv.key, kv.value))
ORDER BY 1, 2
"""


def _missing(conn: Conn) -> list[tuple[Any, ...]]:
    return conn.execute(_MISSING).fetchall()  # type: ignore[arg-type]


def _rows(conn: Conn, interaction_id: str) -> list[dict[str, Any]]:
    found = conn.execute(
        "SELECT changed FROM user_data_values WHERE interaction_id = %s ORDER BY event_id",
        (interaction_id,),
    )
    return [row[0] for row in found]


def _event(interaction_id: str, user_data: dict[str, Any], at: int) -> Any:
    return receipt(om_message(interaction_id, "Handling", user_data=user_data), at=at)


def _found(conn: Conn, key: str, value: str, *, ever: bool = False) -> list[str]:
    """Interaction ids an exact user-data search finds (current value, or any ever held)."""
    flt = queries.InteractionFilter({}, user_data=(userdata.parse_filter(key, value),), ever=ever)
    rows = queries.search_interactions(conn, flt, newest_first=True, limit=50)
    return [row.interaction_id for row in rows]


@pytest.fixture
def db(fresh_db: URL) -> Iterator[Conn]:
    with psycopg.connect(libpq_conninfo(fresh_db), autocommit=True) as conn:
        yield conn


def test_across_batches_only_the_changed_values_are_written(conn: Conn) -> None:
    store_batch(conn, [_event("X", {"Case": "4711", "Step": 1}, 0)])
    store_batch(conn, [_event("X", {"Case": "4711", "Step": 1}, 1)])  # the same map
    store_batch(conn, [_event("X", {"Case": "4711", "Step": 2}, 2)])
    assert _rows(conn, "X") == [{"Case": "4711", "Step": 1}, {"Step": 2}]
    assert _missing(conn) == []


def test_a_batch_rolled_back_is_not_taken_as_stored(db: Conn) -> None:
    with db.transaction():
        store_batch(db, [_event("X", {"Case": "A"}, 0)])
    with db.transaction():
        store_batch(db, [_event("X", {"Case": "B"}, 1)])
        raise psycopg.Rollback()  # as when the drain's commit fails
    with db.transaction():
        # the same map as the rolled-back batch: compared with it, nothing would be written
        store_batch(db, [_event("X", {"Case": "B"}, 2)])
    assert _missing(db) == []
    assert _found(db, "userData.Case", "B") == ["X"]


def test_a_batch_rolled_back_to_a_savepoint_is_not_taken_as_stored(conn: Conn) -> None:
    store_batch(conn, [_event("X", {"Case": "A"}, 0)])
    with conn.transaction():
        store_batch(conn, [_event("X", {"Case": "B"}, 1)])
        raise psycopg.Rollback()
    store_batch(conn, [_event("X", {"Case": "B"}, 2)])
    assert _missing(conn) == []
    assert _found(conn, "userData.Case", "B") == ["X"]


def test_two_writers_sharing_an_interaction_each_keep_every_value_found(fresh_db: URL) -> None:
    info = libpq_conninfo(fresh_db)
    with (
        psycopg.connect(info, autocommit=True) as one,
        psycopg.connect(info, autocommit=True) as two,
    ):
        maps = [
            (one, {"Case": "A", "Step": 1}),
            (two, {"Case": "B", "Step": 1}),
            (one, {"Case": "B", "Step": 1}),  # one's own last map was Case A
            (two, {"Case": "A", "Step": 2}),
            (one, {"Case": "A", "Step": 2}),
        ]
        for at, (writer, user_data) in enumerate(maps):
            with writer.transaction():
                store_batch(writer, [_event("X", user_data, at)])
        assert _missing(one) == []
        assert _found(one, "userData.Case", "A") == ["X"]
        assert _found(one, "userData.Step", "2") == ["X"]


def test_an_interaction_forgotten_by_a_purge_and_seen_again_writes_its_whole_map(
    db: Conn,
) -> None:
    with db.transaction():
        store_month(db, 2023, 1, ["P-1"])
    purge_older_than(db, 24)
    assert _rows(db, "P-1") == []  # forgotten with its partition
    with db.transaction():
        # a later event reuses the id, with the map this connection stored before the purge
        store_month(db, 2026, 11, ["P-1"])
    assert _missing(db) == []
    assert _found(db, "userData.Case", "P-1") == ["P-1"]


def test_each_database_has_its_own_memory(fresh_db: URL, server_url: URL, template_db: str) -> None:
    """The same interaction, map and event id in two new databases of one process: the second
    is not taken to hold what the first stored."""
    other = f"auditor_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(libpq_conninfo(server_url), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{other}" TEMPLATE "{template_db}"')  # type: ignore[arg-type]
    try:
        ids = []
        for url in (fresh_db, server_url.set(database=other)):
            with psycopg.connect(libpq_conninfo(url)) as conn:
                ids.append(store_batch(conn, [_event("X", {"Case": "A"}, 0)]).last_event_id)
                assert _rows(conn, "X") == [{"Case": "A"}]
                conn.commit()
        assert ids[0] == ids[1]
    finally:
        with psycopg.connect(libpq_conninfo(server_url), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{other}" WITH (FORCE)')  # type: ignore[arg-type]


def test_a_rebuilt_projection_keeps_every_value_found(db: Conn) -> None:
    with db.transaction():
        store_batch(db, [_event("X", {"Case": "A"}, 0), _event("Y", {"Case": "A"}, 1)])
    with db.transaction():
        # the projection loses Y's latest userData (as a wrong row would): rebuild puts it back
        db.execute("UPDATE interactions SET user_data_event_id = NULL WHERE interaction_id = 'Y'")
    projection_rebuild.rebuild(db)
    db.autocommit = True
    with db.transaction():
        store_batch(db, [_event("X", {"Case": "A"}, 2), _event("Y", {"Case": "A"}, 3)])
    assert _missing(db) == []
    assert sorted(_found(db, "userData.Case", "A")) == ["X", "Y"]


def test_an_interaction_the_bounded_memory_forgot_writes_its_whole_map(conn: Conn) -> None:
    known = userdata_values.last_maps(conn)
    known.size = 2
    store_batch(conn, [_event(i, {"Case": "A"}, n) for n, i in enumerate("XYZ")])
    assert len(known) == 2
    assert known.get("X") is None
    store_batch(conn, [_event(i, {"Case": "A"}, 10 + n) for n, i in enumerate("XYZ")])
    assert _rows(conn, "X") == [{"Case": "A"}, {"Case": "A"}]
    assert _rows(conn, "Y") == [{"Case": "A"}]
    assert _missing(conn) == []


def test_a_number_read_inexactly_is_indexed_from_the_payload_and_never_remembered(
    conn: Conn,
) -> None:
    """orjson reads 123456789012345679.0 as a float, 123456789012345680: such a map's rows come
    from the stored payload instead, exact."""
    maps = [
        ("A", "123456789012345678.0"),
        ("A", "123456789012345679.0"),  # the same float
        ("B", "123456789012345679.0"),
        ("B", "7"),
    ]
    for n, (case, big) in enumerate(maps):
        raw = om_message("X", "Handling", user_data={"Case": case}).replace(
            f'"Case": "{case}"', f'"Case": "{case}", "Big": {big}'
        )
        assert big in raw
        store_batch(conn, [receipt(raw, at=n)])
    assert userdata_values.last_maps(conn).get("X") == (
        store_batch(conn, [_event("Y", {"Case": "A"}, 9)]).last_event_id - 1,  # type: ignore[operator]
        {"Case": "B", "Big": 7},
    )
    assert _missing(conn) == []
    assert _found(conn, "userData.Big", "123456789012345679", ever=True) == ["X"]
    assert _found(conn, "userData.Big", "7") == ["X"]
