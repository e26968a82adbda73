"""Append-only is enforced by PostgreSQL: triggers for every role, privileges for the roles."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors
from sqlalchemy.engine import URL

from auditor import tokens
from auditor.config import libpq_conninfo
from auditor.store.writer import store_batch
from tests.helpers import om_message, receipt

Conn = psycopg.Connection[Any]


@pytest.fixture
def stored(conn: Conn) -> Conn:
    """The session database with one event and one quarantine entry (rolled back after)."""
    result = store_batch(conn, [receipt(om_message("I-1", "Invited")), receipt("not json")])
    assert (result.stored, result.quarantined) == (1, 1)
    conn.execute(
        "INSERT INTO session_log (at, account, worker_id, event) VALUES (now(), 'a', 'w', 'login')"
    )
    conn.execute("INSERT INTO access_log (method, endpoint, status) VALUES ('GET', '/x', 200)")
    return conn


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET state = 'Completed'",
        "DELETE FROM events",
        "TRUNCATE events",
        "UPDATE quarantine SET reason = 'fine'",
        "DELETE FROM quarantine",
        "TRUNCATE quarantine",
        "TRUNCATE events_default",
        "UPDATE session_log SET event = 'x'",
        "DELETE FROM session_log",
        "TRUNCATE session_log",
        "UPDATE access_log SET status = 500",
        "DELETE FROM access_log",
        "TRUNCATE access_log",
    ],
)
def test_triggers_refuse_changes_even_to_the_owner(stored: Conn, statement: str) -> None:
    with pytest.raises(errors.InsufficientPrivilege, match="append-only"), stored.transaction():
        stored.execute(statement)  # type: ignore[arg-type]


def test_triggers_protect_monthly_partitions_too(stored: Conn) -> None:
    partition = stored.execute(
        "SELECT tableoid::regclass::text FROM events WHERE interaction_id = 'I-1'"
    ).fetchone()
    assert partition is not None
    assert partition[0] == "events_2026_11"
    for statement in (
        f"UPDATE {partition[0]} SET state = 'x'",
        f"DELETE FROM {partition[0]}",
        f"TRUNCATE {partition[0]}",
    ):
        with pytest.raises(errors.InsufficientPrivilege, match="append-only"), stored.transaction():
            stored.execute(statement)  # type: ignore[arg-type]


@pytest.fixture
def login_as(session_db: URL) -> Iterator[Any]:
    """Connect as a fresh login role that is a member of the given group role."""
    created: list[str] = []
    admin = psycopg.connect(libpq_conninfo(session_db), autocommit=True)

    def connect(group: str) -> Conn:
        name, password = f"t_{group}_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
        admin.execute(
            f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}' IN ROLE {group}"  # type: ignore[arg-type]
        )
        created.append(name)
        return psycopg.connect(libpq_conninfo(session_db.set(username=name, password=password)))

    yield connect
    for name in created:
        admin.execute(f'DROP ROLE "{name}"')  # type: ignore[arg-type]
    admin.close()


def test_writer_role_stores_batches_but_cannot_change_or_remove_rows(login_as: Any) -> None:
    with login_as("auditor_writer") as writer:
        result = store_batch(
            writer, [receipt(om_message("W-1", "Invited")), receipt(b"\x00broken")]
        )
        assert (result.stored, result.quarantined) == (1, 1)
        for statement in (
            "UPDATE events SET state = 'x'",
            "DELETE FROM events",
            "TRUNCATE events",
            "UPDATE quarantine SET reason = 'x'",
            "DELETE FROM quarantine",
            "TRUNCATE quarantine",
            "DROP TABLE events",
        ):
            with pytest.raises(errors.InsufficientPrivilege), writer.transaction():
                writer.execute(statement)  # type: ignore[arg-type]
        writer.rollback()


def test_writer_role_adds_a_partition_for_a_new_month_through_the_definer_function(
    login_as: Any,
) -> None:
    with login_as("auditor_writer") as writer:
        old = receipt(om_message("OLD-1", "Invited"), at=-(10**12))
        assert store_batch(writer, [old]).stored == 1
        row = writer.execute(
            "SELECT tableoid::regclass::text FROM events WHERE interaction_id = 'OLD-1'"
        ).fetchone()
        assert row == (f"events_{old.received_at:%Y_%m}",)
        writer.rollback()


def test_reader_role_can_only_read(login_as: Any) -> None:
    with login_as("auditor_reader") as reader:
        assert reader.execute("SELECT count(*) FROM interactions").fetchone() is not None
        for statement in (
            "INSERT INTO interactions (interaction_id, first_seen_at, last_seen_at,"
            " first_event_id, last_event_id, event_count) VALUES ('x', now(), now(), 1, 1, 1)",
            "UPDATE interactions SET state = 'x'",
            "DELETE FROM interactions",
            "DELETE FROM events",
            "SELECT auditor_ensure_event_partition('2030-01-01')",
        ):
            with pytest.raises(errors.InsufficientPrivilege), reader.transaction():
                reader.execute(statement)  # type: ignore[arg-type]
        with pytest.raises(errors.InsufficientPrivilege):
            store_batch(reader, [receipt(om_message("R-1", "Invited"))])


def test_api_role_records_token_use_and_may_change_nothing_else(
    login_as: Any, session_db: URL
) -> None:
    name = f"t-api-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(libpq_conninfo(session_db)) as admin:
        secret = tokens.create(admin, name, "reader")
    try:
        with login_as("auditor_api") as api:
            assert tokens.verify(api, secret) is not None
            api.commit()
            for statement in (
                "UPDATE api_tokens SET role = 'admin'",
                "UPDATE api_tokens SET revoked_at = NULL",
                "DELETE FROM api_tokens",
                "UPDATE access_log SET status = 200",
                "DELETE FROM events",
                "UPDATE interactions SET state = 'x'",
            ):
                with pytest.raises(errors.InsufficientPrivilege), api.transaction():
                    api.execute(statement)  # type: ignore[arg-type]
        with psycopg.connect(libpq_conninfo(session_db)) as admin:
            used = admin.execute(
                "SELECT last_used_at FROM api_tokens WHERE name = %s", (name,)
            ).fetchone()
            assert used is not None
            assert used[0] is not None
    finally:
        with psycopg.connect(libpq_conninfo(session_db)) as admin:
            admin.execute("DELETE FROM api_tokens WHERE name = %s", (name,))
