"""Database roles: login users in exactly one group role, and the services' start-up guard.

The migrations create the group roles (NOLOGIN) and grant them what each job needs; people and
processes log in as login users that are members of one group role each. The worker and the
API refuse to run as a superuser or as the owner of the audited tables: either could rewrite
history (the append-only triggers stop ordinary statements, not an owner who drops them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, LiteralString

import psycopg
from psycopg import sql
from sqlalchemy.engine import URL

from auditor.config import DATABASE_URL, libpq_conninfo
from auditor.errors import ConfigError, UserError

# role name on the command line -> group role in the database
GROUPS = {
    "writer": "auditor_writer",  # the ingestion worker, `auditor import`
    "api": "auditor_api",  # the query API
    "reader": "auditor_reader",  # ad-hoc SQL: read-only, no access log, no tokens
    "bi": "auditor_bi",  # BI tools: the bi schemas' views only (docs/bi.md)
    "verifier": "auditor_verifier",  # `auditor verify`: reads what the record covers
    "retention": "auditor_retention",  # `auditor retention`, `auditor hold` (docs/retention.md)
}
# Connections one login may hold at once. A worker holds about five (drain, coverage, leases,
# snapshots, active items); an API worker process holds up to twice its pool size.
DEFAULT_CONNECTION_LIMIT = {
    "writer": 32,
    "api": 64,
    "reader": 16,
    "bi": 16,
    "verifier": 4,
    "retention": 2,
}
AUDITED_TABLE = "events"  # its owner is the schema's owner
_SCRAM = b"scram-sha-256"


@dataclass(frozen=True)
class Login:
    user: str
    group: str
    created: bool
    revoked_from: tuple[str, ...]


def _one(conn: psycopg.Connection[Any], query: LiteralString, params: tuple[Any, ...] = ()) -> Any:
    row = conn.execute(query, params).fetchone()
    return None if row is None else row[0]


def _schema_owner(conn: psycopg.Connection[Any]) -> str | None:
    owner = _one(
        conn,
        "SELECT tableowner FROM pg_tables WHERE tablename = %s AND schemaname = current_schema()",
        (AUDITED_TABLE,),
    )
    return None if owner is None else str(owner)


def _check_user(conn: psycopg.Connection[Any], user: str) -> None:
    """Refuse names that would give a login more than one group role's rights."""
    if user.startswith("pg_") or user in GROUPS.values() or not user.strip():
        raise UserError(f"--user {user!r}: choose a name of its own for the login")
    row = conn.execute(
        "SELECT rolsuper, rolcanlogin, rolcreaterole, rolbypassrls FROM pg_roles"
        " WHERE rolname = %s",
        (user,),
    ).fetchone()
    if row is None:
        return
    if row[0] or row[2] or row[3]:
        raise UserError(
            f"--user {user!r} is a superuser or may create roles or bypass row security; "
            "choose another name for the service's login"
        )
    owner = _schema_owner(conn)
    if owner is not None and _one(conn, "SELECT pg_has_role(%s, %s, 'MEMBER')", (user, owner)):
        raise UserError(
            f"--user {user!r} owns the audited tables (or is in their owner {owner!r}); "
            "choose another name for the service's login"
        )
    members = [
        str(r[0])
        for r in conn.execute(
            "SELECT m.rolname FROM pg_auth_members a JOIN pg_roles m ON m.oid = a.member"
            " JOIN pg_roles r ON r.oid = a.roleid WHERE r.rolname = %s",
            (user,),
        ).fetchall()
    ]
    if members:
        raise UserError(
            f"--user {user!r} has members ({', '.join(sorted(members))}), who would share its "
            "rights; choose another name for the service's login"
        )


def _other_memberships(conn: psycopg.Connection[Any], user: str) -> list[str]:
    return [
        str(r[0])
        for r in conn.execute(
            "SELECT r.rolname FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid"
            " JOIN pg_roles m ON m.oid = a.member WHERE m.rolname = %s ORDER BY 1",
            (user,),
        ).fetchall()
    ]


