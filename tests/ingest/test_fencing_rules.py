"""The fencing rules, as PostgreSQL enforces them for the writer's login: a lease's token
grows at every hand-over and only then; coverage rows, session-log rows and snapshots carry
the token they were made under and are kept only while it is current; notifications are
never fenced. (The SIGSTOP scenario with real workers is in test_fencing.py.)"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql

from auditor.ingest.fencing import snapshot_fence, without_stale_snapshots
from auditor.ingest.leases import _CLAIM
from auditor.store.receipts import Receipt
from tests.logins import LOGINS

Conn = psycopg.Connection[Any]
ACCOUNT = "agent-fenced"


def _as_writer(conn: Conn) -> None:
    conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(LOGINS["writer"])))


def _claim(conn: Conn, worker: str) -> int | None:
    row = conn.execute(_CLAIM, {"account": ACCOUNT, "me": worker, "ttl": 15}).fetchone()
    return None if row is None else int(row[1])


def _expire(conn: Conn) -> None:
    conn.execute(
        "UPDATE account_leases SET expires_at = now() - interval '1 second' WHERE account = %s",
        (ACCOUNT,),
    )


def _open_interval(conn: Conn, fence: int | None, worker: str = "w1") -> int | None:
    row = conn.execute(
        "INSERT INTO coverage_intervals (account, worker_id, channels, started_at,"
        " heartbeat_at, fence) VALUES (%s, %s, '{/v2/me/openmedia}',"
        " now() - interval '1 minute', now() - interval '1 minute', %s) RETURNING id",
        (ACCOUNT, worker, fence),
    ).fetchone()
    return None if row is None else int(row[0])


def _log(conn: Conn, fence: int | None) -> int:
    cur = conn.execute(
        "INSERT INTO session_log (at, account, worker_id, event, fence)"
        " VALUES (now(), %s, 'w1', 'probe', %s)",
        (ACCOUNT, fence),
    )
    return cur.rowcount


def _snapshot(fence: int | None) -> Receipt:
    meta = "" if fence is None else f', "fence": {fence}'
    return Receipt(
        receipt_id=uuid.uuid4(),
        received_at=datetime.now(UTC),
        account=ACCOUNT,
        channel=None,
        raw='{"data": {"messageType": "OpenmediaSnapshot"}, "snapshot": {"items": 0' + meta + "}}",
        kind="snapshot",
    )


def test_the_token_grows_at_every_hand_over_and_only_then(conn: Conn) -> None:
    _as_writer(conn)
    first = _claim(conn, "w1")
    assert first is not None
    assert _claim(conn, "w2") is None  # live: not taken
    assert _claim(conn, "w1") == first  # the holder's re-claim is no hand-over
    _expire(conn)
    assert _claim(conn, "w1") == first  # nor after its own expiry
    _expire(conn)
    second = _claim(conn, "w2")
    assert second is not None
    assert second > first
    _expire(conn)
    third = _claim(conn, "w1")
    assert third is not None
    assert third > second


def test_rows_are_kept_only_under_the_current_token(conn: Conn) -> None:
    _as_writer(conn)
    old = _claim(conn, "w1")
    interval = _open_interval(conn, old)
    assert interval is not None
    assert _log(conn, old) == 1
    _expire(conn)
    new = _claim(conn, "w2")
    # The old holder, resumed: nothing it writes under the old token is kept.
    assert _open_interval(conn, old) is None
    assert _log(conn, old) == 0
    assert _open_interval(conn, None) is None  # nor without a token while a lease is live
    extended = conn.execute(
        "UPDATE coverage_intervals SET heartbeat_at = now() WHERE id = %s", (interval,)
    )
    assert extended.rowcount == 0
    late_close = conn.execute(
        "UPDATE coverage_intervals SET ended_at = now(), heartbeat_at = now(), end_reason = 'x'"
        " WHERE id = %s",
        (interval,),
    )
    assert late_close.rowcount == 0
    # The new holder closes the stale interval at its last heartbeat: that claims nothing.
    closed = conn.execute(
        "UPDATE coverage_intervals SET ended_at = heartbeat_at, end_reason = 'worker lost'"
        " WHERE id = %s",
        (interval,),
    )
    assert closed.rowcount == 1
    assert _open_interval(conn, new, worker="w2") is not None
    assert _log(conn, new) == 1


def test_without_any_lease_rows_need_no_token(conn: Conn) -> None:
    _as_writer(conn)
    assert _open_interval(conn, None) is not None
    assert _log(conn, None) == 1
    assert _open_interval(conn, 12345) is None  # a token no lease has


def test_stale_snapshots_are_left_out_by_the_drain_and_refused_by_the_database(
    conn: Conn,
) -> None:
    _as_writer(conn)
    old = _claim(conn, "w1")
    _expire(conn)
    new = _claim(conn, "w2")
    stale, current = _snapshot(old), _snapshot(new)
    notification = Receipt(uuid.uuid4(), datetime.now(UTC), ACCOUNT, "/v2/me/openmedia", "{}")
    kept, fenced = without_stale_snapshots(conn, [stale, notification, current])
    assert kept == [notification, current]
    assert fenced == 1
    insert = (
        "INSERT INTO events (receipt_id, received_at, kind, account, payload)"
        " VALUES (gen_random_uuid(), now(), 'snapshot', %s, %s::jsonb)"
    )
    conn.execute(insert, (ACCOUNT, current.raw))
    with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
        conn.execute(insert, (ACCOUNT, stale.raw))


@pytest.mark.parametrize(
    ("raw", "fence"),
    [
        ('{"snapshot": {"fence": 7}}', 7),
        ('{"snapshot": {"items": 1}}', None),
        ("not json", None),
        ('{"snapshot": {"fence": "7"}}', 0),
        ('{"snapshot": {"fence": true}}', 0),
        ('{"snapshot": {"fence": 9223372036854775808}}', 0),
    ],
)
def test_a_snapshots_token_is_read_strictly(raw: str, fence: int | None) -> None:
    assert snapshot_fence(raw) == fence
