"""The owner's bypasses, closed where PostgreSQL allows it: append-only triggers fire in every
replication role, and an event trigger refuses DISABLE TRIGGER, DROP TRIGGER, DETACH PARTITION
and DROP TABLE on the audited tables. The tests connect as the superuser that ran the
migrations (the table owner), in a transaction rolled back afterwards."""

from __future__ import annotations

from datetime import date
from typing import Any

import psycopg
import pytest
from psycopg import errors

from auditor.store.writer import store_batch
from tests.helpers import om_message, receipt

Conn = psycopg.Connection[Any]


@pytest.fixture
def stored(conn: Conn) -> Conn:
    store_batch(conn, [receipt(om_message("O-1", "Invited")), receipt("not json")])
    conn.execute("INSERT INTO access_log (method, endpoint, status) VALUES ('GET', '/x', 200)")
    return conn


@pytest.mark.parametrize(
    "statement",
    [
        "ALTER TABLE events DISABLE TRIGGER events_append_only",
        "ALTER TABLE events DISABLE TRIGGER ALL",
        "ALTER TABLE events_default DISABLE TRIGGER USER",
        "ALTER TABLE quarantine DISABLE TRIGGER quarantine_append_only",
        "ALTER TABLE access_log DISABLE TRIGGER access_log_no_truncate",
        "ALTER TABLE record DISABLE TRIGGER record_gapless",
        "ALTER TABLE coverage_intervals DISABLE TRIGGER coverage_closed_immutable",
        "ALTER TABLE events ENABLE REPLICA TRIGGER events_append_only",
        "ALTER TABLE events DETACH PARTITION events_default",
        "DROP TRIGGER access_log_append_only ON access_log",
        "DROP TRIGGER record_append_only ON record",
        "DROP TABLE events_default",
        "DROP TABLE record",
        "DROP TABLE access_log",
        "DROP FUNCTION auditor_reject_change() CASCADE",
    ],
)
def test_the_owner_cannot_switch_off_or_remove_the_protection(stored: Conn, statement: str) -> None:
    with pytest.raises(errors.InsufficientPrivilege, match="refused"), stored.transaction():
        stored.execute(statement)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET state = 'Completed'",
        "DELETE FROM quarantine",
        "DELETE FROM access_log",
        "UPDATE record SET source_id = 0",
        "TRUNCATE events_default",
    ],
)
def test_replica_mode_no_longer_skips_the_append_only_triggers(
    stored: Conn, statement: str
) -> None:
    stored.execute("SET LOCAL session_replication_role = replica")
    with pytest.raises(errors.InsufficientPrivilege, match="append-only"), stored.transaction():
        stored.execute(statement)  # type: ignore[arg-type]


def test_partitions_created_later_are_protected_in_every_replication_role(conn: Conn) -> None:
    made = conn.execute("SELECT auditor_ensure_event_partition(%s)", (date(2031, 5, 1),))
    assert made.fetchone() == (True,)
    triggers = conn.execute(
        "SELECT tgname, tgenabled FROM pg_trigger"
        " WHERE tgrelid = 'events_2031_05'::regclass AND NOT tgisinternal"
        # the guards (a partition also gets the parent's other row triggers: snapshot_fenced)
        " AND tgname IN ('events_append_only', 'events_no_truncate') ORDER BY tgname"
    ).fetchall()
    assert triggers == [("events_append_only", "A"), ("events_no_truncate", "A")]
    conn.execute("SET LOCAL session_replication_role = replica")
    with pytest.raises(errors.InsufficientPrivilege), conn.transaction():
        conn.execute("TRUNCATE events_2031_05")


def test_a_non_superuser_owner_cannot_claim_the_retention_path(stored: Conn) -> None:
    stored.execute("CREATE ROLE auditor_test_owner NOLOGIN")
    stored.execute("ALTER TABLE access_log OWNER TO auditor_test_owner")
    stored.execute("SET LOCAL ROLE auditor_test_owner")
    stored.execute("SET LOCAL auditor.retention_path = 'on'")
    with pytest.raises(errors.InsufficientPrivilege, match="refused"), stored.transaction():
        stored.execute("ALTER TABLE access_log DISABLE TRIGGER access_log_append_only")


def test_the_retention_path_may_detach_a_partition(stored: Conn) -> None:
    """The documented way through (for issue 17's retention command, a SECURITY DEFINER
    function owned by the superuser that sets the flag for its own transaction)."""
    stored.execute("SET LOCAL auditor.retention_path = 'on'")
    stored.execute("ALTER TABLE events DETACH PARTITION events_default")
    stored.execute("DROP TABLE events_default")
