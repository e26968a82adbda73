"""Event ids come from the identity only (migration 2026_12_02_event_ids): the writer's role
may not name the id column, so PostgreSQL refuses a COPY with ids (COPY acts as OVERRIDING
SYSTEM VALUE) and an INSERT ... OVERRIDING SYSTEM VALUE, while the batch writer stores as
before."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from psycopg import errors

from auditor.store import integrity
from auditor.store.writer import _COPY_COLUMNS, store_batch
from tests.helpers import T0, om_message, receipt

Conn = psycopg.Connection[Any]

_COLUMNS = "receipt_id, received_at, kind, account, payload"


def _as_writer(conn: Conn) -> None:
    conn.execute("SET LOCAL ROLE auditor_writer")


def _stored(conn: Conn) -> int:
    """Stores one batch the usual way; returns the highest event id."""
    result = store_batch(conn, [receipt(om_message("ID-1", "Invited"), at=i) for i in range(3)])
    assert result.last_event_id is not None
    return result.last_event_id


def test_the_batch_writer_still_stores_and_verifies_as_the_writer_role(conn: Conn) -> None:
    _as_writer(conn)
    _stored(conn)
    _stored(conn)
    conn.execute("RESET ROLE")
    report = integrity.verify(conn)
    assert report.ok, report.problem


@pytest.mark.parametrize("offset", [0, 1_000, -1])
def test_copy_with_explicit_ids_is_refused_to_the_writer(conn: Conn, offset: int) -> None:
    # offset 0: this session's last id again, in another month (the primary key is
    # (id, received_at), so nothing else would stop a second row with that id)
    _as_writer(conn)
    last = _stored(conn)
    row = (last + offset, uuid.uuid4(), T0.replace(year=T0.year + 1), "notification", "a1", "{}")
    with (
        pytest.raises(errors.InsufficientPrivilege, match="events"),
        conn.transaction(),
        conn.cursor() as cur,
        cur.copy(f"COPY events (id, {_COLUMNS}) FROM STDIN") as copy,
    ):
        copy.write_row(row)


def test_insert_overriding_the_identity_is_refused_to_the_writer(conn: Conn) -> None:
    _as_writer(conn)
    last = _stored(conn)
    with pytest.raises(errors.InsufficientPrivilege, match="events"), conn.transaction():
        conn.execute(
            f"INSERT INTO events (id, {_COLUMNS}) OVERRIDING SYSTEM VALUE"
            " VALUES (%s, gen_random_uuid(), %s, 'notification', 'a1', '{}')",
            (last, T0.replace(year=T0.year + 1)),
        )


def test_the_writer_may_insert_every_column_it_stores_and_no_other(conn: Conn) -> None:
    granted = {
        column
        for (column,) in conn.execute(
            "SELECT column_name FROM information_schema.column_privileges"
            " WHERE table_name = 'events' AND grantee = 'auditor_writer'"
            " AND privilege_type = 'INSERT'"
        )
    }
    assert granted == set(_COPY_COLUMNS)
