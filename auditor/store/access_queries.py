"""Read side of the access log: who asked the API what, and what they got."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from auditor.store.queries import equals_and_range, where

ACCESS_EQUALS = {"token": "token_name", "role": "role", "endpoint": "endpoint"}

ACCESS_JSON = """json_build_object(
    'id', id, 'at', at, 'token', token_name, 'role', role, 'method', method,
    'endpoint', endpoint, 'filters', filters, 'status', status,
    'rows_returned', rows_returned)::text"""


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
) -> list[tuple[int, str]]:
    """Up to ``limit`` access-log entries as (id, json), keyset-paged by id."""
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
    with conn.cursor() as cur:
        cur.execute(query, [*params, limit])
        return cur.fetchall()
