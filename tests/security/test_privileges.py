"""Who may do what: every role x INSERT/UPDATE/DELETE/TRUNCATE/SELECT x every table, tried.

The expected answers are written down once, in EXPECTED and OBJECTS below; docs/security.md
shows the same tables (rendered from this module: `python -m tests.security.test_privileges`
prints them, and a test fails when the document differs). Adding a table is one line in
EXPECTED and a sample row in SAMPLES.

Each cell is tried for real inside one transaction that is rolled back at the end: a savepoint
per cell, SET ROLE to the service's login (so its membership and inheritance are what is
tested), the statement, then back to the savepoint. Sample rows exist in every table, so the
append-only triggers fire where they apply.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, LiteralString

import psycopg
from psycopg import sql
from sqlalchemy.engine import URL

from auditor.config import libpq_conninfo
from tests.logins import LOGINS

ROLES = ("writer", "reader", "api", "owner")
OPS = ("INSERT", "UPDATE", "DELETE", "TRUNCATE", "SELECT")
DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"
BEGIN, END = "<!-- privileges:begin -->", "<!-- privileges:end -->"

# One line per table; per role the letters of OPS in order (I U D T S).
#   letter  allowed        -  no privilege (permission denied)
#   !       the owner may, but the append-only trigger refuses it (for every role)
#   u       UPDATE of some columns only (see SAMPLES: `partial`), never of the probe column
# owner: the role that ran `auditor db upgrade` (in the tests the cluster's superuser).
EXPECTED = """
table               writer reader api   owner
events              I---S  ----S  ----S I!!!S
events_default      -----  -----  ----- I!!!S
interactions        IU--S  ----S  ----S IUDTS
user_data_values    I---S  ----S  ----S IUDTS
event_references    I----  ----S  ----S IUDTS
quarantine          I----  ----S  ----S I!!!S
coverage_intervals  Iu--S  ----S  ----S IU!!S
session_log         I----  ----S  ----- I!!!S
account_leases      IUD-S  ----S  ----- IUDTS
api_tokens          -----  -----  ----- IUDTS
access_log          ----S  -----  ----S I!!!S
alembic_version     -----  -----  ----S IUDTS
record              I---S  ----S  ----S I!!!S
drain_progress      IU--S  ----S  ----S IUDTS
checkpoints         I---S  ----S  ----S I!!!S
record_tree         I---S  ----S  ----S I!!!S
bi_refresh_state    -----  -----  ----- IUDTS
bi_segments         -----  -----  ----- IUDTS
bi_interaction_facts -----  -----  ----- IUDTS
bi_user_data_changes -----  -----  ----- IUDTS
bi_findings         -----  -----  ----- IUDTS
bi_daily_volumes    -----  -----  ----- IUDTS
bi_user_data_columns -----  -----  ----- IUDTS
legal_holds         ----S  -----  I---S I!!!S
hold_releases       ----S  -----  I---S I!!!S
purges              ----S  ----S  ----S I!!!S
retention_runs      -----  -----  ----- I!!!S
projection_baseline ----S  ----S  ----S IUDTS
"""


@dataclass(frozen=True)
class Sample:
    insert: LiteralString  # one valid row; run as the owner to seed, and as each role to try
    update: str  # the probe column of UPDATE t SET c = c
    partial: str | None = None  # a column some role may update although it may not `update`


SAMPLES = {
    "events": Sample(
        "INSERT INTO events (receipt_id, received_at, account, payload)"
        " VALUES (gen_random_uuid(), '2026-11-02 09:00+00', 'agent001', '{}')",
        "account",
    ),
    # Direct access to a partition must not get around the parent's privileges or triggers.
    "events_default": Sample(
        "INSERT INTO events_default (receipt_id, received_at, account, payload)"
        " VALUES (gen_random_uuid(), '1999-01-02 09:00+00', 'agent001', '{}')",
        "account",
    ),
    "interactions": Sample(
        "INSERT INTO interactions (interaction_id, first_seen_at, last_seen_at, first_event_id,"
        " last_event_id, event_count) VALUES (gen_random_uuid()::text, now(), now(), 1, 1, 1)",
        "last_reference_id",
    ),
    "user_data_values": Sample(
        "INSERT INTO user_data_values (interaction_id, event_id, changed)"
        ' VALUES (gen_random_uuid()::text, 1, \'{"Case": "4711"}\')',
        "event_id",
    ),
    "event_references": Sample(
        "INSERT INTO event_references (event_id, received_at, reference_id)"
        " VALUES (1, '2026-11-02 09:00+00', 'r-1')",
        "reference_id",
    ),
    "quarantine": Sample(
        "INSERT INTO quarantine (receipt_id, received_at, account, reason, raw)"
        " VALUES (gen_random_uuid(), now(), 'agent001', 'probe', '\\x00'::bytea)",
        "reason",
    ),
    "coverage_intervals": Sample(
        "INSERT INTO coverage_intervals (account, worker_id, channels, started_at, heartbeat_at)"
        " VALUES ('agent001', 'w1', '{/v2/me/openmedia}', now(), now())",
        "started_at",
        partial="heartbeat_at",
    ),
    "session_log": Sample(
        "INSERT INTO session_log (at, account, worker_id, event)"
        " VALUES (now(), 'agent001', 'w1', 'login')",
        "detail",
    ),
    "account_leases": Sample(
        "INSERT INTO account_leases (account, worker_id, acquired_at, renewed_at, expires_at)"
        " VALUES (gen_random_uuid()::text, 'w1', now(), now(), now())",
        "expires_at",
    ),
    "api_tokens": Sample(
        "INSERT INTO api_tokens (name, role, token_hash)"
        " VALUES (gen_random_uuid()::text, 'reader', gen_random_uuid()::text)",
        "revoked_at",
        partial="last_used_at",
    ),
    "access_log": Sample(
        "INSERT INTO access_log (method, endpoint, status) VALUES ('GET', '/api/v1/events', 200)",
        "status",
    ),
    # BI summaries: kept by auditor_bi_refresh() (SECURITY DEFINER, EXECUTE for the writer);
    # BI logins read them only through the bi views (tests/bi/test_role.py).
    "bi_refresh_state": Sample(
        "INSERT INTO bi_refresh_state (id, last_event_id) VALUES (1, 0) ON CONFLICT DO NOTHING",
        "last_event_id",
    ),
    "bi_segments": Sample(
        "INSERT INTO bi_segments (interaction_id, account, first_seen_at, last_seen_at, outcome,"
        " event_count, error_count) VALUES (gen_random_uuid()::text, 'agent001', now(), now(),"
        " 'open', 1, 0)",
        "outcome",
    ),
    "bi_interaction_facts": Sample(
        "INSERT INTO bi_interaction_facts (interaction_id, first_seen_at, last_seen_at,"
        " transfers, rejects, agents_involved, event_count, error_count, accounts)"
        " VALUES (gen_random_uuid()::text, now(), now(), 0, 0, 1, 1, 0, '{agent001}')",
        "final_state",
    ),
    "bi_user_data_changes": Sample(
        "INSERT INTO bi_user_data_changes (event_id, received_at, account, interaction_id, kind,"
        " key, change, is_initial) VALUES ((random() * 1e9)::bigint, now(), 'agent001', 'i1',"
        " 'notification', 'k', 'added', true)",
        "new_value",
    ),
    "bi_findings": Sample(
        "INSERT INTO bi_findings (code, detail, interaction_id, account, event_id, received_at,"
        " kind) VALUES ('PROBE', 'probe', 'i1', 'agent001', (random() * 1e9)::bigint, now(),"
        " 'notification')",
        "detail",
    ),
    "bi_daily_volumes": Sample(
        "INSERT INTO bi_daily_volumes (day, account, events) VALUES (current_date, 'agent001', 1)",
        "events",
    ),
    "bi_user_data_columns": Sample(
        "INSERT INTO bi_user_data_columns (column_name, user_data_key)"
        " VALUES ('probe_' || (random() * 1e6)::int, 'Probe')",
        "position",
    ),
    # The evidence record (docs/evidence.md): positions are checked by a trigger to follow
    # the last one, so the sample takes the next.
    "record": Sample(
        "INSERT INTO record (position, source, source_id, leaf_hash, chain_hash)"
        " SELECT coalesce(max(position), 0) + 1, 'access', (random() * 1e9)::bigint,"
        " decode(repeat('00', 32), 'hex'), decode(repeat('00', 32), 'hex') FROM record",
        "sealed_at",
    ),
    "drain_progress": Sample(
        "INSERT INTO drain_progress (worker_id, stored_through)"
        " VALUES (gen_random_uuid()::text, now())",
        "stored_through",
    ),
    "checkpoints": Sample(
        "INSERT INTO checkpoints (tree_size, root, chain_head, counts, made_at, key_id,"
        " signature) VALUES ((random() * 1e9)::bigint + 1, decode(repeat('00', 32), 'hex'),"
        " decode(repeat('00', 32), 'hex'), '{}', now(), 'probe',"
        " decode(repeat('00', 64), 'hex'))",
        "key_id",
    ),
    "record_tree": Sample(
        "INSERT INTO record_tree (level, index, hash)"
        " VALUES (4, (random() * 1e9)::bigint, decode(repeat('00', 32), 'hex'))",
        "hash",
    ),
    # Retention (docs/retention.md): holds and releases placed by admins through the API.
    "legal_holds": Sample(
        "INSERT INTO legal_holds (placed_by, reason, account) VALUES ('probe', 'probe', 'a1')",
        "reason",
    ),
    "hold_releases": Sample(
        "WITH h AS (INSERT INTO legal_holds (placed_by, reason, account)"
        " VALUES ('probe', 'probe', 'a1') RETURNING id)"
        " INSERT INTO hold_releases (hold_id, released_by, reason) SELECT id, 'probe', 'probe'"
        " FROM h",
        "reason",
    ),
    "purges": Sample(
        "INSERT INTO purges (partition, range_from, range_to, row_count, event_ids, positions,"
        " leaves_sha256, head_position, head_chain, purged_by, reason) VALUES"
        " ('events_1999_01', '1999-01-01+00', '1999-02-01+00', 0, '{}', '{}',"
        " decode(repeat('00', 32), 'hex'), 0, decode(repeat('00', 32), 'hex'), 'probe', 'probe')",
        "reason",
    ),
    "retention_runs": Sample(
        "INSERT INTO retention_runs (run_by, dry_run, settings, dropped, kept)"
        " VALUES ('probe', true, '{}', '[]', '[]')",
        "run_by",
    ),
    "projection_baseline": Sample(
        "INSERT INTO projection_baseline (interaction_id, first_seen_at, last_seen_at,"
        " first_event_id, last_event_id, event_count, purge_id)"
        " VALUES (gen_random_uuid()::text, now(), now(), 1, 1, 1, 1)",
        "event_count",
    ),
    "alembic_version": Sample(
        "INSERT INTO alembic_version VALUES (left(md5(random()::text), 32))", "version_num"
    ),
}

# Objects other than tables: (what, privilege, statement that uses it, expected per role).
OBJECTS: list[tuple[str, str, LiteralString, str]] = [
    ("sequence events_id_seq", "USAGE", "SELECT nextval('events_id_seq')", "no no no yes"),
    (
        "function auditor_ensure_event_partition(date) (SECURITY DEFINER)",
        "EXECUTE",
        "SELECT auditor_ensure_event_partition('1999-01-01')",
        "yes no no yes",
    ),
    (
        "function auditor_authenticate(text) (SECURITY DEFINER)",
        "EXECUTE",
        "SELECT * FROM auditor_authenticate('probe')",
        "no no yes yes",
    ),
    (
        "function auditor_log_access(...) (SECURITY DEFINER)",
        "EXECUTE",
        "SELECT auditor_log_access(NULL, 'GET', '/api/v1/probe', '{}'::jsonb, 401,"
        " NULL, '127.0.0.1'::inet, 'answered', NULL, NULL, NULL)",
        "no no yes yes",
    ),
    (
        "function auditor_projection_remove_unbacked(text[]) (SECURITY DEFINER)",
        "EXECUTE",
        "SELECT auditor_projection_remove_unbacked(ARRAY['probe'])",
        "yes no no yes",
    ),
    (
        "function auditor_purge_event_partition(bigint) (SECURITY DEFINER)",
        "EXECUTE",
        # STRICT: NULL (not a constant, which the planner would fold) does nothing.
        "SELECT auditor_purge_event_partition((CASE WHEN random() < 2 THEN NULL END)::bigint)",
        "no no no yes",
    ),
    (
        "function auditor_lease_fence_ok(text, bigint) (SECURITY DEFINER)",
        "EXECUTE",
        "SELECT auditor_lease_fence_ok('agent001', NULL)",
        "yes no no yes",
    ),
    ("schema public", "CREATE", "CREATE TABLE auditor_probe (i int)", "no no no yes"),
]


def expected_cells() -> dict[tuple[str, str], str]:
    """(table, role) -> the letters of OPS, parsed from EXPECTED."""
    lines = [line.split() for line in EXPECTED.strip().splitlines()]
    header, rows = lines[0], lines[1:]
    assert tuple(header[1:]) == ROLES
    return {(row[0], role): cell for row in rows for role, cell in zip(ROLES, row[1:], strict=True)}


def render_markdown() -> str:
    cells = expected_cells()
    tables = sorted({t for t, _ in cells}, key=[t for t, _ in cells].index)
    out = [
        "| table | " + " | ".join(ROLES) + " |",
        "|---|" + "---|" * len(ROLES),
    ]
    out += [f"| `{t}` | " + " | ".join(f"`{cells[t, r]}`" for r in ROLES) + " |" for t in tables]
    out += ["", "| object | privilege | " + " | ".join(ROLES) + " |", "|---|---|" + "---|" * 4]
    out += [
        f"| `{what}` | {priv} | " + " | ".join(answers.split()) + " |"
        for what, priv, _, answers in OBJECTS
    ]
    return "\n".join(out)


# --- trying the cells ---------------------------------------------------------------------------


def _outcome(
    conn: psycopg.Connection[Any], role: str, statement: sql.Composable | LiteralString
) -> str:
    """'yes', 'denied' (no privilege) or 'append-only' (a trigger refused), rolled back."""
    try:
        with conn.transaction():
            if role != "owner":
                conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(LOGINS[role])))
            conn.execute(statement)
            raise psycopg.Rollback()
    except psycopg.errors.InsufficientPrivilege as exc:
        # a trigger's refusal (append-only tables, closed coverage intervals) names the record
        refused_by_trigger = "append-only" in str(exc) or "in the record" in str(exc)
        return "append-only" if refused_by_trigger else "denied"
    return "yes"


def _letter(op: str, outcome: str) -> str:
    return {"yes": op[0], "denied": "-", "append-only": "!"}[outcome]


def _observed_cell(conn: psycopg.Connection[Any], table: str, role: str) -> str:
    sample = SAMPLES[table]
    t = sql.Identifier(table)
    statements: dict[str, sql.Composable] = {
        "INSERT": sql.SQL(sample.insert),
        "UPDATE": sql.SQL("UPDATE {} SET {} = {}").format(
            t, sql.Identifier(sample.update), sql.Identifier(sample.update)
        ),
        "DELETE": sql.SQL("DELETE FROM {}").format(t),
        "TRUNCATE": sql.SQL("TRUNCATE {}").format(t),
        "SELECT": sql.SQL("SELECT * FROM {}").format(t),
    }
    letters = []
    for op in OPS:
        letter = _letter(op, _outcome(conn, role, statements[op]))
        if op == "UPDATE" and letter == "-" and sample.partial is not None:
            column = sql.Identifier(sample.partial)
            partial = sql.SQL("UPDATE {} SET {} = {}").format(t, column, column)
            if _outcome(conn, role, partial) == "yes":
                letter = "u"
        letters.append(letter)
    return "".join(letters)


def _seeded(session_db: URL, check: Callable[[psycopg.Connection[Any]], None]) -> None:
    with psycopg.connect(libpq_conninfo(session_db)) as conn:
        try:
            for table in SAMPLES:
                conn.execute(sql.SQL(SAMPLES[table].insert))
            check(conn)
        finally:
            conn.rollback()


def test_every_role_may_do_exactly_what_the_matrix_says_on_every_table(session_db: URL) -> None:
    expected = expected_cells()
    assert {t for t, _ in expected} == set(SAMPLES), "EXPECTED and SAMPLES name other tables"
    observed: dict[tuple[str, str], str] = {}

    def check(conn: psycopg.Connection[Any]) -> None:
        for table, role in expected:
            observed[table, role] = _observed_cell(conn, table, role)

    _seeded(session_db, check)
    assert observed == expected


def test_every_table_of_the_schema_is_in_the_matrix(conn: psycopg.Connection[Any]) -> None:
    """A new table must get its line: its privileges are a decision, not an accident."""
    found = {
        str(r[0])
        for r in conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')"
            " AND c.relname !~ '^events_[0-9]{4}_[0-9]{2}$'"
        ).fetchall()
    }
    assert found == set(SAMPLES)


def test_sequences_functions_and_the_schema_are_used_only_by_whom_the_matrix_says(
    session_db: URL,
) -> None:
    observed: dict[str, str] = {}
    expected = {what: exp for what, _, _, exp in OBJECTS}

    def check(conn: psycopg.Connection[Any]) -> None:
        for what, _, statement, _ in OBJECTS:
            answers = [_outcome(conn, role, statement) for role in ROLES]
            observed[what] = " ".join("yes" if a == "yes" else "no" for a in answers)

    _seeded(session_db, check)
    assert observed == expected


def test_docs_security_md_shows_the_matrix_as_written_here() -> None:
    text = DOC.read_text()
    assert BEGIN in text
    assert END in text
    shown = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert shown == render_markdown(), (
        "docs/security.md is out of date: paste `python -m tests.security.test_privileges`"
    )


if __name__ == "__main__":
    print(BEGIN)
    print(render_markdown())
    print(END)
