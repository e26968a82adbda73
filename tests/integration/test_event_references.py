"""The referenceId side table (event_references): the writer fills it with the events, a lookup
by referenceId answers what a scan of events answers while reading only the partitions that
hold the events, and the migration fills it from events stored before it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine, inspect, pool
from sqlalchemy.engine import URL

from auditor.config import libpq_conninfo
from auditor.store import queries, schema
from auditor.store.receipts import Receipt, new_receipt_id
from auditor.store.writer import store_batch
from tests.conftest import _admin, _create_from
from tests.helpers import om_message

Conn = psycopg.Connection[Any]

PREVIOUS = "2026_12_03_chainv2"
# Every (event, referenceId) as the side table holds it, and as events say it should be.
_ROWS = "SELECT event_id, received_at, reference_id FROM event_references ORDER BY event_id"
_EXPECTED = (
    "SELECT id, received_at, reference_id FROM events WHERE reference_id IS NOT NULL ORDER BY id"
)


def _at(month: int, day: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, 9, minute, tzinfo=UTC)


def _receipt(at: datetime, interaction: str, reference: int | None, **kw: Any) -> Receipt:
    return Receipt(
        new_receipt_id(),
        at,
        kw.pop("account", "agent001"),
        "/v2/me/openmedia",
        om_message(interaction, "Handling", reference_id=reference, **kw),
    )


def _spread() -> list[Receipt]:
    """referenceId 7 in four months (two events in May), 8 once, and events without one."""
    return [
        _receipt(_at(3, 5), "A", 7),
        _receipt(_at(3, 5, 1), "A", None, notification_type="NewInteraction"),
        _receipt(_at(4, 9), "B", 8, account="agent002"),
        _receipt(_at(5, 1), "B", 7, account="agent002"),
        _receipt(_at(5, 20), "C", 7),
        _receipt(_at(6, 30), "C", None),
        _receipt(_at(7, 2), "D", 7, account="agent002"),
        _receipt(_at(7, 3), "D", 77),
    ]


def test_the_writer_adds_one_row_per_event_with_a_reference_id(conn: Conn) -> None:
    receipts = _spread()
    store_batch(conn, receipts[:3])
    store_batch(conn, receipts[3:])
    rows = conn.execute(_ROWS).fetchall()
    assert rows == conn.execute(_EXPECTED).fetchall()
    assert [r[2] for r in rows] == ["7", "8", "7", "7", "7", "77"]


def test_a_replayed_batch_and_a_refused_row_leave_exactly_the_stored_events_rows(
    conn: Conn,
) -> None:
    """The slow path (receipts stored before, a row PostgreSQL refuses) stores some of a batch:
    the side table has the rows of exactly those events."""
    receipts = _spread()
    store_batch(conn, receipts[:4])
    # A NUL in a text value: PostgreSQL refuses the row, the bisection quarantines it.
    refused = _receipt(_at(5, 21), "E", 9, user_data={"x": "a\u0000b"})
    result = store_batch(conn, [*receipts[2:], refused])
    assert (result.duplicates, result.quarantined) == (2, 1)
    assert conn.execute(_ROWS).fetchall() == conn.execute(_EXPECTED).fetchall()
    assert len(conn.execute(_ROWS).fetchall()) == 6


def test_a_batch_rolled_back_leaves_no_rows(conn: Conn) -> None:
    with conn.transaction(force_rollback=True):
        store_batch(conn, _spread())
    assert conn.execute(_ROWS).fetchall() == []


def _scan(conn: Conn, flt: queries.EventFilter, newest_first: bool) -> list[int]:
    """The answer as a scan of events gives it (no side table), every page at once."""
    clauses, params = queries._event_where(flt)
    query = (
        psycopg.sql.SQL("SELECT id FROM events")
        + queries.where(clauses)
        + psycopg.sql.SQL(" ORDER BY id DESC" if newest_first else " ORDER BY id")
    )
    return [int(r[0]) for r in conn.execute(query, params)]


def _paged(conn: Conn, flt: queries.EventFilter, newest_first: bool, limit: int) -> list[int]:
    ids: list[int] = []
    after: int | None = None
    while True:
        page = queries.search_events(
            conn, flt, newest_first=newest_first, limit=limit, after_id=after
        )
        ids += [row.id for row in page]
        if len(page) < limit:
            return ids
        after = page[-1].id


@pytest.fixture(scope="module")
def spread_db(server_url: URL, template_db: str) -> Iterator[Conn]:
    """The spread events committed, then one more with referenceId 7 stored later (as_of)."""
    url = _create_from(server_url, template_db)
    with psycopg.connect(libpq_conninfo(url)) as conn:
        store_batch(conn, _spread())
        conn.commit()
        store_batch(conn, [_receipt(_at(8, 1), "F", 7)])
        conn.commit()
        yield conn
    _admin(server_url, f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')


@pytest.mark.parametrize("limit", [1, 2, 100])
@pytest.mark.parametrize("newest_first", [False, True])
def test_a_reference_lookup_pages_to_what_a_scan_of_events_answers(
    spread_db: Conn, limit: int, newest_first: bool
) -> None:
    conn = spread_db
    stored_at = conn.execute("SELECT min(stored_at) FROM events").fetchone()
    assert stored_at is not None  # the first batch's commit: the late event not yet stored
    filters = [
        queries.EventFilter({"referenceId": "7"}),
        queries.EventFilter({"referenceId": "8"}),
        queries.EventFilter({"referenceId": "nope"}),
        queries.EventFilter({"referenceId": "7", "account": "agent002"}),
        queries.EventFilter({"referenceId": "7"}, start=_at(5, 1), end=_at(7, 2)),
        queries.EventFilter({"referenceId": "7"}, as_of=stored_at[0]),
    ]
    answers = []
    for flt in filters:
        expected = _scan(conn, flt, newest_first)
        assert _paged(conn, flt, newest_first, limit) == expected
        answers.append(len(expected))
    # the filters select what they say (so the comparison above is not of empty answers)
    assert answers == [5, 1, 0, 2, 2, 4]


def test_a_reference_export_is_what_a_scan_of_events_exports(conn: Conn) -> None:
    store_batch(conn, _spread())
    flt = queries.EventFilter({"referenceId": "7"})
    rows = [r for chunk in queries.export_events_json(conn, flt, fetch=2) for r in chunk]
    csv = b"".join(c for c, _ in queries.export_events_csv(conn, flt, chunk_rows=2))
    extent = queries.export_extent(conn, flt)
    assert [r.received_at for r in rows] == [_at(3, 5), _at(5, 1), _at(5, 20), _at(7, 2)]
    assert csv.count(b"\n") == 4
    assert extent.earliest == _at(3, 5)
    assert sorted(extent.accounts) == ["agent001", "agent002"]


def test_a_reference_lookup_reads_only_the_partitions_holding_its_events(conn: Conn) -> None:
    """Events in five months; the lookup of a referenceId held in two of them executes the
    index scans of those two partitions only (the others are pruned at run time)."""
    store_batch(conn, _spread())
    conn.execute("ANALYZE events, event_references")
    # Planned as for tables of millions of rows: a few rows fit in one page, and PostgreSQL
    # rightly reads such a partition whole instead of through an index.
    conn.execute("SET LOCAL enable_seqscan = off")
    query, params = queries._events_query(
        queries.EventFilter({"referenceId": "8"}), False, 100, None, False
    )
    plan = "\n".join(
        str(r[0])
        for r in conn.execute(
            psycopg.sql.SQL("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) ") + query,
            params,
        )
    )
    assert "event_references" in plan
    executed = {
        line.split(" on ")[1].split()[0]
        for line in plan.splitlines()
        if " on events_20" in line and "never executed" not in line
    }
    # the page's keys, then its rows: both in the one partition of the event (April)
    assert executed == {"events_2026_04"}, plan
    assert "never executed" in plan, plan


def test_the_migration_fills_the_table_from_events_stored_before_it(fresh_db: URL) -> None:
    """Events stored, the database taken back to the revision before event_references, more
    events stored by that revision's writer (no side table), then upgraded: the rows are those
    of every event with a referenceId."""
    with psycopg.connect(libpq_conninfo(fresh_db)) as conn:
        store_batch(conn, _spread())
        conn.commit()
        by_writer = conn.execute(_ROWS).fetchall()
    assert len(by_writer) == 6
    engine = create_engine(fresh_db, poolclass=pool.NullPool)
    try:
        with engine.begin() as connection:
            schema.downgrade(connection, PREVIOUS)
        with engine.connect() as connection:
            assert "event_references" not in inspect(connection).get_table_names()
        with psycopg.connect(libpq_conninfo(fresh_db)) as conn:
            # What the previous revision stored: events only (the writer's insert would fail).
            conn.execute(
                "INSERT INTO events (receipt_id, received_at, account, reference_id, payload)"
                " VALUES (gen_random_uuid(), %s, 'agent003', '7', '{}'),"
                " (gen_random_uuid(), %s, 'agent003', NULL, '{}')",
                (_at(9, 1), _at(9, 2)),
            )
            conn.commit()
        with engine.begin() as connection:
            schema.upgrade(connection)
        with engine.connect() as connection:
            report = schema.check(connection)
        assert report.ok, report.drift
    finally:
        engine.dispose()
    with psycopg.connect(libpq_conninfo(fresh_db)) as conn:
        rows = conn.execute(_ROWS).fetchall()
        assert rows == conn.execute(_EXPECTED).fetchall()
        assert rows[:6] == by_writer
        assert len(rows) == 7
        answer = queries.search_events(
            conn, queries.EventFilter({"referenceId": "7"}), newest_first=True, limit=10
        )
        assert [r.received_at for r in answer][:2] == [_at(9, 1), _at(7, 2)]
        assert len(answer) == 5


def test_a_lookup_finds_the_events_either_side_of_a_month_boundary(
    conn: Conn,
) -> None:
    """Events one microsecond either side of a month boundary, same referenceId: both found,
    each in its own partition."""
    edge = datetime(2026, 10, 1, tzinfo=UTC)
    store_batch(
        conn,
        [
            _receipt(edge - timedelta(microseconds=1), "G", 5),
            _receipt(edge, "G", 5),
        ],
    )
    answer = queries.search_events(
        conn, queries.EventFilter({"referenceId": "5"}), newest_first=False, limit=10
    )
    assert [r.received_at for r in answer] == [edge - timedelta(microseconds=1), edge]
    parts = conn.execute(
        "SELECT tableoid::regclass::text FROM events WHERE reference_id = '5' ORDER BY id"
    ).fetchall()
    assert parts == [("events_2026_09",), ("events_2026_10",)]
