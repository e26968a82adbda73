"""Rows stored before the record existed get their positions from `auditor seal --backfill`,
on a database filled by the previous revision; `auditor verify` then checks them all."""

from __future__ import annotations

import psycopg
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import URL

from auditor.config import libpq_conninfo
from auditor.store import schema
from tests.helpers import om_message
from tests.integration.test_cli import run

PREVIOUS = "2026_11_25_one_account_index"


def _fill_as_the_previous_revision(conninfo: str) -> None:
    with psycopg.connect(conninfo) as conn:
        conn.execute("SELECT auditor_ensure_event_partition('2026-11-01')")
        for i in range(25):
            conn.execute(
                "INSERT INTO events (receipt_id, received_at, account, interaction_id, payload)"
                " VALUES (gen_random_uuid(), '2026-11-02 09:00:00+00'::timestamptz"
                " + %s * interval '1 second', 'agent001', %s, %s)",
                (i, f"B-{i % 5}", om_message(f"B-{i % 5}", "Processing", reference_id=i)),
            )
        conn.execute(
            "INSERT INTO quarantine (receipt_id, received_at, account, reason, raw)"
            " VALUES (gen_random_uuid(), now(), 'agent001', 'not JSON', '\\x00ff'::bytea)"
        )
        conn.execute(
            "INSERT INTO coverage_intervals (account, worker_id, channels, started_at,"
            " heartbeat_at, ended_at, end_reason)"
            " VALUES ('agent001', 'w', '{c}', now(), now(), now(), 'stop'),"
            " ('agent002', 'w', '{c}', now(), now(), NULL, NULL)"
        )
        conn.execute(
            "INSERT INTO access_log (method, endpoint, status, filters)"
            """ VALUES ('GET', '/api/v1/events', 200, '{"limit": 5}')"""
        )


def test_backfill_seals_rows_stored_by_the_previous_revision(fresh_db: URL) -> None:
    engine = create_engine(fresh_db, poolclass=pool.NullPool)
    try:
        with engine.begin() as conn:
            schema.downgrade(conn, PREVIOUS)
        _fill_as_the_previous_revision(libpq_conninfo(fresh_db))
        with engine.begin() as conn:
            schema.upgrade(conn)
    finally:
        engine.dispose()

    before = run("verify", url=fresh_db)
    assert before.returncode == 0, before.stderr
    assert "not sealed yet: 25 event rows" in before.stdout

    sealed = run("seal", "--backfill", url=fresh_db)
    assert sealed.returncode == 0, sealed.stderr
    assert "sealed 28 rows (25 event, 1 quarantine, 1 coverage, 1 access)" in sealed.stdout

    after = run("verify", url=fresh_db)
    assert after.returncode == 0, after.stdout + after.stderr
    assert "checked positions 1..28: 28 rows" in after.stdout
    assert "not sealed" not in after.stdout
    assert "record intact" in after.stdout

    with psycopg.connect(libpq_conninfo(fresh_db)) as conn:
        conn.execute("ALTER EVENT TRIGGER auditor_guard_alter DISABLE")
        conn.execute("ALTER TABLE events DISABLE TRIGGER events_append_only")
        conn.execute("UPDATE events SET account = 'agent666' WHERE interaction_id = 'B-3'")
        conn.execute("ALTER TABLE events ENABLE ALWAYS TRIGGER events_append_only")
        conn.execute("ALTER EVENT TRIGGER auditor_guard_alter ENABLE ALWAYS")
    broken = run("verify", url=fresh_db)
    assert broken.returncode == 1
    assert "BROKEN at position 4: altered: event" in broken.stdout

    bad = run("verify", "--from", "30", url=fresh_db)
    assert bad.returncode == 2
    assert bad.stderr.startswith("auditor: --from/--to:")
