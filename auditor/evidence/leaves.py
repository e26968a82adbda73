"""Leaf bytes of each covered row: the canonical JSON (RFC 8785) of its audited fields.

The fields come from the Table declarations in auditor.db, never from a list written here:
every column of the table except the few excluded below (each with its reason). A leaf is
the JSON object {"source": <source>, <column>: <value>, ...} where a NULL column is left out
(so a nullable column added later does not change the leaves of rows sealed before it), and
values are written as docs/evidence.md says:

- timestamptz: ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC, always six fraction digits;
- uuid: lowercase, hyphenated; bytea: standard base64 with padding;
- text[]: a JSON array of strings; integers: JSON integers;
- jsonb: the JSON value itself (PostgreSQL's jsonb keeps no key order or spacing; RFC 8785
  gives the one canonical form of the value).

``leaf_bytes`` is the reference (a dict through canonical_bytes); the writer and ``verify``
use ``LeafEncoder``, which builds the same bytes in C (auditor/evidence/_leafc.c, when built
and not switched off by ``AUDITOR_NATIVE=0``), else with orjson, and falls back to the
reference whenever either one's bytes could differ (tests/unit/test_leaves.py and
tests/unit/test_native_leaf.py prove them equal).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from ipaddress import ip_address
from typing import TYPE_CHECKING, Any, NamedTuple
from uuid import UUID

import orjson
from sqlalchemy import ARRAY, BigInteger, DateTime, Integer, LargeBinary, Table, Text
from sqlalchemy.dialects.postgresql import INET, JSONB
from sqlalchemy.dialects.postgresql import UUID as PG_UUID

from auditor import db
from auditor.evidence.canonical import canonical_bytes
from auditor.evidence.native import leafc

if TYPE_CHECKING:
    from auditor.evidence._leafc import Plan


@dataclass(frozen=True)
class LeafSource:
    """A kind of covered row: its name in the record, its table, the columns left out."""

    name: str
    table: Table
    excluded: Mapping[str, str]  # column -> why it is not audited

    @property
    def fields(self) -> tuple[str, ...]:
        """The audited columns, in canonical (sorted) order."""
        # str(): SQLAlchemy's names are a str subclass, and orjson takes only str keys.
        return tuple(sorted(str(c.name) for c in self.table.columns if c.name not in self.excluded))

    @property
    def kinds(self) -> dict[str, str]:
        return {name: _kind(self.table.columns[name].type) for name in self.fields}


_STAMPED = "stamped by PostgreSQL when the row is stored, after the writer hashed it"

SOURCES: dict[str, LeafSource] = {
    source.name: source
    for source in (
        LeafSource("event", db.events, {"stored_at": _STAMPED}),
        LeafSource("quarantine", db.quarantine, {"stored_at": _STAMPED}),
        LeafSource("coverage", db.coverage_intervals, {}),
        LeafSource("access", db.access_log, {}),
        LeafSource("checkpoint", db.checkpoints, {}),
        # Retention (docs/retention.md): legal holds, their releases, purge receipts.
        LeafSource("hold", db.legal_holds, {}),
        LeafSource("release", db.hold_releases, {}),
        LeafSource("purge", db.purges, {}),
    )
}


def _kind(sql_type: Any) -> str:
    if isinstance(sql_type, DateTime):
        return "timestamp"
    if isinstance(sql_type, PG_UUID):
        return "uuid"
    if isinstance(sql_type, LargeBinary):
        return "bytes"
    if isinstance(sql_type, JSONB):
        return "json"
    if isinstance(sql_type, ARRAY):
        return "array"
    if isinstance(sql_type, Integer | BigInteger):
        return "integer"
    if isinstance(sql_type, Text):
        return "text"
    if isinstance(sql_type, INET):
        return "inet"
    raise TypeError(f"no leaf encoding for column type {sql_type!r}")


def timestamp(value: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC, six fraction digits)."""
    offset = value.utcoffset()
    if offset is None:
        raise ValueError("a leaf timestamp must carry its time zone")
    if offset:
        value = value.astimezone(UTC)
    # isoformat ends in +00:00 (6 characters) for an instant in UTC.
    return value.isoformat(timespec="microseconds")[:-6] + "Z"


