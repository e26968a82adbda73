"""The store's paged timeline: keyset pages by event id, user-data diffs and coverage gaps that
are the same whatever the page size."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest

from auditor.store import timeline
from auditor.store.writer import store_batch
from tests.helpers import T0, om_message, receipt


def _long_interaction(conn: psycopg.Connection[Any], events: int) -> None:
    receipts = []
    for n in range(events):
        user_data = {"Case": "4711", "Step": n // 3} if n % 4 != 1 else None  # some carry none
        if n % 7 == 6:
            user_data = {"Case": "4711"}  # a key removed
        receipts.append(
            receipt(
                om_message("long", "Handling", user_data=user_data),
                at=n * 10,
                account=f"agent00{n % 2}",
            )
        )
    store_batch(conn, receipts)
    conn.execute(
        "INSERT INTO coverage_intervals (account, worker_id, channels, started_at, heartbeat_at,"
        " ended_at, end_reason) VALUES ('agent000', 'w', '{}', %s, %s, %s, 'disconnected')",
        (T0, T0 + timedelta(seconds=1), T0 + timedelta(seconds=1)),
    )


def _all_entries(
    conn: psycopg.Connection[Any], limit: int
) -> tuple[list[timeline.TimelineEntry], list[timeline.TimelinePage]]:
    pages = list(timeline.timeline_pages(conn, "long", limit=limit))
    return [e for p in pages for e in p.entries], pages


@pytest.mark.parametrize("limit", [1, 3, 7, 50])
def test_pages_join_into_the_same_timeline_as_one_page_with_the_same_diffs_and_gaps(
    conn: psycopg.Connection[Any], limit: int
) -> None:
    _long_interaction(conn, 40)
    whole = timeline.timeline_page(conn, "long", limit=1000)
    assert whole is not None
    assert whole.next_after is None
    assert len(whole.entries) == 40
    paged, pages = _all_entries(conn, limit)
    assert len(pages) == -(-40 // limit)
    assert [e.event_id for e in paged] == [e.event_id for e in whole.entries]
    assert [e.user_data_diff for e in paged] == [e.user_data_diff for e in whole.entries]
    assert all(p.gaps == whole.gaps for p in pages)
    assert all(len(p.entries) <= limit for p in pages)
    assert pages[-1].next_after is None
    assert all(p.next_after == p.entries[-1].event_id for p in pages[:-1])


def test_a_diff_on_a_later_page_compares_with_the_last_user_data_before_the_page(
    conn: psycopg.Connection[Any],
) -> None:
    store_batch(
        conn,
        [
            receipt(om_message("d", "Routing", user_data={"a": 1, "b": 2})),
            receipt(om_message("d", "Handling"), at=1),  # carries no userData
            receipt(om_message("d", "Handling", user_data={"a": 1, "b": 3}), at=2),
        ],
    )
    first = timeline.timeline_page(conn, "d", limit=2)
    assert first is not None
    assert first.next_after is not None
    second = timeline.timeline_page(conn, "d", after=first.next_after, limit=2)
    assert second is not None
    assert second.next_after is None
    (entry,) = second.entries
    assert entry.user_data_diff == timeline.UserDataDiff({}, {"b": {"from": 2, "to": 3}}, [])


def test_gaps_of_the_involved_accounts_are_on_every_page(conn: psycopg.Connection[Any]) -> None:
    _long_interaction(conn, 10)
    pages = list(timeline.timeline_pages(conn, "long", limit=4))
    gaps = pages[0].gaps
    # agent000 covered for the first second only; agent001 never
    assert {g.account for g in gaps} == {"agent000", "agent001"}
    assert all(p.gaps == gaps for p in pages)


def test_an_unknown_interaction_has_no_page(conn: psycopg.Connection[Any]) -> None:
    assert timeline.timeline_page(conn, "nope") is None


def test_capabilities_and_user_data_come_from_the_payload_without_a_parser(
    conn: psycopg.Connection[Any],
) -> None:
    store_batch(
        conn,
        [receipt(om_message("c", "Handling", capabilities=["Complete"], user_data={"k": "v"}))],
    )
    page = timeline.timeline_page(conn, "c")
    assert page is not None
    (entry,) = page.entries
    assert entry.capabilities == ["Complete"]
    assert entry.user_data == {"k": "v"}
    assert entry.payload["data"]["openmedia"]["id"] == "c"
