"""Query-parameter mixins of issue 12: `as_of` (answers as known at T) and `userData.KEY`
filters, shared by the search and timeline schemas (web/schemas.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from apiflask import Schema, fields
from marshmallow import ValidationError, pre_load, validates_schema

from auditor.store.userdata import KEY_RULE, MAX_FILTERS, PARAM_PREFIX

ISO = "ISO 8601 date-time with an offset, e.g. 2026-11-02T09:00:00+00:00"
MIN_YEAR, MAX_YEAR = 1900, 9000
# Years 1900..9000, then the rest of an RFC 3339 date-time (the `format` checks the rest).
YEAR_PATTERN = "^(19[0-9]{2}|[2-8][0-9]{3}|9000)-"


def instant(name: str, description: str) -> fields.AwareDateTime:
    return fields.AwareDateTime(
        data_key=name,
        format="iso",
        error_messages={
            "invalid": f"expected {ISO}",
            "invalid_awareness": f"has no offset; expected {ISO}",
        },
        metadata={
            "description": f"{description}; years {MIN_YEAR}..{MAX_YEAR}",
            "pattern": YEAR_PATTERN,
        },
    )


def check_instant(value: datetime, name: str) -> None:
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValidationError("is out of range", name) from None
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValidationError(f"year must be between {MIN_YEAR} and {MAX_YEAR}", name)


class AsOf(Schema):
    as_of = instant(
        "as_of",
        "as known at this time: only rows stored (not received) at or before it count, the "
        "projection is the one they imply, coverage as known then; not in the future, " + ISO,
    )

    @validates_schema
    def _check_as_of(self, data: dict[str, Any], **_: Any) -> None:
        value = data.get("as_of")
        if value is None:
            return
        check_instant(value, "as_of")
        if value > datetime.now(UTC):
            raise ValidationError("is in the future; nothing is known about it yet", "as_of")


USER_DATA_DOC = (
    f"User-data filters: `{PARAM_PREFIX}KEY=VALUE` query parameters (KEY: {KEY_RULE}), up to "
    f"{MAX_FILTERS}, ANDed. `VALUE` matches a string exactly (or the number or boolean it "
    "spells); `^VALUE` matches strings starting with VALUE; `\\VALUE` matches a value that "
    "itself starts with ^ or \\. Exact matches use an index of the values each interaction "
    "held; a prefix is checked on the rows the other filters select. A malformed key or value "
    "is a 400 naming the parameter."
)


class UserDataParams(Schema):
    """`userData.KEY` parameters are read by the view (auditor.store.userdata): their names
    are not fixed, so they are taken out before the fixed parameters are validated."""

    @pre_load
    def _without_user_data(self, data: Any, **_: Any) -> dict[str, Any]:
        return {k: data[k] for k in data if not str(k).startswith(PARAM_PREFIX)}
