"""The worker keeps the BI summaries up: its refresher, as the writer's login, folds every
stored event into them, batch by batch, at full speed while the writer is idle and yielding
while it stores events; bi.summary_freshness says how far it has got."""

from __future__ import annotations

import threading
from collections.abc import Callable

import psycopg
import pytest
from sqlalchemy.engine import URL

from auditor.bi import refresh
from auditor.config import libpq_conninfo
from auditor.ingest.bi_task import BiRefresher
from auditor.sample import generate
from auditor.store.writer import store_batch
from tests.helpers import from_sample

_FRESHNESS = (
    "SELECT summarised_through_event_id, latest_event_id, events_pending,"
    " oldest_pending_stored_at IS NOT NULL FROM bi.summary_freshness"
)


def test_the_refresher_catches_up_at_full_speed_while_the_writer_is_idle(
    fresh_db: URL, login_url: Callable[[URL, str], URL]
) -> None:
    with psycopg.connect(libpq_conninfo(fresh_db)) as conn:
        store_batch(conn, [from_sample(line) for line in generate(interactions=30)])
        conn.commit()
        pending = refresh.pending_events(conn)
        behind = conn.execute(_FRESHNESS).fetchone()
    assert pending > 100
    assert behind is not None
    assert behind[0] == 0
    assert behind[2] == pending
    assert behind[3] is True

    refresher = BiRefresher(libpq_conninfo(login_url(fresh_db, "writer")), 7.0, batch=50)
    folded, waits = 0, []
    try:
        while (step := refresher.step())[0]:
            folded += step[0]
            waits.append(step[1])
        assert step == (0, 7.0)  # caught up: the next look after the interval
    finally:
        refresher.close()
    assert folded == pending
    assert len(waits) > 1
    assert set(waits) == {0.0}  # nobody was writing: no pause
    with psycopg.connect(libpq_conninfo(fresh_db)) as conn:
        assert refresh.pending_events(conn) == 0
        facts = conn.execute("SELECT count(*) FROM bi_interaction_facts").fetchone()
        fresh = conn.execute(_FRESHNESS).fetchone()
    assert facts is not None
    assert facts[0] == 30
    assert fresh is not None
    assert fresh[0] == fresh[1]
    assert fresh[2:] == (0, False)


def test_the_refresher_pauses_after_a_batch_while_the_writer_stores_events(
    fresh_db: URL, login_url: Callable[[URL, str], URL]
) -> None:
    lines = generate(interactions=200)
    receipts = [from_sample(line) for line in lines]
    with psycopg.connect(libpq_conninfo(fresh_db)) as conn:
        store_batch(conn, receipts[:400])
        conn.commit()
    done = threading.Event()

    def write_on() -> None:
        with psycopg.connect(libpq_conninfo(fresh_db)) as conn:
            for start in range(400, len(receipts), 5):
                if done.is_set():
                    return
                store_batch(conn, receipts[start : start + 5])
                conn.commit()

    writer = threading.Thread(target=write_on)
    # any event stored during a batch counts as busy here (the test's writer is slow)
    pacer = refresh.Pacer(0.1, busy_rate=0.001)
    refresher = BiRefresher(
        libpq_conninfo(login_url(fresh_db, "writer")), 7.0, batch=20, pacer=pacer
    )
    writer.start()
    try:
        paused = [wait for _, wait in (refresher.step() for _ in range(20)) if wait]
    finally:
        done.set()
        writer.join()
        refresher.close()
    assert paused  # the writer's sequence moved during a batch
    assert all(0 < wait < 7.0 for wait in paused)


def test_the_pause_keeps_the_refresh_to_its_duty_while_the_writer_is_busy() -> None:
    pacer = refresh.Pacer(0.1, busy_rate=500)
    assert pacer.pause(0.5, stored=250) == pytest.approx(4.5)  # 500 events/s: busy
    assert pacer.pause(0.5, stored=249) == 0.0  # a trickle: full speed
    assert pacer.pause(0.5, stored=0) == 0.0
    assert pacer.pause(100.0, stored=10**6) == refresh.MAX_PAUSE
    assert refresh.Pacer(1.0).pause(0.5, stored=10**6) == 0.0
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="duty"):
            refresh.Pacer(bad)
