"""The services' logins in the test cluster: one login per group role, as a deployment has.

The worker and the API under test connect as these, never as the superuser that owns the
tables. The cluster asks every login but the bootstrap superuser for its password
(auditor.pgserver), so these passwords are really checked."""

from __future__ import annotations

import secrets

import psycopg
from sqlalchemy.engine import URL

from auditor.config import libpq_conninfo
from auditor.roles import grant_login

LOGINS = {
    "writer": "auditor_test_worker",
    "api": "auditor_test_api",
    "reader": "auditor_test_reader",
    "bi": "auditor_test_bi",
    "verifier": "auditor_test_verifier",
    "retention": "auditor_test_retention",
}
# New each test session; grant_login updates the logins if they exist already.
PASSWORDS = {role: secrets.token_urlsafe(16) for role in LOGINS}


def create_logins(url: URL) -> None:
    """Create (or update) the three logins; ``url`` is a migrated database, as its owner."""
    with psycopg.connect(libpq_conninfo(url)) as conn:
        for role, user in LOGINS.items():
            grant_login(conn, role, user, PASSWORDS[role])
        conn.commit()


def as_login(url: URL, role: str) -> URL:
    """The same database, as the login of ``role`` (writer, api or reader)."""
    return url.set(username=LOGINS[role], password=PASSWORDS[role])
