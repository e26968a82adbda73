"""The shapes rows take on their way out, derived from the Table declarations in auditor.db.

auditor.db names each table's columns once. Everything that lists them again is derived here:
the JSON objects PostgreSQL builds for the API (events, interactions, the access log,
findings), the CSV export's header and cells, and (in web/schemas.py) the API's response
schemas. A shape only says what differs from "every column under its own name": a column
renamed for the API, one the API does not show (with the reason), one rendered by an
expression. So a column added to a table reaches every shape of it with no other edit
(tests/unit/test_shapes.py checks that the derived shapes agree).

API names follow one rule: the columns holding a GWS field keep GWS's spelling
(``media_type`` is ``mediaType``, ``last_reference_id`` is ``last_referenceId``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Integer,
    Numeric,
    SmallInteger,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import INET, JSONB, UUID

from auditor import db

# snake_case column suffix -> the GWS field it holds, as GWS spells it
GWS_FIELDS = {
    "message_type": "messageType",
    "notification_type": "notificationType",
    "reference_id": "referenceId",
    "media_type": "mediaType",
    "openmedia_type": "openmediaType",
}

Kind = Literal["text", "integer", "number", "boolean", "timestamp", "object", "json", "list"]


def api_name(column: str) -> str:
    """The GWS naming rule: ``last_notification_type`` -> ``last_notificationType``."""
    for suffix, gws in GWS_FIELDS.items():
        if column == suffix:
            return gws
        if column.endswith("_" + suffix):
            return column[: -len(suffix)] + gws
    return column


def _is_json_object(column: Column[object]) -> bool:
    """A CHECK constraint keeps the jsonb column an object (so its text starts with `{`)."""
    wanted = f"jsonb_typeof({column.name}) = 'object'"
    table = column.table
    return any(
        isinstance(c, CheckConstraint) and str(c.sqltext) == wanted for c in table.constraints
    )


def kind_of(column: Column[object]) -> Kind:
    """The JSON kind of a column's values as the API writes them."""
    sql_type = column.type
    if isinstance(sql_type, DateTime):
        return "timestamp"
    if isinstance(sql_type, BigInteger | Integer | SmallInteger):
        return "integer"
    if isinstance(sql_type, Numeric):
        return "number"
    if isinstance(sql_type, Boolean):
        return "boolean"
    if isinstance(sql_type, JSONB):
        return "object" if _is_json_object(column) else "json"
    if isinstance(sql_type, ARRAY):
        return "list"
    if isinstance(sql_type, Text | UUID | INET):
        return "text"
    raise TypeError(f"no API kind for column {column.name} of type {sql_type!r}")


@dataclass(frozen=True)
class Field:
    """One field of a shape: its API name, the SQL giving its value, its kind."""

    name: str  # as the API writes it
    column: str | None  # the table's column (None: an added field)
    sql: str  # the expression (over the table's columns) giving the value
    kind: Kind
    nullable: bool


@dataclass(frozen=True)
class Shape:
    """A table as the API shows it."""

    table: Table
    renamed: Mapping[str, str] = field(default_factory=dict)  # column -> API name
    hidden: Mapping[str, str] = field(default_factory=dict)  # column -> why it is not shown
    expressions: Mapping[str, str] = field(default_factory=dict)  # column -> SQL for its value
    added: tuple[Field, ...] = ()  # fields that are no column of the table, placed first

    def __post_init__(self) -> None:
        names = {c.name for c in self.table.columns}
        unknown = {*self.renamed, *self.hidden, *self.expressions} - names
        if unknown:
            raise ValueError(f"{self.table.name} has no column(s) {sorted(unknown)}")

    @property
    def fields(self) -> tuple[Field, ...]:
        shown = tuple(
            Field(
                name=self.renamed.get(c.name) or api_name(c.name),
                column=c.name,
                sql=self.expressions.get(c.name, c.name),
                kind=kind_of(c),
                nullable=bool(c.nullable),
            )
            for c in self.table.columns
            if c.name not in self.hidden
        )
        return self.added + shown

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def column(self, name: str) -> Field:
        """The field showing a column."""
        for found in self.fields:
            if found.column == name:
                return found
        raise KeyError(name)

    def json_sql(self) -> str:
        """One row as the API shows it, a JSON text built by PostgreSQL (jsonb values are not
        re-encoded by Python; times come out in ISO 8601 with their offset)."""
        pairs = ", ".join(f"'{f.name}', {f.sql}" for f in self.fields)
        return f"json_build_object({pairs})::text"


EVENT = Shape(
    db.events,
    renamed={"id": "event_id"},
    hidden={"receipt_id": "the worker's idempotency key, not part of what GWS sent"},
)

INTERACTION = Shape(
    db.interactions,
    hidden={"user_data_event_id": "the projection's bookkeeping (which event set user_data)"},
)

ACCESS = Shape(
    db.access_log,
    renamed={"token_name": "token"},
    expressions={"client": "host(client)"},  # the address, without the /32 inet shows
)

# bi_v1.lifecycle_findings: the summary table with each code's explanation joined in.
FINDING = Shape(
    db.bi_findings,
    added=(Field("explanation", None, "explanation", "text", nullable=False),),
)


# --- CSV (the events export) ----------------------------------------------------------------

# OWASP CSV injection: a cell starting with one of these is a formula to a spreadsheet.
CSV_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_CODES = ", ".join(str(ord(c)) for c in CSV_FORMULA_STARTS)


def _csv_text(f: Field) -> str:
    """The cell's text. Times as the JSON forms write them (ISO 8601 with T and offset)."""
    if f.kind == "timestamp":
        return f"to_json({f.sql}) #>> '{{}}'"
    if f.kind in ("text",) and f.sql == f.column:
        return f.sql
    if f.kind in ("object", "json", "list"):
        return f"to_jsonb({f.sql})::text" if f.kind == "list" else f"{f.sql}::text"
    return f"({f.sql})::text"


def _never_formula(f: Field, table: Table) -> bool:
    """Cells that cannot start with a formula character, so guarding them would only compute
    them again: an identity (positive), a time (a year first; BC is a suffix), a jsonb kept
    an object by a CHECK constraint (`{` first)."""
    if f.kind == "object" or f.kind == "timestamp":
        return True
    column = table.columns[f.column] if f.column is not None else None
    return column is not None and column.identity is not None


def csv_cells(shape: Shape) -> tuple[str, ...]:
    """One SQL expression per CSV cell, with a `'` before a cell a spreadsheet would run (the
    raw value stays in NDJSON). PostgreSQL's COPY does the RFC 4180 quoting."""
    cells = []
    for f in shape.fields:
        text = _csv_text(f)
        if _never_formula(f, shape.table):
            cells.append(text)
        else:
            cells.append(
                f"CASE WHEN ascii({text}) IN ({_FORMULA_CODES}) THEN '''' || {text} ELSE {text} END"
            )
    return tuple(cells)
