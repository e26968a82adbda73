"""Coverage flushing on the real PostgreSQL (the test's rolled-back transaction): the
sessions' queued operations reach coverage_intervals and session_log in order, in one
transaction that the flush task owns; a failed flush loses nothing and the next one writes
it all; stale intervals of a dead worker end at their last heartbeat; fenced-off rows are
skipped and counted; and the gaps the read side computes from what was flushed are exactly
the unlistened time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from auditor.ingest.coverage import WORKER_LOST, Coverage, PgCoverageStorage, flush
from auditor.store import leases
from auditor.store.coverage_queries import Gap, coverage

Conn = psycopg.Connection[Any]
# Names of their own: the session database may hold other tests' committed rows (coverage
# of agent001, drain progress of a worker "w1", which would clip these intervals).
_RUN = uuid.uuid4().hex[:8]
ACCOUNT = f"agent-cov-{_RUN}"
W0, W1, W2 = (f"w{i}-{_RUN}" for i in range(3))
CHANNELS = ["/v2/me/openmedia"]


def _t0() -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)


def _rows(conn: Conn, account: str = ACCOUNT) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT worker_id, client_id, started_at, heartbeat_at, ended_at, end_reason"
        " FROM coverage_intervals WHERE account = %s ORDER BY started_at",
        (account,),
    ).fetchall()


def _log(conn: Conn, account: str = ACCOUNT) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT event, detail FROM session_log WHERE account = %s ORDER BY id", (account,)
    ).fetchall()


def test_operations_are_flushed_in_order_and_the_gaps_are_the_unlistened_time(
    db: Conn,
) -> None:
    t0 = _t0()
    m = timedelta(minutes=1)
    cov = Coverage(W1)
    cov.log(t0, ACCOUNT, "login")
    first = cov.open(ACCOUNT, "c1", CHANNELS, t0)
    cov.log(t0, ACCOUNT, "subscribed")
    cov.heartbeat(first, t0 + m)
    assert flush(cov, db) == 0
    cov.heartbeat(first, t0 + 2 * m)
    cov.close(first, t0 + 2 * m, "rehandshake")
    second = cov.open(ACCOUNT, "c2", CHANNELS, t0 + 3 * m)
    cov.heartbeat(second, t0 + 4 * m)
    flush(cov, db)
    assert cov.pending == 0
    assert flush(cov, db) == 0  # nothing queued: nothing written

    assert _rows(db) == [
        (W1, "c1", t0, t0 + 2 * m, t0 + 2 * m, "rehandshake"),
        (W1, "c2", t0 + 3 * m, t0 + 4 * m, None, None),
    ]
    assert _log(db) == [("login", None), ("subscribed", None)]
    # The second interval's heartbeat is 26 minutes old: the worker died, it ends there.
    answer = coverage(db, t0, t0 + 6 * m, [ACCOUNT])
    assert answer.gaps == [
        Gap(ACCOUNT, t0 + 2 * m, t0 + 3 * m),
        Gap(ACCOUNT, t0 + 4 * m, t0 + 6 * m),
    ]
    assert not answer.complete


class _FailingOnce(PgCoverageStorage):
    """PostgreSQL going away in the middle of a flush."""

    failed = False

    def heartbeats(self, ids: list[int], times: list[datetime]) -> None:
        if not _FailingOnce.failed:
            _FailingOnce.failed = True
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        super().heartbeats(ids, times)


def test_a_failed_flush_loses_nothing_and_the_next_writes_it_all_in_order(db: Conn) -> None:
    t0 = _t0()
    s = timedelta(seconds=1)
    cov = Coverage(W1)
    key = cov.open(ACCOUNT, "c1", CHANNELS, t0)
    cov.log(t0, ACCOUNT, "subscribed")
    cov.heartbeat(key, t0 + s)
    taken = cov.take()
    assert taken is not None
    with pytest.raises(psycopg.OperationalError), db.transaction():  # the task's
        cov.write(taken, _FailingOnce(db))
    assert _rows(db) == []  # rolled back as one
    # Meanwhile the session went on: its later operations queue behind the failed ones.
    cov.heartbeat(key, t0 + 2 * s)
    cov.close(key, t0 + 3 * s, "shutdown")
    flush(cov, db)
    assert _rows(db) == [(W1, "c1", t0, t0 + 3 * s, t0 + 3 * s, "shutdown")]
    assert _log(db) == [("subscribed", None)]
    assert cov.pending == 0


def test_a_dead_workers_open_interval_ends_at_its_last_heartbeat(db: Conn) -> None:
    t0 = _t0()
    dead = Coverage(W0)
    key = dead.open(ACCOUNT, "c0", CHANNELS, t0)
    dead.heartbeat(key, t0 + timedelta(seconds=40))
    flush(dead, db)  # then w0 was killed: its interval stays open
    heir = Coverage(W1)
    heir.close_stale(ACCOUNT)
    mine = heir.open(ACCOUNT, "c1", CHANNELS, t0 + timedelta(minutes=2))
    flush(heir, db)
    heir.close(mine, t0 + timedelta(minutes=3), "shutdown")
    heir.close_stale(ACCOUNT)  # a second start must not close the heir's own intervals
    flush(heir, db)
    rows = _rows(db)
    assert rows[0][0] == W0
    assert rows[0][4:] == (t0 + timedelta(seconds=40), WORKER_LOST)
    assert rows[1][0] == W1
    assert rows[1][4:] == (t0 + timedelta(minutes=3), "shutdown")
    gaps = coverage(db, t0, t0 + timedelta(minutes=3), [ACCOUNT]).gaps
    assert gaps == [Gap(ACCOUNT, t0 + timedelta(seconds=40), t0 + timedelta(minutes=2))]


def test_rows_under_a_stale_fence_are_skipped_and_counted(db: Conn) -> None:
    old = leases.claim(db, ACCOUNT, W1, 15)
    db.execute(
        "UPDATE account_leases SET expires_at = now() - interval '1 second' WHERE account = %s",
        (ACCOUNT,),
    )
    new = leases.claim(db, ACCOUNT, W2, 15)
    assert old is not None
    assert new is not None
    assert new > old
    t0 = _t0()
    stalled = Coverage(W1)
    stalled.fences[ACCOUNT] = old  # it still believes it holds the lease
    key = stalled.open(ACCOUNT, "c1", CHANNELS, t0)
    stalled.log(t0, ACCOUNT, "subscribed")
    stalled.heartbeat(key, t0 + timedelta(seconds=5))
    assert flush(stalled, db) == 1
    stalled.close(key, t0 + timedelta(seconds=9), "lease lost")
    flush(stalled, db)  # the close of an interval never stored is dropped, not an error
    current = Coverage(W2)
    current.fences[ACCOUNT] = new
    current.open(ACCOUNT, "c2", CHANNELS, t0 + timedelta(seconds=20))
    current.log(t0, ACCOUNT, "subscribed")
    assert flush(current, db) == 0
    assert [(r[0], r[1]) for r in _rows(db)] == [(W2, "c2")]
    assert _log(db) == [("subscribed", None)]  # w2's only
    assert stalled.fenced == 1
