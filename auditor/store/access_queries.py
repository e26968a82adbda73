"""Read side of the access log: who asked the API what, and what they got."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import psycopg
from psycopg import sql
from psycopg.rows import args_row
from psycopg.types.json import Jsonb

from auditor import shapes
from auditor.store.queries import equals_and_range, where

ACCESS_EQUALS = {"token": "token_name", "role": "role", "endpoint": "endpoint"}

ACCESS_JSON = shapes.ACCESS.json_sql()  # an entry as the API shows it (auditor.shapes)


class AccessRow(NamedTuple):
    id: int
    json: str


@dataclass(frozen=True)
class AccessFilter:
    equals: dict[str, str]  # API name (a key of ACCESS_EQUALS) -> value
    status: int | None = None
    start: datetime | None = None  # at >= start
    end: datetime | None = None  # at < end


def search_access_log(
    conn: psycopg.Connection[Any],
    flt: AccessFilter,
    *,
    newest_first: bool,
    limit: int,
    after_id: int | None = None,
) -> list[AccessRow]:
    """Up to ``limit`` access-log entries, keyset-paged by id."""
    clauses, params = equals_and_range(flt.equals, ACCESS_EQUALS, "at", flt.start, flt.end)
    if flt.status is not None:
        clauses.append(sql.SQL("status = %s"))
        params.append(flt.status)
    if after_id is not None:
        clauses.append(sql.SQL("id < %s" if newest_first else "id > %s"))
        params.append(after_id)
    query = sql.Composed(
        [
            sql.SQL("SELECT id, " + ACCESS_JSON + " FROM access_log"),
            where(clauses),
            sql.SQL(" ORDER BY id DESC" if newest_first else " ORDER BY id"),
            sql.SQL(" LIMIT %s"),
        ]
    )
    with conn.cursor(row_factory=args_row(AccessRow)) as cur:
        cur.execute(query, [*params, limit])
        return cur.fetchall()


@dataclass(frozen=True)
class AccessRecord:
    """One row to append. The database stamps the time and derives the token's name and role
    from ``token_hash`` (None: the request was not authenticated)."""

    token_hash: str | None
    method: str
    endpoint: str
    filters: dict[str, Any]
    status: int
    rows: int | None = None
    client: str | None = None
    outcome: str = "answered"  # answered | started | completed | cut | failed
    follows: int | None = None  # an export's ending row: the id of its `started` row
    sha256: str | None = None
    error: str | None = None


def append(conn: psycopg.Connection[Any], record: AccessRecord) -> int:
    """Append a row through auditor_log_access (the API role has no INSERT); its id."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT auditor_log_access(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                record.token_hash,
                record.method,
                record.endpoint,
                Jsonb(record.filters),
                record.status,
                record.rows,
                record.client,
                record.outcome,
                record.follows,
                record.sha256,
                record.error,
            ),
        )
        row = cur.fetchone()
    assert row is not None
    found: int = row[0]
    return found
