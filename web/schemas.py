"""Request and response schemas: apiflask validates requests with them and derives the
OpenAPI document from them."""

from __future__ import annotations

import re
from typing import Any, cast

from apiflask import Schema, fields, validators
from marshmallow import ValidationError, validates_schema

from auditor import shapes
from auditor.store import timeline as store_timeline
from web.query_params import (
    ISO,
    AsOf,
    UserDataParams,
    check_instant,
    instant,
)
from web.strict import NO_CONTROL_PATTERN

MAX_TEXT = 256
_DIGITS = re.compile(r"[0-9]{1,9}")


class Digits(fields.Integer):
    """An integer written in ASCII digits only: no sign, no `_`, no other scripts' digits."""

    default_error_messages = {"invalid": "must be ASCII digits only, e.g. 100"}  # noqa: RUF012

    def __init__(self, *args: Any, max_digits: int = 9, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._digits = _DIGITS if max_digits == 9 else re.compile(f"[0-9]{{1,{max_digits}}}")

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, str) and not self._digits.fullmatch(value):
            raise self.make_error("invalid")
        result: int = super()._deserialize(value, attr, data, **kwargs)
        return result


def _text(description: str = "exact match") -> fields.String:
    # Control characters are refused before validation (web/strict.py); the pattern says so.
    return fields.String(
        validate=validators.Length(1, MAX_TEXT),
        metadata={"description": description, "pattern": NO_CONTROL_PATTERN},
    )


_instant = instant


def field_of(f: shapes.Field, description: str | None = None) -> fields.Field[Any]:
    """The response field showing one field of a shape (auditor.shapes)."""
    options: dict[str, Any] = {"required": True, "allow_none": f.nullable}
    if description is not None:
        options["metadata"] = {"description": description}
    if f.kind == "text":
        return fields.String(**options)
    if f.kind == "integer":
        return fields.Integer(**options)
    if f.kind == "number":
        return fields.Float(**options)
    if f.kind == "boolean":
        return fields.Boolean(**options)
    if f.kind == "timestamp":
        return fields.DateTime(**options)
    if f.kind == "object":
        return fields.Dict(**options)
    if f.kind == "list":
        return fields.List(fields.String(), **options)
    return fields.Raw(**options)


def shape_schema(
    name: str, shape: shapes.Shape, described: dict[str, str] | None = None
) -> type[Schema]:
    """The response schema of a shape: one field per field of the shape, in its order."""
    described = described or {}
    unknown = set(described) - set(shape.names)
    if unknown:
        raise ValueError(f"{name} has no field(s) {sorted(unknown)}")
    return cast(
        type[Schema],
        Schema.from_dict(
            {f.name: field_of(f, described.get(f.name)) for f in shape.fields}, name=name
        ),
    )


class _Range(Schema):
    from_ = _instant("from", "start of the range (inclusive), not after `to`, " + ISO)
    to = _instant("to", "end of the range (exclusive), " + ISO)

    @validates_schema
    def _check_range(self, data: dict[str, Any], **_: Any) -> None:
        for key, name in (("from_", "from"), ("to", "to")):
            value = data.get(key)
            if value is not None:
                check_instant(value, name)
        start, end = data.get("from_"), data.get("to")
        if start is not None and end is not None and start > end:
            raise ValidationError("must not be after `to` (an impossible range)", "from")


class Paging(_Range):
    order = fields.String(
        load_default="newest",
        validate=validators.OneOf(["newest", "oldest"]),
        metadata={"description": "newest first (default) or oldest first"},
    )
    limit = Digits(
        load_default=100,
        validate=validators.Range(1, 1000),
        metadata={"description": "page size, 1..1000 (default 100)"},
    )
    cursor = fields.String(
        validate=validators.Length(1, 512),
        metadata={
            "description": "next_cursor of the previous page (same filters and order); "
            "anything else is a 400",
            "pattern": "^[A-Za-z0-9_-]*$",
        },
    )


class EventKeys(Schema):
    """The filters an event and what is said of it (a finding) share."""

    interactionId = _text()
    account = _text("the agent session the event came from")


