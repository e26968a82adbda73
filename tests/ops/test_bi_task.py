"""The worker keeps the BI summaries up: its refresher, as the writer's login, folds every
stored event into them, in rounds."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
from sqlalchemy.engine import URL

from auditor.bi import refresh
from auditor.config import libpq_conninfo
from auditor.ingest.bi_task import BiRefresher
from auditor.sample import generate
from auditor.store.writer import store_batch
from tests.helpers import from_sample


def test_the_workers_refresher_folds_every_stored_event_into_the_summaries(
    fresh_db: URL, login_url: Callable[[URL, str], URL]
) -> None:
    with psycopg.connect(libpq_conninfo(fresh_db)) as conn:
        store_batch(conn, [from_sample(line) for line in generate(interactions=30)])
        conn.commit()
        pending = refresh.pending_events(conn)
    assert pending > 100

    refresher = BiRefresher(libpq_conninfo(login_url(fresh_db, "writer")), 1.0, batch=50)
    try:
        assert refresher.once() == pending
        assert refresher.once() == 0
    finally:
        refresher.close()
    with psycopg.connect(libpq_conninfo(fresh_db)) as conn:
        assert refresh.pending_events(conn) == 0
        facts = conn.execute("SELECT count(*) FROM bi_interaction_facts").fetchone()
    assert facts is not None
    assert facts[0] == 30
