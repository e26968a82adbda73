"""events.csv of an evidence pack, written here from the rows events.ndjson is made of.

It used to be PostgreSQL's COPY (FORMAT csv, HEADER) of the same events, a second query
(on a second connection) that found, sorted and formatted every event again: about half of
PostgreSQL's CPU for a pack. The rows the NDJSON is built from already hold every column
(the leaf's runs of ``"name":value`` and the jsonb column as its text, auditor.store.
leaf_sql), so the CSV is written from them, byte for byte what COPY wrote
(tests/integration/test_pack_csv.py compares the two on awkward values):

- columns: ``position`` then the event's leaf fields in their order; a header line of the
  names; rows end with ``\\n``;
- NULL is an empty field; a value is quoted (``"``, inner quotes doubled) when it is empty
  or holds ``,``, ``"``, ``\\n`` or ``\\r``; nothing else is quoted or escaped;
- every value as PostgreSQL's output function writes it: text as it is, integers in
  decimal, a uuid in lowercase with hyphens, jsonb as ``jsonb::text`` (the very bytes the
  row carries), a timestamptz in the ISO DateStyle at UTC: ``2026-12-03 03:22:20.1234+00``,
  fraction without trailing zeros, none when zero (the pack's transaction sets UTC; the ISO
  DateStyle is PostgreSQL's default, and the one written here whatever the session's).

The C helper (auditor/evidence/_leafc.c ``csv_rows``) writes a chunk's rows; it answers None
for a chunk it does not handle exactly, and ``python_rows`` (the reference) writes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from auditor.evidence.leaves import SOURCES
from auditor.evidence.native import leafc
from auditor.store.leaf_sql import LeafQuery

_FIELDS = SOURCES["event"].fields
_KINDS = SOURCES["event"].kinds
# Kinds whose value the runs carry as a JSON string of PostgreSQL's text output (or, for
# timestamps, of to_char's fixed form); "integer" as a JSON number; "json" is a column.
_SUPPORTED = {"text", "integer", "uuid", "timestamp", "json"}
if not set(_KINDS.values()) <= _SUPPORTED:  # a new kind of event column: write it here first
    raise RuntimeError(f"events.csv cannot write {set(_KINDS.values()) - _SUPPORTED}")

HEADER = ",".join(("position", *_FIELDS)).encode() + b"\n"


def _quoted(text: bytes) -> bytes:
    if text == b"" or b"," in text or b'"' in text or b"\n" in text or b"\r" in text:
        return b'"' + text.replace(b'"', b'""') + b'"'
    return text


def _timestamp(leaf_form: str) -> str:
    """to_char's ``YYYY-MM-DDTHH:MI:SS.USZ`` (the leaf's form) as timestamptz_out at UTC."""
    if len(leaf_form) != 27 or leaf_form[10] != "T" or leaf_form[19] != "." or leaf_form[26] != "Z":
        # the rows' times were loaded as datetimes (years 1..9999) before: cannot happen
        raise ValueError(f"unexpected timestamp form {leaf_form!r}")
    fraction = leaf_form[20:26].rstrip("0")
    return f"{leaf_form[:10]} {leaf_form[11:19]}{'.' + fraction if fraction else ''}+00"


class CsvRows:
    """The CSV lines of event rows whose leaf pieces (LeafQuery("event") columns) start at
    column ``at`` and whose record position is column ``position``."""

    def __init__(self, at: int, position: int = 0) -> None:
        self.at = at
        self.position = position
        query = LeafQuery("event")
        self.json_names = [name for name in sorted(_FIELDS) if _KINDS[name] == "json"]
        self.width = query.width  # id, run, json, run, ...
        self._native = leafc.csv_rows if leafc is not None else None
        # what the C helper needs: the fields in order with their kinds (it checks the runs
        # carry exactly these names, in this order, around the json columns)
        self._spec = (
            tuple(name.encode() for name in _FIELDS),
            tuple(_KINDS[name] for name in _FIELDS),
        )

    def lines(self, rows: Sequence[Sequence[Any]]) -> bytes:
        if self._native is not None:
            out = self._native(list(rows), self.at, self.position, *self._spec)
            if out is not None:
                return out
        return self.python_rows(rows)

    def python_rows(self, rows: Sequence[Sequence[Any]]) -> bytes:
        """The reference: each run read back as JSON (orjson reads to_json's escapes
        exactly), each value written as PostgreSQL's text output, then CSV-quoted."""
        at = self.at
        out: list[bytes] = []
        for row in rows:
            values: dict[str, Any] = {}
            for index in range(len(self.json_names) + 1):
                run = bytes(row[at + 1 + 2 * index])
                if run:
                    values.update(orjson.loads(b"{" + run + b"}"))
            for index, name in enumerate(self.json_names):
                value = row[at + 2 + 2 * index]
                values[name] = None if value is None else bytes(value)  # jsonb::text as is
            position = row[self.position]
            fields = [b"" if position is None else b"%d" % position]
            for name in _FIELDS:
                value = values.get(name)
                if value is None:
                    fields.append(b"")
                    continue
                kind = _KINDS[name]
                if kind == "integer":
                    fields.append(b"%d" % value)
                elif kind == "timestamp":
                    fields.append(_quoted(_timestamp(value).encode()))
                elif kind == "json":
                    fields.append(_quoted(value))
                else:
                    fields.append(_quoted(value.encode()))
            out.append(b",".join(fields))
        out.append(b"")
        return b"\n".join(out)
