"""An exact user-data search on events reads its page in one pass, by bitmap heap scans
(auditor.store.userdata.reading_candidates): the answer is the same as the keys-first read's,
and the planner setting it changes for that statement is put back."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import URL

from auditor.config import libpq_conninfo
from auditor.store import queries, userdata
from auditor.store.writer import store_batch
from tests.helpers import om_message, receipt

Conn = psycopg.Connection[Any]


def _search(conn: Conn, **filters: str) -> list[int]:
    flt = queries.EventFilter(
        {}, user_data=tuple(userdata.parse_filter(k, v) for k, v in filters.items())
    )
    return [row.id for row in queries.search_events(conn, flt, newest_first=True, limit=3)]


@pytest.fixture
def stored(conn: Conn) -> list[int]:
    maps = [("A", "4711"), ("B", "4712"), ("A", "4711"), ("C", "4711"), ("A", "4713")]
    result = store_batch(
        conn,
        [
            receipt(om_message(iid, "Handling", user_data={"Case": case}), at=n)
            for n, (iid, case) in enumerate(maps)
        ],
    )
    assert result.last_event_id is not None
    return list(range(result.last_event_id - 4, result.last_event_id + 1))


@pytest.mark.parametrize("before", ["on", "off"])
def test_the_index_scan_setting_is_put_back_after_the_search(
    conn: Conn, stored: list[int], before: str
) -> None:
    conn.execute(f"SET enable_indexscan = {before}")  # type: ignore[arg-type]
    assert _search(conn, **{"userData.Case": "4711"}) == [stored[3], stored[2], stored[0]]
    assert conn.execute("SHOW enable_indexscan").fetchone() == (before,)


def test_a_prefix_alone_leaves_the_planner_its_choice(conn: Conn, stored: list[int]) -> None:
    assert _search(conn, **{"userData.Case": "^471"}) == stored[:1:-1]
    assert conn.execute("SHOW enable_indexscan").fetchone() == ("on",)


def test_the_search_statement_runs_with_index_scans_off_on_an_autocommit_connection(
    session_db: URL,
) -> None:
    # The API's connections are in autocommit: a transaction-local setting made by a
    # statement of its own would be gone before the search statement ran.
    flt = (userdata.parse_filter("userData.Case", "4711"),)
    with psycopg.connect(libpq_conninfo(session_db), autocommit=True) as auto:
        with userdata.reading_candidates(auto, flt):
            assert auto.execute("SHOW enable_indexscan").fetchone() == ("off",)
        assert auto.execute("SHOW enable_indexscan").fetchone() == ("on",)


def _pages(conn: Conn, newest_first: bool, **filters: str) -> list[list[int]]:
    """Every page of 2, in turn, by cursor."""
    flt = queries.EventFilter(
        {}, user_data=tuple(userdata.parse_filter(k, v) for k, v in filters.items())
    )
    pages: list[list[int]] = []
    after = None
    while True:
        rows = queries.search_events(conn, flt, newest_first=newest_first, limit=2, after_id=after)
        if not rows:
            return pages
        pages.append([row.id for row in rows])
        after = rows[-1].id


@pytest.mark.parametrize("newest_first", [True, False])
@pytest.mark.parametrize(
    "filters",
    [{"userData.Case": "4711"}, {"userData.Case": "4711", "userData.Step": "2"}],
    ids=["one filter", "two filters"],
)
def test_reading_each_candidate_newest_first_gives_the_same_pages_as_the_bitmap(
    conn: Conn, monkeypatch: pytest.MonkeyPatch, newest_first: bool, filters: dict[str, str]
) -> None:
    maps = [("A", "4711", 1), ("B", "4712", 2), ("A", "4711", 2), ("C", "4711", 2)]
    maps += [("A", "4713", 2), ("A", "4711", 2), ("C", "4711", 3), ("D", "4711", 2)]
    store_batch(
        conn,
        [
            receipt(om_message(iid, "Handling", user_data={"Case": case, "Step": step}), at=n)
            for n, (iid, case, step) in enumerate(maps)
        ],
    )
    bitmap = _pages(conn, newest_first, **filters)
    monkeypatch.setattr(userdata, "MANY_EVENTS", 0)  # every candidate set counts as large
    each = _pages(conn, newest_first, **filters)
    assert each == bitmap
    assert sum(len(page) for page in each) == (6 if len(filters) == 1 else 4)
    assert conn.execute("SHOW enable_sort").fetchone() == ("on",)
    assert conn.execute("SHOW enable_indexscan").fetchone() == ("on",)


def test_a_value_held_by_few_interactions_with_many_events_is_read_candidate_by_candidate(
    conn: Conn, stored: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    flt = (userdata.parse_filter("userData.Case", "4711"),)
    with conn.transaction(), userdata.reading_candidates(conn, flt) as each:
        assert not each  # 3 events: one bitmap over them
        assert conn.execute("SHOW enable_indexscan").fetchone() == ("off",)
    monkeypatch.setattr(userdata, "MANY_EVENTS", 2)
    with conn.transaction(), userdata.reading_candidates(conn, flt) as each:
        assert each
        assert conn.execute("SHOW enable_sort").fetchone() == ("off",)
        assert conn.execute("SHOW enable_indexscan").fetchone() == ("on",)
    monkeypatch.setattr(userdata, "CANDIDATE_ROWS", 1)  # more candidates than that: a bitmap
    with conn.transaction(), userdata.reading_candidates(conn, flt) as each:
        assert not each
    assert conn.execute("SHOW enable_sort").fetchone() == ("on",)
