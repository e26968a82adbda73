"""API bearer tokens: the secret is shown once at creation; only its sha256 is stored."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from auditor.errors import UserError

ROLES = ("reader", "exporter", "admin")
# Each role may do what the roles before it may.
ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}
PREFIX = "aud_"
# api_tokens.last_used_at may be up to a minute stale (auditor_authenticate, in SQL)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


@dataclass(frozen=True)
class Token:
    id: int
    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def role_allows(role: str, needed: str) -> bool:
    return ROLE_RANK.get(role, -1) >= ROLE_RANK[needed]


def create(conn: psycopg.Connection[Any], name: str, role: str) -> str:
    """Store a new token and return its secret (the only time it exists outside its holder)."""
    if not _NAME.match(name):
        raise UserError(
            f"token name {name!r} is not allowed; use 1..64 letters, digits, '.', '_', '@', '-'"
        )
    if role not in ROLES:
        raise UserError(f"role {role!r} is unknown; expected one of {', '.join(ROLES)}")
    secret = PREFIX + secrets.token_urlsafe(32)
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO api_tokens (name, role, token_hash) VALUES (%s, %s, %s)"
            " ON CONFLICT (name) DO NOTHING RETURNING id",
            (name, role, token_hash(secret)),
        )
        if cur.fetchone() is None:
            raise UserError(f"a token named {name!r} exists already; revoke it or pick another")
    return secret


def list_tokens(conn: psycopg.Connection[Any]) -> list[Token]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id, name, role, created_at, revoked_at, last_used_at FROM api_tokens"
            " ORDER BY name"
        )
        return [Token(*row) for row in cur.fetchall()]


def revoke(conn: psycopg.Connection[Any], name: str) -> bool:
    """Revoke by name; False when no live token has that name."""
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE api_tokens SET revoked_at = now() WHERE name = %s AND revoked_at IS NULL"
            " RETURNING id",
            (name,),
        )
        return cur.fetchone() is not None


def verify(conn: psycopg.Connection[Any], secret: str) -> Token | None:
    """The live token with this secret, or None (unknown or revoked); records its use.

    Through auditor_authenticate (SECURITY DEFINER): the API role cannot read api_tokens, so
    the hashes it can pass to auditor_log_access are those of secrets clients presented."""
    if not secret.startswith(PREFIX) or len(secret) > 200:
        return None
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id, name, role, created_at, revoked_at, last_used_at"
            " FROM auditor_authenticate(%s)",
            (token_hash(secret),),
        )
        row = cur.fetchone()
    return None if row is None else Token(*row)
