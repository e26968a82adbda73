"""Reading covered rows back for their leaves: one query shape per source, derived from the
leaf fields (auditor.evidence.leaves), never a column list written by hand. Timestamps,
UUIDs and bytea come back already written as the leaf writes them (LeafEncoder formatted)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import psycopg
from psycopg import sql

from auditor.evidence.canonical import leaf_hash
from auditor.evidence.leaves import SOURCES, LeafEncoder

# What each source covers: every row, except coverage intervals while they are open.
_COVERED = {"coverage": sql.SQL("ended_at IS NOT NULL")}


# Columns as the leaf writes them, formatted by PostgreSQL: turning text into datetimes and
# UUIDs in Python only to format them back costs verify more than everything else together.
_FORMATTED = {
    # jsonb as text: its leaf is the value parsed from it (leaves.canonical_json).
    "json": "{}::text",
    "timestamp": """to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')""",
    "uuid": "{}::text",
    "inet": "{}::text",  # with the prefix length: 127.0.0.1/32
    "bytes": "translate(encode({}, 'base64'), E'\\n', '')",
}


def _columns(source: str) -> sql.Composable:
    kinds = SOURCES[source].kinds
    return sql.SQL(", ").join(
        sql.SQL(_FORMATTED.get(kind, "{}")).format(sql.Identifier(name))
        for name, kind in kinds.items()
    )


def select_range(source: str) -> sql.Composed:
    """Rows of a source with lo <= id <= hi, in fields order (id among them)."""
    spec = SOURCES[source]
    return sql.SQL("SELECT {} FROM {} WHERE id >= %s AND id <= %s").format(
        _columns(source), sql.Identifier(spec.table.name)
    )


def select_ids(source: str) -> sql.Composed:
    """Rows of a source whose id is in a list (one parameter: the list), in fields order."""
    spec = SOURCES[source]
    return sql.SQL("SELECT {} FROM {} WHERE id = ANY(%s)").format(
        _columns(source), sql.Identifier(spec.table.name)
    )


def _unsealed(source: str) -> sql.Composable:
    """Covered rows of a source that have no place in the record yet (alias t)."""
    where = sql.SQL(
        "NOT EXISTS (SELECT FROM record AS r WHERE r.source = {} AND r.source_id = t.id)"
    ).format(sql.Literal(source))
    if source == "event":
        # or in a format-2 batch row (docs/evidence.md): its id range. Written as a set so
        # PostgreSQL can hash-anti-join it (a probe per event would be a nested loop).
        where = sql.SQL(
            "{} AND NOT EXISTS (SELECT FROM (SELECT generate_series(b.source_id,"
            " b.source_id + b.leaf_count - 1) AS id FROM record AS b WHERE b.source = 'batch')"
            " AS c WHERE c.id = t.id)"
        ).format(where)
    if source in _COVERED:
        where = sql.SQL("{} AND t.{}").format(where, _COVERED[source])
    return where


def select_unsealed(source: str) -> sql.Composed:
    """Covered rows of a source that have no place in the record yet, in id order."""
    return sql.SQL("SELECT {} FROM {} AS t WHERE {} ORDER BY t.id").format(
        _columns(source), sql.Identifier(SOURCES[source].table.name), _unsealed(source)
    )


def count_unsealed(source: str) -> sql.Composed:
    return sql.SQL("SELECT count(*) FROM {} AS t WHERE {}").format(
        sql.Identifier(SOURCES[source].table.name), _unsealed(source)
    )


class Hasher:
    """Leaf hashes of rows of one source as select_* return them."""

    def __init__(self, source: str) -> None:
        self.encoder = LeafEncoder(source, formatted=True)
        self.id_index = self.encoder.fields.index("id")

    def leaf(self, row: tuple[Any, ...]) -> bytes:
        return leaf_hash(self.encoder.encode(row))

    def leaves(self, rows: Iterable[tuple[Any, ...]]) -> Iterator[tuple[int, bytes]]:
        index = self.id_index
        for row in rows:
            yield int(row[index]), self.leaf(row)


def rows_by_id(
    conn: psycopg.Connection[Any], source: str, lo: int, hi: int
) -> dict[int, tuple[Any, ...]]:
    index = SOURCES[source].fields.index("id")
    with conn.cursor() as cur:
        cur.execute(select_range(source), (lo, hi))
        # fetchall builds the rows in one call; iterating the cursor costs a call per row.
        return {int(row[index]): row for row in cur.fetchall()}
