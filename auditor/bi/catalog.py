"""The BI views as PostgreSQL describes them: columns, types and comments from the catalog."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

CURRENT_VERSION = "bi_v1"
# The order the documentation presents the views in; views not listed follow by name.
PREFERRED_ORDER = (
    "events",
    "interactions",
    "agent_segments",
    "user_data_changes",
    "lifecycle_findings",
    "finding_codes",
    "coverage",
    "daily_volumes",
    "summary_freshness",
)

_COLUMNS = """
SELECT c.relname, obj_description(c.oid, 'pg_class'), a.attname,
       format_type(a.atttypid, a.atttypmod), col_description(c.oid, a.attnum)
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
JOIN pg_attribute AS a ON a.attrelid = c.oid
WHERE n.nspname = %s AND c.relkind = 'v' AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY c.relname, a.attnum
"""

_VERSIONS = r"SELECT nspname FROM pg_namespace WHERE nspname ~ '^bi_v\d+$' ORDER BY nspname"


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    comment: str | None


@dataclass(frozen=True)
class View:
    schema: str
    name: str
    comment: str | None
    columns: tuple[Column, ...]


def _order(name: str) -> tuple[int, str]:
    if name in PREFERRED_ORDER:
        return PREFERRED_ORDER.index(name), name
    return len(PREFERRED_ORDER), name


def views(conn: psycopg.Connection[Any], schema: str = CURRENT_VERSION) -> list[View]:
    """Every view of a BI schema with its columns in order."""
    found: dict[str, tuple[str | None, list[Column]]] = {}
    for view, view_comment, column, type_, comment in conn.execute(_COLUMNS, (schema,)):
        found.setdefault(view, (view_comment, []))[1].append(Column(column, type_, comment))
    return [
        View(schema, name, comment, tuple(columns))
        for name, (comment, columns) in sorted(found.items(), key=lambda item: _order(item[0]))
    ]


def versions(conn: psycopg.Connection[Any]) -> list[str]:
    return [row[0] for row in conn.execute(_VERSIONS)]


def spec(
    conn: psycopg.Connection[Any], schema: str = CURRENT_VERSION
) -> dict[str, list[list[str]]]:
    """The compatibility spec of a version: view -> [[column, type], ...] in column order."""
    return {v.name: [[c.name, c.type] for c in v.columns] for v in views(conn, schema)}


def finding_codes(
    conn: psycopg.Connection[Any], schema: str = CURRENT_VERSION
) -> list[tuple[str, str, str]]:
    query = sql.SQL("SELECT code, explanation, protocol FROM {}.finding_codes ORDER BY code")
    rows = conn.execute(query.format(sql.Identifier(schema)))
    return [(str(c), str(e), str(p)) for c, e, p in rows]
