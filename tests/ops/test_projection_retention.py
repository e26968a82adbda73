"""Projection check and rebuild after retention dropped months: the dropped events' share of
each interaction with events left is kept in projection_baseline by the purge, so `check`
reports no false differences, still finds a real corruption, and `rebuild` gives back the
projection the writer kept before the drop."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
from sqlalchemy.engine import URL

from auditor.config import libpq_conninfo
from auditor.store import projection_rebuild
from auditor.store.receipts import Receipt, new_receipt_id
from auditor.store.writer import store_batch
from tests.helpers import om_message
from tests.retention.support import partitions, run

Conn = psycopg.Connection[Any]
Rows = dict[str, tuple[Any, ...]]


def _event(
    conn: Conn, at: datetime, interaction: str, state: str, account: str = "agent001", **kw: Any
) -> None:
    store_batch(
        conn,
        [
            Receipt(
                new_receipt_id(),
                at,
                account,
                "/v2/me/openmedia",
                om_message(interaction, state, **kw),
            )
        ],
    )


def _store(url: URL) -> None:
    """Interactions on both sides of the months retention drops (2023), and within them."""
    with psycopg.connect(libpq_conninfo(url)) as conn:
        jan, feb = datetime(2023, 1, 31, 23, 0, tzinfo=UTC), datetime(2023, 2, 3, tzinfo=UTC)
        nov = datetime(2026, 11, 5, tzinfo=UTC)
        # SPAN: first seen in January (agent002, with userData and a uri-bearing state), on in
        # February, last in November (agent001, no userData): its userData, first event,
        # count and agent002's state come only from dropped months.
        _event(
            conn,
            jan,
            "SPAN",
            "Invited",
            "agent002",
            user_data={"Case": "4711"},
            capabilities=["accept"],
            reference_id=7,
        )
        _event(conn, feb, "SPAN", "Processing", "agent002", capabilities=["complete"])
        _event(conn, nov, "SPAN", "Processing", "agent001")
        _event(conn, feb, "FEB", "Processing", user_data={"Case": "1"})  # both in February
        _event(conn, feb.replace(hour=1), "FEB", "Completed")
        _event(conn, jan, "GONE", "Invited", user_data={"Case": "secret"})  # only January
        _event(conn, nov, "NOV", "Invited", user_data={"Case": "2"})  # only November
        conn.commit()


def _projection(url: URL) -> Rows:
    with psycopg.connect(libpq_conninfo(url)) as conn:
        rows = conn.execute("SELECT * FROM interactions ORDER BY interaction_id").fetchall()
    return {str(r[0]): tuple(r) for r in rows}


def _check(url: URL) -> projection_rebuild.Report:
    with psycopg.connect(libpq_conninfo(url)) as conn:
        report = projection_rebuild.check(conn, chunk=2)  # several folds: boundaries too
        conn.rollback()
    return report


def _purge(url: URL, login_url: Callable[[URL, str], URL]) -> None:
    with psycopg.connect(libpq_conninfo(login_url(url, "retention")), autocommit=True) as conn:
        result = run(conn, 24)
        assert [d["partition"] for d in result.dropped] == ["events_2023_01", "events_2023_02"]
        assert "events_2023_01" not in partitions(conn)


def test_after_a_purge_check_finds_no_difference_and_rebuild_restores_the_projection(
    fresh_db: URL, login_url: Callable[[URL, str], URL]
) -> None:
    _store(fresh_db)
    before = _projection(fresh_db)
    _purge(fresh_db, login_url)  # as the retention login: two purges, one after the other

    after = _projection(fresh_db)
    assert set(after) == {"SPAN", "NOV"}  # GONE and FEB had no event left: forgotten
    assert after["SPAN"] == before["SPAN"]  # the projection still counts the dropped events
    with psycopg.connect(libpq_conninfo(fresh_db)) as conn:
        baseline = conn.execute(
            "SELECT b.interaction_id, b.event_count, b.user_data,"
            " b.first_event_id = i.first_event_id"
            " FROM projection_baseline AS b JOIN interactions AS i USING (interaction_id)"
        ).fetchall()
    # Only what interactions with events left need; the forgotten ones' user data is gone.
    assert baseline == [("SPAN", 2, {"Case": "4711"}, True)]

    report = _check(login_url(fresh_db, "reader"))
    assert report.differences == []
    assert (report.events, report.interactions, report.baseline) == (2, 2, 1)

    # A real corruption is still found, in what only the dropped events determine as well.
    with psycopg.connect(libpq_conninfo(fresh_db), autocommit=True) as conn:
        conn.execute(
            "UPDATE interactions SET event_count = 1, user_data = NULL"
            " WHERE interaction_id = 'SPAN'"
        )
    [found] = _check(fresh_db).differences
    assert (found.interaction_id, found.kind) == ("SPAN", "differs")
    assert set(found.columns) == {"event_count", "user_data"}

    with psycopg.connect(libpq_conninfo(login_url(fresh_db, "writer"))) as conn:
        fixed = projection_rebuild.rebuild(conn, chunk=2)
    assert fixed.fixed == 1
    assert _projection(fresh_db) == after
    assert _projection(fresh_db)["SPAN"] == before["SPAN"]

    # The writer goes on after the purge: the baseline and the new event fold together.
    with psycopg.connect(libpq_conninfo(fresh_db)) as conn:
        _event(conn, datetime(2026, 11, 6, tzinfo=UTC), "SPAN", "Completed", "agent002")
        conn.commit()
    assert _check(fresh_db).differences == []
    with psycopg.connect(libpq_conninfo(fresh_db)) as conn:
        row = conn.execute(
            "SELECT event_count, account_states->'agent002'->>'state' FROM interactions"
            " WHERE interaction_id = 'SPAN'"
        ).fetchone()
    assert row == (4, "Completed")


def test_an_interaction_whose_last_event_goes_in_a_later_purge_is_forgotten_everywhere(
    fresh_db: URL, login_url: Callable[[URL, str], URL]
) -> None:
    with psycopg.connect(libpq_conninfo(fresh_db)) as conn:
        _event(conn, datetime(2023, 1, 9, tzinfo=UTC), "TWO", "Invited", user_data={"a": 1})
        _event(conn, datetime(2023, 2, 9, tzinfo=UTC), "TWO", "Completed")
        conn.commit()
    with psycopg.connect(libpq_conninfo(login_url(fresh_db, "retention")), autocommit=True) as c:
        run(c, 24)  # January, then February: TWO has a baseline row in between
    with psycopg.connect(libpq_conninfo(fresh_db)) as conn:
        assert conn.execute("SELECT count(*) FROM projection_baseline").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM interactions").fetchone() == (0,)
    assert _check(fresh_db).differences == []