def _plain(kind: str, value: Any) -> Any:
    """A column value as the JSON value the leaf holds."""
    if kind == "timestamp":
        return timestamp(value)
    if kind == "uuid":
        return str(value if isinstance(value, UUID) else UUID(str(value)))
    if kind == "bytes":
        return base64.b64encode(bytes(value)).decode("ascii")
    if kind == "array":
        return list(value)
    if kind == "inet":
        return _inet(value)
    return value


def _inet(value: Any) -> str:
    """An address as PostgreSQL's inet::text writes it: always with its prefix length."""
    if isinstance(value, str):
        return value if "/" in value else f"{value}/{ip_address(value).max_prefixlen}"
    if hasattr(value, "with_prefixlen"):  # an ip_interface
        return str(value.with_prefixlen)
    return f"{value}/{value.max_prefixlen}"


def leaf_object(source: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON object of one row (the reference form)."""
    spec = SOURCES[source]
    leaf: dict[str, Any] = {"source": source}
    for name, kind in spec.kinds.items():
        value = row[name]
        if value is not None:
            leaf[name] = _plain(kind, value)
    return leaf


def leaf_bytes(source: str, row: Mapping[str, Any]) -> bytes:
    """Reference: RFC 8785 bytes of the row's leaf object."""
    return canonical_bytes(leaf_object(source, row))


# --- the fast path -------------------------------------------------------------------------

# A character beyond U+FFFF (UTF-8 lead byte F0-F4): orjson sorts keys by code point,
# RFC 8785 by UTF-16 code units, and the two orders differ only there.
_ASTRAL = re.compile(rb"[\xf0-\xf4]")
_SORT = orjson.OPT_SORT_KEYS
_DOUBLE_EXACT = 2**53


def _has_float(value: Any) -> bool:
    """Whether a parsed JSON value holds a float (orjson also reads integers beyond 64 bits
    as floats). Written for speed: this runs for every event the writer stores."""
    kind = type(value)
    if kind is dict:
        items = value.values()
    elif kind is list:
        items = value
    else:
        return kind is float
    for item in items:
        kind = type(item)
        if kind is float or ((kind is dict or kind is list) and _has_float(item)):
            return True
    return False


def _number(text: str) -> int | float:
    """A JSON number with a fraction or exponent: integral values beyond 2**53 exactly (as
    PostgreSQL's numeric keeps them, and gives back 1.5e300 as 301 digits), others as the
    nearest double, as RFC 8785 prescribes."""
    exact = Decimal(text)
    if exact == exact.to_integral_value() and abs(exact) >= _DOUBLE_EXACT:
        return int(exact)
    return float(text)


def load_json(text: str | bytes) -> Any:
    """A stored JSON text (as the writer got it, or as PostgreSQL gives it back) as the value
    its leaf holds: the same value whichever of the two texts it is read from."""
    return json.loads(text, parse_float=_number)


class Parsed(NamedTuple):
    """A JSON text with the value a JSON parser already made of it (to skip decoding)."""

    text: str
    value: Any


def canonical_json(text: str | bytes | Parsed) -> bytes:
    """canonical_bytes(load_json(text)), via orjson whenever that is the same bytes: when
    the value holds no float (orjson writes 1.0 and 1e16; RFC 8785 writes 1 and
    10000000000000000) and no character beyond U+FFFF."""
    if isinstance(text, Parsed):
        text, value = text
    else:
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:  # e.g. 1e400, which the exact reading takes
            return canonical_bytes(load_json(text))
    if leafc is not None:
        native = leafc.dumps(value)
        if native is not None:
            return native
    if _has_float(value):
        return canonical_bytes(load_json(text))
    try:
        encoded = orjson.dumps(value, option=_SORT)
    except orjson.JSONEncodeError:  # an exact integer beyond 64 bits
        return canonical_bytes(value)
    if not encoded.isascii() and _ASTRAL.search(encoded):
        return canonical_bytes(value)
    return encoded


def _fragment(text: str | bytes | Parsed) -> orjson.Fragment:
    return orjson.Fragment(canonical_json(text))


def _uuid(value: Any) -> str:
    return str(value) if type(value) is UUID else str(UUID(str(value)))


_CONVERT: dict[str, Callable[[Any], Any] | None] = {
    "text": None,
    "integer": None,
    "timestamp": timestamp,
    "json": _fragment,
    "uuid": _uuid,
    "bytes": lambda value: _plain("bytes", value),
    "array": list,
    "inet": _inet,
}


_PREFORMATTED = ("timestamp", "uuid", "bytes", "inet")


# --- the one-call path: values orjson writes as the leaf does, or else the leaf's string ---
_SORT_UTC_Z = orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z


def _timestamp_inline(value: Any) -> Any:
    # orjson writes an instant in UTC as ...HH:MM:SS.ffffffZ, but drops a zero fraction.
    if type(value) is datetime and value.tzinfo is UTC and value.microsecond:
        return value
    return timestamp(value)


def _uuid_inline(value: Any) -> Any:
    # orjson writes a UUID lowercase and hyphenated, as str() does.
    return value if type(value) is UUID else _uuid(value)


def _json_inline(text: str | bytes | Parsed) -> Any:
    """The payload's value for orjson to write (sorted with the leaf), when that is its
    canonical form: no float (orjson writes 1.0 and 1e16); keys beyond U+FFFF and integers
    beyond 64 bits are caught on the leaf's bytes. Otherwise its canonical bytes."""
    if isinstance(text, Parsed):
        value = text.value
    else:
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:  # e.g. 1e400, which the exact reading takes
            return _fragment(text)
    if _has_float(value):
        return _fragment(text)
    return value


_INLINE: dict[str, Callable[[Any], Any]] = {
    "timestamp": _timestamp_inline,
    "uuid": _uuid_inline,
    "json": _json_inline,
    "bytes": lambda value: _plain("bytes", value),
    "array": list,
    # with its prefix length, as the reference writes it (only formatted rows, whose inet
    # PostgreSQL writes, reach the fast path today: this keeps any other caller exact too)
    "inet": _inet,
}


# What the C encoder is told of each kind of column (a formatted column is text already).
_NATIVE_KINDS = {
    "text": "text",
    "integer": "integer",
    "timestamp": "timestamp",
    "uuid": "uuid",
    "bytes": "bytes",
    "array": "array",
    "inet": "inet",
    "json": "json",
}

# The leaf bytes with RFC 6962's 0x00 prefix (what the leaf hash hashes), or None where only
# the Python path is exact: f(values, *more), the values in the order the caller named.
NativeLeaf = Callable[..., bytes | None]


class LeafEncoder:
    """Leaf bytes of many rows of one source, given as tuples in ``fields`` order with jsonb
    values as JSON text (or Parsed). Same bytes as leaf_bytes of the row with those texts
    loaded by load_json.

    Each row goes to the C encoder first (auditor/evidence/_leafc.c), when it is there; it
    answers None for whatever it does not write exactly (a float, an integer beyond 64 bits,
    a key beyond U+FFFF, a lone surrogate, a type it does not know...), and those rows take
    the Python path below, unchanged."""

    def __init__(self, source: str, *, formatted: bool = False) -> None:
        """``formatted``: timestamps, UUIDs and bytea come as the leaf's strings already
        (auditor.store.sources has PostgreSQL write them)."""
        self.source = source
        self.spec = SOURCES[source]
        self.fields = self.spec.fields
        kinds = self.spec.kinds
        self.formatted = formatted
        self._convert = [
            None if formatted and kinds[name] in _PREFORMATTED else _CONVERT[kinds[name]]
            for name in self.fields
        ]
        self._json = [i for i, name in enumerate(self.fields) if kinds[name] == "json"]
        # The fields the fast path converts (the others are written by orjson as they are).
        self._inline: list[tuple[str, Callable[[Any], Any]]] = [
            (name, _INLINE[kinds[name]])
            for name in self.fields
            if not (formatted and kinds[name] in _PREFORMATTED) and kinds[name] in _INLINE
        ]
        self._native_kinds = {
            name: "text"
            if formatted and kinds[name] in _PREFORMATTED
            else _NATIVE_KINDS[kinds[name]]
            for name in self.fields
        }
        self._native: Plan | None = None if leafc is None else self._plan(self.fields)

    def _plan(self, names: Sequence[str | None], values: Sequence[str] = ()) -> Plan:
        """The C encoder's plan for values given in the order of ``names`` (None: a position
        it skips); the jsonb columns named in ``values`` come as their parsed value."""
        assert leafc is not None
        kinds = [
            "text" if name is None else "value" if name in values else self._native_kinds[name]
            for name in names
        ]
        return leafc.Plan(self.source, names, kinds, orjson.loads, Parsed)

    def native(self, names: Sequence[str | None], values: Sequence[str] = ()) -> NativeLeaf | None:
        """The C encoder of this source's leaf for a caller with the values in its own order
        (``names``, None for a position to skip; every field named once), the jsonb fields in
        ``values`` given as the parsed value itself: it returns the leaf's bytes with the
        0x00 prefix, ready to hash, or None where the caller must take the Python path. None
        when the extension is not there or switched off."""
        if leafc is None:
            return None
        if sorted(name for name in names if name is not None) != list(self.fields):
            raise ValueError("the names must be the leaf's fields, each once")
        plan = self._plan(names, values)
        encode: NativeLeaf = plan.encode_prefixed
        return encode

    def encode(self, values: Sequence[Any]) -> bytes:
        if self._native is not None and isinstance(values, tuple | list):
            encoded: bytes | None = self._native.encode(values)
            if encoded is not None:
                return encoded
        # One dict, NULLs left out, instead of the row's dict and then the leaf's.
        leaf = {
            name: value
            for name, value in zip(self.fields, values, strict=True)
            if value is not None
        }
        encoded = self._encode_leaf(leaf)
        if encoded is None:
            return self.encode_careful(dict(zip(self.fields, values, strict=True)))
        return encoded

    def _encode_leaf(self, leaf: dict[str, Any]) -> bytes | None:
        """One orjson call; None when its bytes could differ from the reference."""
        leaf["source"] = self.source
        for name, convert in self._inline:
            value = leaf.get(name)
            if value is not None:
                leaf[name] = convert(value)
        try:
            encoded = orjson.dumps(leaf, option=_SORT_UTC_Z)
        except orjson.JSONEncodeError:
            return None
        if not encoded.isascii() and _ASTRAL.search(encoded):
            return None
        return encoded

    def encode_row(self, row: Mapping[str, Any]) -> bytes:
        """The leaf of a row given as {field: value} with exactly ``fields`` as keys.

        One orjson call for the whole leaf, the payload's value included (keys sorted at
        every level), UUIDs and most timestamps written by orjson too; whenever its bytes
        could differ from the reference (a float, a key beyond U+FFFF, an integer beyond 64
        bits, a lone surrogate), the row goes the careful way (``encode_careful``).
        """
        if self._native is not None and type(row) is dict:
            native: bytes | None = self._native.encode_mapping(row)
            if native is not None:
                return native
        leaf = {name: value for name, value in row.items() if value is not None}
        encoded = self._encode_leaf(leaf)
        return self.encode_careful(row) if encoded is None else encoded

    def encode_present(self, leaf: dict[str, Any], row: Callable[[], Mapping[str, Any]]) -> bytes:
        """As encode_row, for a caller that built the dict of the row's non-NULL fields
        itself (it is used up); ``row`` gives the whole row when the careful way is needed."""
        if self._native is not None:
            native: bytes | None = self._native.encode_mapping(leaf)
            if native is not None:
                return native
        encoded = self._encode_leaf(leaf)
        return self.encode_careful(row()) if encoded is None else encoded

    def encode_careful(self, row: Mapping[str, Any]) -> bytes:
        """The leaf built field by field, the payload canonicalised on its own."""
        values = [row[name] for name in self.fields]
        leaf: dict[str, Any] = {"source": self.source}
        for name, convert, value in zip(self.fields, self._convert, values, strict=True):
            if value is not None:
                leaf[name] = value if convert is None else convert(value)
        # The keys are column names (ASCII), so orjson's order is RFC 8785's.
        try:
            return orjson.dumps(leaf, option=_SORT)
        except orjson.JSONEncodeError:  # a lone surrogate in a text column: the reference
            if self.formatted:
                raise  # PostgreSQL's text holds no lone surrogate
            plain = dict(zip(self.fields, values, strict=True))
            for index in self._json:
                name = self.fields[index]
                text = plain[name]
                if isinstance(text, Parsed):
                    text = text.text
                plain[name] = None if text is None else load_json(text)
            return leaf_bytes(self.source, plain)
