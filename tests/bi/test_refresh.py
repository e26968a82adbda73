"""The summaries change speed, never answers: every view reads the same before and after
auditor_bi_refresh(), and stays exact for events stored after it."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
import pytest

from auditor.bi.refresh import pending_events, refresh_once
from auditor.store.receipts import Receipt
from auditor.store.writer import store_batch
from tests.bi import fixture

Conn = psycopg.Connection[Any]

VIEWS = {
    "agent_segments": "interaction_id, account",
    "user_data_changes": "event_id, key",
    "lifecycle_findings": "event_id, code",
    "interactions": "interaction_id",
    "daily_volumes": "day, media_type, state, notification_type, account",
}


def _snapshot(conn: Conn) -> dict[str, list[tuple[Any, ...]]]:
    return {
        view: conn.execute(f"SELECT * FROM bi.{view} ORDER BY {order}").fetchall()  # type: ignore[arg-type]
        for view, order in VIEWS.items()
    }


def _refresh_all(conn: Conn, batch: int) -> int:
    total = 0
    while consumed := refresh_once(conn, batch):
        total += consumed
    return total


@pytest.fixture
def stored(conn: Conn) -> Conn:
    result = store_batch(conn, fixture.receipts())
    assert result.stored == len(fixture.receipts())
    return conn


@pytest.mark.parametrize("batch", [7, 20_000])
def test_views_answer_the_same_before_and_after_a_refresh(stored: Conn, batch: int) -> None:
    live = _snapshot(stored)
    assert all(live.values())
    pending = pending_events(stored)
    assert pending >= len(fixture.receipts())
    assert _refresh_all(stored, batch) == pending
    assert pending_events(stored) == 0
    stored_rows = stored.execute("SELECT count(*) FROM bi_segments").fetchone()
    assert stored_rows is not None
    assert stored_rows[0] == len(live["agent_segments"])
    assert _snapshot(stored) == live


def test_events_after_a_refresh_are_seen_at_once(stored: Conn) -> None:
    _refresh_all(stored, 20_000)
    late = fixture.message("OM-TRANSFER", "Processing", notification_type="PropertiesUpdated")
    store_batch(
        stored,
        [
            Receipt(
                uuid.uuid4(),
                fixture.at(200),
                "agent002",
                fixture.CHANNEL,
                json.dumps(late),
            )
        ],
    )
    codes = stored.execute(
        "SELECT code FROM bi.lifecycle_findings WHERE interaction_id = 'OM-TRANSFER'"
    ).fetchall()
    assert sorted(codes) == [("EVENT_AFTER_COMPLETED",), ("STATE_OUT_OF_ORDER",)]
    segment = stored.execute(
        "SELECT outcome, event_count FROM bi.agent_segments"
        " WHERE interaction_id = 'OM-TRANSFER' AND account = 'agent002'"
    ).fetchone()
    assert segment == ("open", 5)
    before = _snapshot(stored)
    assert refresh_once(stored) == 1
    assert _snapshot(stored) == before


def test_the_writer_role_may_refresh(conn: Conn) -> None:
    row = conn.execute(
        "SELECT has_function_privilege('auditor_writer', 'auditor_bi_refresh(integer)',"
        " 'EXECUTE'), has_function_privilege('auditor_bi', 'auditor_bi_refresh(integer)',"
        " 'EXECUTE')"
    ).fetchone()
    assert row == (True, False)