class _EventFilters(EventKeys):
    """Every filter of queries.EVENT_EQUALS (tests/unit/test_shapes.py keeps them equal)."""

    referenceId = _text()
    mediaType = _text()
    openmediaType = _text()
    state = _text()
    notificationType = _text()
    messageType = _text()
    channel = _text()
    kind = fields.String(validate=validators.OneOf(["notification", "snapshot"]))


class EventQuery(_EventFilters, Paging, AsOf, UserDataParams):
    pass


class ExportQuery(_EventFilters, _Range):
    format = fields.String(
        load_default="ndjson",
        validate=validators.OneOf(["ndjson", "csv"]),
        metadata={"description": "ndjson (default) or csv"},
    )


class InteractionQuery(Paging, AsOf, UserDataParams):
    state = _text()
    mediaType = _text()
    openmediaType = _text()
    account = _text("an account that saw the interaction")
    ever = fields.Boolean(
        load_default=False,
        metadata={
            "description": "user-data filters match any value each key has held (from the "
            "events), not only the current one"
        },
    )


class InteractionLookupQuery(AsOf):
    pass


class TimelineQuery(AsOf):
    limit = Digits(
        load_default=store_timeline.DEFAULT_PAGE,
        validate=validators.Range(1, store_timeline.MAX_PAGE),
        metadata={
            "description": f"events per page, 1..{store_timeline.MAX_PAGE} "
            f"(default {store_timeline.DEFAULT_PAGE})"
        },
    )
    cursor = fields.String(
        validate=validators.Length(1, 512),
        metadata={
            "description": "next_cursor of the previous page (same interaction and as_of); "
            "anything else is a 400",
            "pattern": "^[A-Za-z0-9_-]*$",
        },
    )


class AccessLogQuery(Paging):
    token = _text("name of the token that made the request")
    role = fields.String(validate=validators.OneOf(["reader", "exporter", "admin"]))
    endpoint = _text("request path, e.g. /api/v1/events")
    status = Digits(
        validate=validators.Range(100, 599), metadata={"description": "HTTP status answered"}
    )


class CoverageQuery(_Range):
    account = _text("only this account (default: every account ever covered)")


# --- responses ---------------------------------------------------------------------------


class Gap(Schema):
    account = fields.String(required=True)
    from_ = fields.DateTime(data_key="from", required=True)
    to = fields.DateTime(required=True)


class Purged(Schema):
    """A month whose events retention dropped (docs/retention.md)."""

    partition = fields.String(required=True)
    from_ = fields.DateTime(data_key="from", required=True)
    to = fields.DateTime(required=True)
    rows = fields.Integer(required=True)
    purged_at = fields.DateTime(required=True)
    receipt_position = fields.Integer(
        required=True, allow_none=True, metadata={"description": "the receipt in the record"}
    )


_STATUS = "complete | gaps | purged (listened to and stored, then dropped by retention)"


class CoverageSummary(Schema):
    complete = fields.Boolean(
        required=True,
        allow_none=True,
        metadata={
            "description": "null when no time range could be determined; false when part of "
            "the range has gaps or was purged"
        },
    )
    status = fields.String(allow_none=True, metadata={"description": _STATUS})
    from_ = fields.DateTime(data_key="from", allow_none=True)
    to = fields.DateTime(allow_none=True)
    gaps = fields.List(fields.Nested(Gap), required=True)
    purged = fields.List(fields.Nested(Purged))


Event = shape_schema("Event", shapes.EVENT)


class EventPage(Schema):
    items = fields.List(fields.Nested(Event), required=True)
    next_cursor = fields.String(required=True, allow_none=True)
    coverage = fields.Nested(CoverageSummary, required=True)


Interaction = shape_schema("Interaction", shapes.INTERACTION)


class InteractionPage(Schema):
    items = fields.List(fields.Nested(Interaction), required=True)
    next_cursor = fields.String(required=True, allow_none=True)
    coverage = fields.Nested(CoverageSummary, required=True)


