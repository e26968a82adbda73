"""account_leases: which worker holds which account, with its fencing token.

Functions take a connection inside the caller's transaction and never commit (the worker's
lease task owns both: auditor/ingest/leases.py). A hand-over (another worker's expired
lease, or a new row) takes the identity's next value as its fence; the same worker's
re-claim keeps its fence (no hand-over happened). A released lease is expired, not deleted,
so its token stays current until another worker claims the account.
"""

from __future__ import annotations

from typing import Any

import psycopg

_CLAIM = """
INSERT INTO account_leases (account, worker_id, acquired_at, renewed_at, expires_at)
VALUES (%(account)s, %(me)s, now(), now(), now() + %(ttl)s * interval '1 second')
ON CONFLICT (account) DO UPDATE SET worker_id = excluded.worker_id,
    acquired_at = excluded.acquired_at, renewed_at = excluded.renewed_at,
    expires_at = excluded.expires_at,
    fence = CASE WHEN account_leases.worker_id = excluded.worker_id
                 THEN account_leases.fence ELSE excluded.fence END
WHERE account_leases.expires_at < now() OR account_leases.worker_id = excluded.worker_id
RETURNING account, fence
"""
_RENEW = """
UPDATE account_leases SET renewed_at = now(), expires_at = now() + %s * interval '1 second'
WHERE worker_id = %s AND account = ANY(%s) RETURNING account
"""
# Released leases expire now and keep their fence (see the module's docstring).
_RELEASE = """
UPDATE account_leases SET expires_at = now() WHERE worker_id = %s AND account = ANY(%s)
"""
_LIVE_OTHERS = (
    "SELECT count(DISTINCT worker_id) FROM account_leases"
    " WHERE expires_at > now() AND worker_id <> %s"
)
# A hand-over waits for the old holder's writes in flight (they hold the row's FOR KEY SHARE
# lock); a holder frozen inside a transaction must not stall the claimer's other leases.
CLAIM_LOCK_TIMEOUT = "2s"


class BusyLease(Exception):
    """The lease row is locked by its holder's writes in flight: try again next round."""


def claim(conn: psycopg.Connection[Any], account: str, me: str, ttl: float) -> int | None:
    """Take or keep the account's lease; its fence, or None while another worker holds it."""
    row = conn.execute(_CLAIM, {"account": account, "me": me, "ttl": ttl}).fetchone()
    return None if row is None else int(row[1])


def try_claim(conn: psycopg.Connection[Any], account: str, me: str, ttl: float) -> int | None:
    """claim() in a savepoint that waits CLAIM_LOCK_TIMEOUT at most for the row's lock
    (raises BusyLease, the rest of the caller's transaction unharmed)."""
    try:
        with conn.transaction():
            conn.execute(f"SET LOCAL lock_timeout = '{CLAIM_LOCK_TIMEOUT}'")
            fence = claim(conn, account, me, ttl)
            conn.execute("SET LOCAL lock_timeout = 0")
    except psycopg.errors.LockNotAvailable:
        raise BusyLease(account) from None
    return fence


def renew(conn: psycopg.Connection[Any], me: str, accounts: list[str], ttl: float) -> set[str]:
    """Extend `me`'s leases on `accounts`; the ones it still held."""
    return {str(r[0]) for r in conn.execute(_RENEW, (ttl, me, accounts)).fetchall()}


def live_others(conn: psycopg.Connection[Any], me: str) -> int:
    """Workers other than `me` holding an unexpired lease (presence rows included)."""
    row = conn.execute(_LIVE_OTHERS, (me,)).fetchone()
    return int(row[0]) if row else 0


def release(conn: psycopg.Connection[Any], me: str, accounts: list[str]) -> None:
    conn.execute(_RELEASE, (me, accounts))


def remove_presence(conn: psycopg.Connection[Any], presence: str) -> None:
    conn.execute("DELETE FROM account_leases WHERE account = %s", (presence,))
