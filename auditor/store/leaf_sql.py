"""Leaf bytes assembled mostly by PostgreSQL, for reading many rows back (verify, packs).

The leaf of a row (docs/evidence.md) is canonical JSON: its plain fields (text, integers,
times, UUIDs, bytea, inet, arrays) have one fixed form that SQL can write, and PostgreSQL's
``to_json(text)`` escapes exactly as RFC 8785 does (``\\" \\\\ \\b \\t \\n \\f \\r``, other
controls as lowercase ``\\u00xx``, everything else as UTF-8). So the query hands over, per
row, the id, the leaf's text *around* its jsonb columns (runs of ``"name":value`` already
joined, NULL fields left out by ``concat_ws``) and each jsonb column as text; Python only
puts the jsonb value in canonical form (sorted keys, compact) and joins the pieces: no tuple
of sixteen values and no dict per row.

The jsonb value is written by orjson with sorted keys and **no** check for floats, keys
beyond U+FFFF or integers beyond 64 bits (``unchecked_json``): where orjson's form differs
from RFC 8785 there, its bytes are not canonical JSON at all (``100.0``, ``1e+16``, a key
order no canonical text has), so they cannot equal the canonical bytes the record sealed;
where they are canonical they are the reference's bytes (tests/unit/test_leaf_sql.py proves
both over random JSON). So these bytes are only ever *compared* with a sealed leaf hash:
equal proves the row is what was sealed; unequal is checked again the careful way
(auditor.store.sources) before anyone calls the row altered. They are never sealed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from psycopg import sql

from auditor.evidence.canonical import LEAF_PREFIX
from auditor.evidence.leaves import SOURCES, canonical_json

_SORT = orjson.OPT_SORT_KEYS

# A field's JSON value written by PostgreSQL (NULL stays NULL, so concat_ws leaves it out).
_JSON_VALUE = {
    "text": "to_json({})::text",
    "array": "to_json({})::text",
    "integer": "{}::text",
    "timestamp": (
        """'"' || to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || '"'"""
    ),
    "uuid": """'"' || {}::text || '"'""",
    "inet": """'"' || {}::text || '"'""",
    "bytes": """'"' || translate(encode({}, 'base64'), E'\\n', '') || '"'""",
}


def unchecked_json(text: bytes) -> bytes:
    """orjson's sorted compact form of a JSON text (see the module's note); the careful
    form when orjson cannot read or write it (1e400, an integer beyond 64 bits)."""
    try:
        return orjson.dumps(orjson.loads(text), option=_SORT)
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        return canonical_json(text)


class LeafQuery:
    """The select list of one source's leaf pieces and how to join them.

    Columns, in order: id, then alternately a run of plain fields (text, '' when all are
    NULL) and a jsonb column (text or NULL), starting and ending with a run. Text arrives as
    UTF-8 bytes (convert_to), so a binary cursor hands it over without decoding."""

    def __init__(self, source: str, alias: str | None = None) -> None:
        spec = SOURCES[source]
        kinds = spec.kinds
        names = sorted([*spec.fields, "source"])
        runs: list[list[sql.Composable]] = [[]]
        self.json_keys: list[bytes] = []
        for name in names:
            if name == "source":
                runs[-1].append(sql.Literal(f'"source":"{source}"'))
                continue
            column = sql.Identifier(name) if alias is None else sql.Identifier(alias, name)
            if kinds[name] == "json":
                self.json_keys.append(b'"%s":' % name.encode())
                runs.append([])
                continue
            value = sql.SQL(_JSON_VALUE[kinds[name]]).format(column)
            runs[-1].append(sql.SQL("{} || {}").format(sql.Literal(f'"{name}":'), value))
        columns: list[sql.Composable] = [
            sql.Identifier("id") if alias is None else sql.Identifier(alias, "id")
        ]
        for index, run in enumerate(runs):
            columns.append(
                sql.SQL("convert_to(concat_ws(',', {}), 'UTF8')").format(sql.SQL(", ").join(run))
                if run
                else sql.SQL("''::bytea")
            )
            if index < len(self.json_keys):
                name = [n for n in names if kinds.get(n) == "json"][index]
                column = sql.Identifier(name) if alias is None else sql.Identifier(alias, name)
                columns.append(sql.SQL("convert_to({}::text, 'UTF8')").format(column))
        self.columns: sql.Composable = sql.SQL(", ").join(columns)
        self.width = len(columns)
        self.table = spec.table.name
        self.join: Callable[[Sequence[Any], int], bytes] = (
            self._join_one if len(self.json_keys) == 1 else self._join_any
        )

    def _join_one(self, row: Sequence[Any], at: int) -> bytes:
        """Leaf bytes (with the 0x00 leaf prefix) from row[at:at+3]: run, json, run."""
        head, value, tail = row[at], row[at + 1], row[at + 2]
        if value is None or not head or not tail:
            return self._join_any(row, at)
        return b"".join(
            (b"\x00{", head, b",", self.json_keys[0], unchecked_json(value), b",", tail, b"}")
        )

    def _join_any(self, row: Sequence[Any], at: int) -> bytes:
        pieces = [bytes(row[at])]
        for index, key in enumerate(self.json_keys):
            value = row[at + 1 + 2 * index]
            if value is not None:
                pieces.append(key + unchecked_json(value))
            pieces.append(bytes(row[at + 2 + 2 * index]))
        return LEAF_PREFIX + b"{" + b",".join(piece for piece in pieces if piece) + b"}"

    def hashes(self, rows: Sequence[Sequence[Any]], at: int = 1) -> list[bytes]:
        """The leaf hash of each row (its pieces from column ``at`` on)."""
        join = self.join
        sha256 = hashlib.sha256
        return [sha256(join(row, at)).digest() for row in rows]

    def select_range(self) -> sql.Composed:
        """id and pieces of the rows with lo <= id <= hi."""
        return sql.SQL("SELECT {} FROM {} WHERE id >= %s AND id <= %s").format(
            self.columns, sql.Identifier(self.table)
        )
