"""auditor_bi reads every BI view and nothing else, and can change nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg import errors, sql

from auditor.bi import catalog

Conn = psycopg.Connection[Any]

# Every base table, the access log and the tokens; the evidence record's tables when present.
PRIVATE = (
    "events",
    "events_default",
    "interactions",
    "quarantine",
    "coverage_intervals",
    "session_log",
    "account_leases",
    "api_tokens",
    "access_log",
    "bi_user_data_columns",
    "bi_refresh_state",
    "bi_segments",
    "bi_user_data_changes",
    "bi_findings",
    "bi_daily_volumes",
    "bi_interaction_facts",
    "bi_live_interaction_facts",
    "bi_live_segments",
    "bi_live_user_data_changes",
    "bi_live_findings",
    "alembic_version",
    "record",
    "checkpoints",
)


def _views(conn: Conn) -> list[tuple[str, str]]:
    return [(schema, v.name) for schema in ("bi", "bi_v1") for v in catalog.views(conn, schema)]


def test_the_bi_login_reads_every_view_of_both_schemas(bi_conn: Conn) -> None:
    views = _views(bi_conn)
    assert len(views) == 20  # 10 views, in bi_v1 and in bi
    for schema, view in views:
        query = sql.SQL("SELECT count(*) FROM {}.{}").format(
            sql.Identifier(schema), sql.Identifier(view)
        )
        row = bi_conn.execute(query).fetchone()
        assert row is not None
        if view == "purged_ranges":  # nothing purged in this fixture (tests/retention/)
            continue
        assert row[0] > 0, f"{schema}.{view} is empty"


def _existing(conn: Conn, names: tuple[str, ...]) -> list[str]:
    rows = conn.execute(
        "SELECT relname FROM pg_class JOIN pg_namespace n ON n.oid = relnamespace"
        " WHERE nspname = 'public' AND relname = ANY(%s)",
        (list(names),),
    )
    return sorted(r[0] for r in rows)


def test_the_bi_login_cannot_read_base_tables_tokens_or_the_access_log(bi_conn: Conn) -> None:
    tables = _existing(bi_conn, PRIVATE)
    assert {"events", "api_tokens", "access_log", "interactions"} <= set(tables)
    for table in tables:
        with pytest.raises(errors.InsufficientPrivilege), bi_conn.transaction():
            bi_conn.execute(sql.SQL("SELECT 1 FROM {} LIMIT 1").format(sql.Identifier(table)))


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO bi.events (account, received_at) VALUES ('x', now())",
        "INSERT INTO bi_v1.events (account) VALUES ('x')",
        "UPDATE bi_v1.events SET account = 'x'",
        "DELETE FROM bi.events",
        "INSERT INTO events (receipt_id, received_at, account, payload)"
        " VALUES (gen_random_uuid(), now(), 'x', '{}')",
        "UPDATE interactions SET state = 'x'",
        "INSERT INTO bi_user_data_columns VALUES ('x', 'X', 1)",
        "INSERT INTO api_tokens (name, role, token_hash) VALUES ('x', 'admin', 'x')",
        "INSERT INTO access_log (method, endpoint, status) VALUES ('GET', '/', 200)",
        "CREATE VIEW bi.mine AS SELECT 1",
        "CREATE TABLE bi_v1.mine (x int)",
        "CREATE TABLE public.mine (x int)",
        "DROP VIEW bi.events",
        "SELECT auditor_ensure_event_partition('2031-01-01')",
        "SELECT auditor_bi_build_events()",
        "SELECT auditor_bi_refresh(10)",
        "SELECT auditor_bi_alias('bi_v1', 'events')",
        "COMMENT ON VIEW bi.events IS 'mine'",
    ],
)
def test_the_bi_login_can_change_nothing(bi_conn: Conn, statement: str) -> None:
    with pytest.raises(errors.InsufficientPrivilege), bi_conn.transaction():
        bi_conn.execute(statement)  # type: ignore[arg-type]


def test_the_bi_role_has_select_only(bi_conn: Conn) -> None:
    rows = bi_conn.execute(
        "SELECT DISTINCT table_schema, privilege_type FROM information_schema.table_privileges"
        " WHERE grantee = 'auditor_bi' ORDER BY 1, 2"
    ).fetchall()
    assert rows == [("bi", "SELECT"), ("bi_v1", "SELECT")]


def test_the_bi_role_holds_no_write_privilege_on_any_view(bi_conn: Conn) -> None:
    for schema, view in _views(bi_conn):
        for privilege in ("INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"):
            row = bi_conn.execute(
                "SELECT has_table_privilege('auditor_bi', %s, %s)",
                (f"{schema}.{view}", privilege),
            ).fetchone()
            assert row == (False,), (schema, view, privilege)


def test_the_api_role_reads_the_findings_it_serves(
    bi_db: Any, login_url: Callable[[Any, str], Any]
) -> None:
    """The API (auditor_api, no member of auditor_reader) serves bi_v1.lifecycle_findings."""
    from auditor.config import libpq_conninfo

    with psycopg.connect(libpq_conninfo(login_url(bi_db, "api"))) as api:
        row = api.execute("SELECT count(*) FROM bi_v1.lifecycle_findings").fetchone()
        assert row is not None
        assert row[0] > 0