def grant_login(
    conn: psycopg.Connection[Any],
    role: str,
    user: str,
    password: str,
    *,
    connection_limit: int | None = None,
) -> Login:
    """Create or update ``user``: LOGIN with ``password``, a member of exactly ``role``'s
    group role (inheriting its rights), nothing else. The caller commits."""
    if role not in GROUPS:
        raise UserError(f"ROLE {role!r}: expected one of {', '.join(GROUPS)}")
    if not password:
        raise UserError("the password is empty")
    group = GROUPS[role]
    if _one(conn, "SELECT 1 FROM pg_roles WHERE rolname = %s", (group,)) is None:
        raise UserError(f"the group role {group} does not exist; run `auditor db upgrade` first")
    _check_user(conn, user)
    others = [r for r in _other_memberships(conn, user) if r != group]
    foreign = [r for r in others if r not in GROUPS.values()]
    if foreign:
        raise UserError(
            f"--user {user!r} is also a member of {', '.join(foreign)}; "
            "revoke that first (a service login is in one group role only)"
        )
    limit = DEFAULT_CONNECTION_LIMIT[role] if connection_limit is None else connection_limit
    # The verifier is computed here, so the password never travels to the server or its log.
    verifier = conn.pgconn.encrypt_password(password.encode(), user.encode(), _SCRAM).decode()
    ident = sql.Identifier(user)
    created = _one(conn, "SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)) is None
    attributes = sql.SQL(
        "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT"
        " CONNECTION LIMIT {} PASSWORD {}"
    ).format(sql.Literal(limit), sql.Literal(verifier))
    verb = sql.SQL("CREATE ROLE" if created else "ALTER ROLE")
    conn.execute(sql.SQL("{} {} {}").format(verb, ident, attributes))
    for other in others:
        conn.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(other), ident))
    # A NOINHERIT membership would give the login nothing until it ran SET ROLE; SET FALSE
    # keeps it from acting as the group itself (and so from owning what it might create).
    version = int(_one(conn, "SHOW server_version_num"))
    options = sql.SQL(" WITH INHERIT TRUE, SET FALSE" if version >= 160000 else "")
    if version >= 160000 or group not in _other_memberships(conn, user):
        conn.execute(sql.SQL("GRANT {} TO {}{}").format(sql.Identifier(group), ident, options))
    left = _other_memberships(conn, user)
    if left != [group]:  # e.g. a membership granted by another role, which we cannot revoke
        raise UserError(
            f"--user {user!r} would be a member of {', '.join(left)}; revoke all but {group}"
        )
    return Login(user=user, group=group, created=created, revoked_from=tuple(others))


def refuse_privileged(conn: psycopg.Connection[Any], role: str, service: str) -> None:
    """Raise a one-line ConfigError unless the session's user is an ordinary login with
    ``role``'s group role: not a superuser, not (in) the owner of the audited tables."""
    group = GROUPS[role]
    user = str(_one(conn, "SELECT current_user"))
    fix = (
        f"run the {service} as a login in {group} (`auditor db grant-login {role} --user NAME`),"
        " or pass --allow-owner for development"
    )
    if _one(conn, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"):
        raise ConfigError(DATABASE_URL, f"{user!r} is a superuser; {fix}")
    owner = _schema_owner(conn)
    if owner is None:
        raise ConfigError(
            DATABASE_URL,
            f"no {AUDITED_TABLE} table is visible to {user!r}; run `auditor db upgrade`",
        )
    if _one(conn, "SELECT pg_has_role(current_user, %s, 'MEMBER')", (owner,)):
        raise ConfigError(DATABASE_URL, f"{user!r} owns the audited tables; {fix}")
    if not _one(conn, "SELECT pg_has_role(current_user, %s, 'USAGE')", (group,)):
        raise ConfigError(
            DATABASE_URL,
            f"{user!r} is not a member of {group}; "
            f"run `auditor db grant-login {role} --user {user}` as the owner",
        )


def check_database_role(url: URL) -> bool:
    """The worker's start-up guard: a login in auditor_writer, nothing more.

    Returns False when the server cannot be reached: the worker still starts (its spool
    keeps everything until PostgreSQL is back), without the check."""
    try:
        conn = psycopg.connect(libpq_conninfo(url), connect_timeout=10)
    except psycopg.OperationalError:
        return False
    with conn:
        refuse_privileged(conn, "writer", "worker")
    return True