AccessEntry = shape_schema(
    "AccessEntry",
    shapes.ACCESS,
    described={
        "token": "name of the token (null: none)",
        "filters": "query parameters as sent",
        "client": "the client's IP address",
        "outcome": "answered; for an export: started, then completed, cut or failed in a "
        "second row that `follows` the first",
        "sha256": "a completed export's hash",
        "error": "a failed export's error class",
    },
)


class AccessLogPage(Schema):
    items = fields.List(fields.Nested(AccessEntry), required=True)
    next_cursor = fields.String(required=True, allow_none=True)


class UserDataDiff(Schema):
    added = fields.Dict(required=True)
    changed = fields.Dict(required=True, metadata={"description": "key -> {from, to}"})
    removed = fields.List(fields.String(), required=True)


# A timeline entry as the API shows it: the fields of store.timeline.TimelineEntry that show
# a column of events, under the column's API name, then what the timeline adds. (Its userData
# is shown as its diff; the payload is the export's.) web/api.py serialises by this table.
TIMELINE_COLUMNS = {
    shapes.EVENT.column(column).name: attribute
    for column, attribute in store_timeline.ENTRY_COLUMNS.items()
}
TimelineEvent = Schema.from_dict(
    {
        **{
            name: field_of(
                shapes.EVENT.column(column),
                {
                    "stored_at": "when it was stored (as_of compares this)",
                    "kind": "notification or snapshot",
                }.get(name),
            )
            for column, name in zip(store_timeline.ENTRY_COLUMNS, TIMELINE_COLUMNS, strict=True)
        },
        "snapshot": fields.Boolean(
            required=True, metadata={"description": "state re-read after a gap"}
        ),
        "capabilities": fields.Raw(required=True, allow_none=True),
        "user_data_diff": fields.Nested(UserDataDiff, required=True, allow_none=True),
    },
    name="TimelineEvent",
)


class Timeline(Schema):
    interaction = fields.Nested(
        Interaction,
        required=True,
        metadata={"description": "the projection (as of `as_of` when given)"},
    )
    events = fields.List(
        fields.Nested(TimelineEvent),
        required=True,
        metadata={"description": "one page, in event id order; diffs continue across pages"},
    )
    coverage_gaps = fields.List(
        fields.Nested(Gap),
        required=True,
        metadata={
            "description": "gaps of the accounts involved over the whole lifetime (the same "
            "on every page)"
        },
    )
    next_cursor = fields.String(
        required=True, allow_none=True, metadata={"description": "null: the last page"}
    )
    as_of = fields.DateTime(required=True, allow_none=True)
    purged = fields.List(
        fields.Nested(Purged),
        required=True,
        metadata={"description": "months of its lifetime whose events retention dropped"},
    )


class Interval(Schema):
    worker_id = fields.String(required=True)
    channels = fields.List(fields.String(), required=True)
    from_ = fields.DateTime(data_key="from", required=True)
    to = fields.DateTime(required=True)
    live = fields.Boolean(required=True)
    end_reason = fields.String(required=True, allow_none=True)


class AccountCoverage(Schema):
    account = fields.String(required=True)
    intervals = fields.List(fields.Nested(Interval), required=True)
    gaps = fields.List(fields.Nested(Gap), required=True)


class CoverageReport(Schema):
    from_ = fields.DateTime(data_key="from", required=True)
    to = fields.DateTime(required=True)
    complete = fields.Boolean(required=True)
    status = fields.String(required=True, metadata={"description": _STATUS})
    accounts = fields.List(fields.Nested(AccountCoverage), required=True)
    gaps = fields.List(fields.Nested(Gap), required=True)
    purged = fields.List(fields.Nested(Purged), required=True)


class InvalidParam(Schema):
    name = fields.String(required=True)
    reason = fields.String(required=True)


class Problem(Schema):
    type = fields.String(required=True)
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    detail = fields.String(required=True)
    invalid_params = fields.List(fields.Nested(InvalidParam))


# GET /interactions/{id} (its own class: apispec registers each class under one name).
InteractionDetail = shape_schema("InteractionDetail", shapes.INTERACTION)
