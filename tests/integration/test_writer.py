"""The batch writer on a real PostgreSQL: idempotent, projection forward-only, nothing dropped."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg import errors
from sqlalchemy.engine import URL

from auditor.config import libpq_conninfo
from auditor.sample import generate
from auditor.store.receipts import Receipt, new_receipt_id
from auditor.store.writer import store_batch
from tests.helpers import from_sample, om_message, receipt

Conn = psycopg.Connection[Any]


def projection(conn: Conn, interaction_id: str) -> dict[str, Any]:
    cur = conn.execute(
        "SELECT state, capabilities, user_data, accounts, event_count, first_event_id,"
        " last_event_id, completed_at IS NOT NULL AS completed, last_reference_id,"
        " media_type FROM interactions WHERE interaction_id = %s",
        (interaction_id,),
    )
    row = cur.fetchone()
    assert row is not None, interaction_id
    names = [d.name for d in cur.description or []]
    return dict(zip(names, row, strict=True))


def counts(conn: Conn) -> tuple[int, int, int]:
    row = conn.execute(
        "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM interactions),"
        " (SELECT count(*) FROM quarantine)"
    ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


def test_sample_batch_is_stored_once_and_a_replay_changes_nothing(conn: Conn) -> None:
    lines = generate(interactions=25, seed=11)
    batch = [from_sample(line) for line in lines]
    first = store_batch(conn, batch)
    assert (first.received, first.stored, first.duplicates, first.quarantined) == (
        len(batch),
        len(batch),
        0,
        0,
    )
    before = counts(conn)
    snapshot = conn.execute("SELECT * FROM interactions ORDER BY interaction_id").fetchall()
    again = store_batch(conn, batch)
    assert (again.stored, again.duplicates, again.quarantined) == (0, len(batch), 0)
    assert counts(conn) == before
    assert conn.execute("SELECT * FROM interactions ORDER BY interaction_id").fetchall() == snapshot


def test_several_events_of_one_interaction_in_one_batch_project_the_latest(conn: Conn) -> None:
    batch = [
        receipt(om_message("I-1", "Invited", user_data={"a": 1}), at=0),
        receipt(om_message("I-1", "Processing", reference_id=1, user_data={"a": 2}), at=1),
        receipt(
            om_message(
                "I-1",
                "Processing",
                notification_type="PropertiesUpdated",
                reference_id=2,
                user_data={"a": 2, "b": 3},
            ),
            at=2,
        ),
    ]
    assert store_batch(conn, batch).stored == 3
    row = projection(conn, "I-1")
    assert row["state"] == "Processing"
    assert row["user_data"] == {"a": 2, "b": 3}
    assert row["event_count"] == 3
    assert row["last_event_id"] - row["first_event_id"] == 2
    assert row["last_reference_id"] == "2"


def test_projection_accumulates_across_batches_and_completes(conn: Conn) -> None:
    store_batch(conn, [receipt(om_message("I-2", "Invited", user_data={"k": "v"}), at=0)])
    store_batch(conn, [receipt(om_message("I-2", "Processing", reference_id=5), at=1)])
    row = projection(conn, "I-2")
    assert (row["state"], row["event_count"]) == ("Processing", 2)
    assert row["user_data"] == {"k": "v"}, "an event without userData keeps the last known"
    store_batch(conn, [receipt(om_message("I-2", "Completed", reference_id=6), at=2)])
    row = projection(conn, "I-2")
    assert (row["state"], row["completed"], row["event_count"]) == ("Completed", True, 3)


@pytest.mark.parametrize("order", ["sender first", "receiver first"])
def test_transfer_shows_the_receiving_agent_whichever_session_reports_first(
    conn: Conn, order: str
) -> None:
    sender_done = receipt(om_message("T-1", "Completed", reference_id=9), account="agent001")
    receiver_invited = receipt(
        om_message("T-1", "Invited", capabilities=["Accept"]), account="agent002"
    )
    store_batch(conn, [receipt(om_message("T-1", "Processing", reference_id=8), at=-5)])
    batches = [[sender_done], [receiver_invited]]
    for batch in batches if order == "sender first" else reversed(batches):
        store_batch(conn, batch)
    row = projection(conn, "T-1")
    assert row["state"] == "Invited"
    assert row["capabilities"] == ["Accept"]
    assert row["accounts"] == ["agent001", "agent002"]
    assert row["completed"] is False
    store_batch(
        conn, [receipt(om_message("T-1", "Completed", reference_id=1), account="agent002", at=9)]
    )
    assert projection(conn, "T-1")["completed"] is True


def test_a_replayed_older_event_never_moves_the_projection_backwards(conn: Conn) -> None:
    old = receipt(om_message("B-1", "Invited"), at=0)
    store_batch(conn, [old])
    store_batch(conn, [receipt(om_message("B-1", "Completed", reference_id=2), at=1)])
    store_batch(conn, [old])  # a spool replay of the first batch
    row = projection(conn, "B-1")
    assert (row["state"], row["event_count"]) == ("Completed", 2)


def test_malformed_messages_are_quarantined_verbatim_with_their_reason(conn: Conn) -> None:
    raws: list[str | bytes] = ["{truncated", b"\xff\xfe binary \x00", "[1,2,3]"]
    result = store_batch(conn, [receipt(raw) for raw in raws])
    assert (result.stored, result.quarantined) == (0, 3)
    rows = conn.execute("SELECT raw, reason FROM quarantine ORDER BY id").fetchall()
    assert [bytes(r[0]) for r in rows] == [b"{truncated", b"\xff\xfe binary \x00", b"[1,2,3]"]
    assert all(r[1] for r in rows)
    assert store_batch(conn, [receipt(raw) for raw in raws]).quarantined == 3, "new receipts"


def test_a_row_postgresql_refuses_is_quarantined_and_the_rest_of_the_batch_stored(
    conn: Conn,
) -> None:
    # Python reads 1.5e-99999 as 0.0; PostgreSQL's numeric cannot hold the exponent.
    poison = receipt('{"data": {"n": 1.5e-99999}}', at=5)
    good = [receipt(om_message(f"G-{n}", "Invited"), at=n) for n in range(9)]
    result = store_batch(conn, [*good[:5], poison, *good[5:]])
    assert (result.stored, result.quarantined, result.duplicates) == (9, 1, 0)
    reason = conn.execute("SELECT reason FROM quarantine").fetchone()
    assert reason is not None
    assert "PostgreSQL refused it: 22003" in reason[0]


def test_unknown_messages_are_events_without_projection(conn: Conn) -> None:
    result = store_batch(
        conn,
        [receipt('{"channel": "/v2/me/calls", "data": {"messageType": "CallStateChangeMessage"}}')],
    )
    assert result.stored == 1
    assert counts(conn)[1] == 0
    row = conn.execute("SELECT channel, message_type FROM events").fetchone()
    assert row == ("/v2/me/calls", "CallStateChangeMessage")


def test_snapshot_receipts_are_marked_as_snapshots(conn: Conn) -> None:
    store_batch(conn, [receipt(om_message("S-1", "Processing"), kind="snapshot")])
    assert conn.execute("SELECT kind FROM events").fetchone() == ("snapshot",)
    assert projection(conn, "S-1")["state"] == "Processing"


def test_ids_follow_arrival_order_within_a_batch(conn: Conn) -> None:
    batch = [receipt(om_message(f"O-{n}", "Invited"), at=n) for n in range(50)]
    store_batch(conn, batch)
    ids = [r[0] for r in conn.execute("SELECT interaction_id FROM events ORDER BY id")]
    assert ids == [f"O-{n}" for n in range(50)]


def test_a_month_whose_partition_cannot_be_made_is_stored_in_the_default_partition(
    conn: Conn,
) -> None:
    # A row of March 2031 already sits in the default partition (no monthly one existed), so
    # that month's partition can no longer be created; the writer must still store its rows.
    conn.execute(
        "INSERT INTO events (receipt_id, received_at, account, payload)"
        " VALUES (gen_random_uuid(), '2031-03-05T00:00:00Z', 'x', '{}')"
    )
    march = Receipt(
        new_receipt_id(),
        datetime(2031, 3, 10, tzinfo=UTC),
        "agent001",
        None,
        om_message("D-1", "Invited"),
    )
    assert store_batch(conn, [march, receipt(om_message("D-2", "Invited"))]).stored == 2
    row = conn.execute(
        "SELECT count(*) FROM events_default WHERE received_at >= '2031-03-01T00:00:00Z'"
    ).fetchone()
    assert row == (2,)
    assert conn.execute("SELECT to_regclass('events_2031_03')").fetchone() == (None,)


def test_writers_of_one_database_commit_one_batch_at_a_time(fresh_db: URL) -> None:
    url = libpq_conninfo(fresh_db)
    with psycopg.connect(url) as first, psycopg.connect(url) as second:
        store_batch(first, [receipt(om_message("L-1", "Invited"))])  # lock held until commit
        second.execute("SET lock_timeout = '300ms'")
        with pytest.raises(errors.LockNotAvailable):
            store_batch(second, [receipt(om_message("L-2", "Invited"))])
        second.rollback()

        done = threading.Event()

        def write_second() -> None:
            with psycopg.connect(url) as third:
                store_batch(third, [receipt(om_message("L-3", "Invited"))])
                third.commit()
            done.set()

        thread = threading.Thread(target=write_second)
        thread.start()
        assert not done.wait(0.3), "the second writer must wait for the first to commit"
        first.commit()
        thread.join(10)
        assert done.is_set()
        ids = first.execute("SELECT interaction_id FROM events ORDER BY id").fetchall()
        assert ids == [("L-1",), ("L-3",)]
