"""User-data filters in the store: exact and prefix, ANDed, current vs ever vs at the event,
and PostgreSQL answering exact ones from the index of user_data_values."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from psycopg import sql

from auditor.store import queries, userdata
from auditor.store.userdata import BadUserDataFilter, UserDataFilter, parse_filter
from auditor.store.writer import store_batch
from tests.helpers import om_message, receipt


def _seed(conn: psycopg.Connection[Any]) -> None:
    store_batch(
        conn,
        [
            receipt(om_message("a", "Routing", user_data={"Case": "4711", "Email": "abc@x.org"})),
            receipt(
                om_message("a", "Handling", user_data={"Case": "4712", "Email": "abc@x.org"}), at=1
            ),
            receipt(om_message("b", "Routing", user_data={"Case": "4711", "Step": 3}), at=2),
            receipt(
                om_message("c", "Routing", user_data={"Case": "9", "Email": "zabc@x.org"}), at=3
            ),
            receipt(om_message("c", "Handling"), at=4),  # no userData
        ],
    )


def _interactions(
    conn: psycopg.Connection[Any], *filters: UserDataFilter, ever: bool = False
) -> list[str]:
    rows = queries.search_interactions(
        conn,
        queries.InteractionFilter({}, user_data=filters, ever=ever),
        newest_first=False,
        limit=100,
    )
    return [r[1] for r in rows]


def _events(conn: psycopg.Connection[Any], *filters: UserDataFilter) -> list[tuple[str, int]]:
    rows = queries.search_events(
        conn, queries.EventFilter({}, user_data=filters), newest_first=False, limit=100
    )
    ids = [r[0] for r in rows]
    found = conn.execute(
        "SELECT interaction_id, id FROM events WHERE id = ANY(%s) ORDER BY id", (ids,)
    ).fetchall()
    return [(str(r[0]), int(r[1])) for r in found]


def test_interactions_match_the_current_value_or_with_ever_any_value_held(
    conn: psycopg.Connection[Any],
) -> None:
    _seed(conn)
    case = UserDataFilter("Case", "4711")
    assert _interactions(conn, case) == ["b"]  # a's Case is now 4712
    assert _interactions(conn, case, ever=True) == ["a", "b"]
    assert _interactions(conn, UserDataFilter("Case", "4712"), ever=True) == ["a"]
    # several: each held at some time (4711 and Step 3 only by b; a's email with 4712)
    step = UserDataFilter("Step", "3")
    assert _interactions(conn, case, step, ever=True) == ["b"]
    email = UserDataFilter("Email", "abc@x.org")
    assert _interactions(conn, UserDataFilter("Case", "4712"), email, ever=True) == ["a"]
    assert _interactions(conn, case, email, ever=True) == ["a"]
    assert _interactions(conn, UserDataFilter("Case", "9"), step, ever=True) == []


def test_filters_are_anded_and_prefix_matches_the_start_of_text_only(
    conn: psycopg.Connection[Any],
) -> None:
    _seed(conn)
    assert _interactions(conn, UserDataFilter("Email", "abc", prefix=True)) == ["a"]
    assert (
        _interactions(
            conn, UserDataFilter("Email", "abc", prefix=True), UserDataFilter("Case", "4711")
        )
        == []
    )
    assert _interactions(
        conn, UserDataFilter("Email", "abc", prefix=True), UserDataFilter("Case", "4712")
    ) == ["a"]
    # a number matches the digits that spell it
    assert _interactions(conn, UserDataFilter("Step", "3")) == ["b"]
    assert _interactions(conn, UserDataFilter("Step", "3", prefix=True)) == []  # not text


def test_events_match_the_value_at_that_event(conn: psycopg.Connection[Any]) -> None:
    _seed(conn)
    found = _events(conn, UserDataFilter("Case", "4711"))
    assert [iid for iid, _ in found] == ["a", "b"]
    assert [iid for iid, _ in _events(conn, UserDataFilter("Case", "9"))] == ["c"]


def _plan(conn: psycopg.Connection[Any], statement: Any, *params: Any) -> str:
    conn.execute("SET LOCAL enable_seqscan = off")
    rows = conn.execute(sql.SQL("EXPLAIN ") + statement, params).fetchall()
    return "\n".join(str(r[0]) for r in rows)


def _statement(clauses: list[Any], head: str) -> Any:
    return sql.SQL(head) + queries.where(clauses)


def test_postgresql_answers_exact_filters_from_the_user_data_values_index(
    conn: psycopg.Connection[Any],
) -> None:
    _seed(conn)
    for table in ("events", "interactions", "user_data_values"):
        conn.execute(f"ANALYZE {table}")  # type: ignore[arg-type]
    case = (UserDataFilter("Case", "4711"),)
    index = "ix_user_data_values_changed"
    plans = {}
    clauses, params = userdata.event_conditions(case)
    plans["events"] = _plan(conn, _statement(clauses, "SELECT id FROM events"), *params)
    clauses, params = userdata.interaction_conditions(case)
    plans["current"] = _plan(
        conn, _statement(clauses, "SELECT interaction_id FROM interactions"), *params
    )
    clauses, params = userdata.ever_conditions(case, None)
    plans["ever"] = _plan(
        conn, _statement(clauses, "SELECT interaction_id FROM interactions"), *params
    )
    for name, plan in plans.items():
        assert index in plan, (name, plan)
        assert "Seq Scan on user_data_values" not in plan, (name, plan)


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("userData.", "x"),
        ("userData.a b", "x"),
        ("userData.-a", "x"),
        ("userData." + "k" * 129, "x"),
        ("userData.k", "^"),
        ("userData.k", "x\x00"),
        ("userData.k", "v" * 257),
        ("user.k", "x"),
    ],
)
def test_malformed_filters_are_refused_naming_the_parameter(param: str, value: str) -> None:
    with pytest.raises(BadUserDataFilter) as caught:
        parse_filter(param, value)
    assert caught.value.param == param


@given(
    key=st.from_regex(userdata.KEY, fullmatch=True),
    value=st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=50),
    prefix=st.booleans(),
)
def test_a_filter_reads_back_from_the_parameter_it_prints(
    key: str, value: str, prefix: bool
) -> None:
    if prefix and not value:
        return
    flt = UserDataFilter(key, value, prefix)
    assert parse_filter(*flt.as_param) == flt
