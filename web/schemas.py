"""Request and response schemas: apiflask validates requests with them and derives the
OpenAPI document from them."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from apiflask import Schema, fields, validators
from marshmallow import ValidationError, validates_schema

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


class _Paging(_Range):
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


class _EventFilters(Schema):
    referenceId = _text()
    mediaType = _text()
    openmediaType = _text()
    state = _text()
    notificationType = _text()
    messageType = _text()
    interactionId = _text()
    account = _text()
    channel = _text()
    kind = fields.String(validate=validators.OneOf(["notification", "snapshot"]))


class EventQuery(_EventFilters, _Paging, AsOf, UserDataParams):
    pass


class ExportQuery(_EventFilters, _Range):
    format = fields.String(
        load_default="ndjson",
        validate=validators.OneOf(["ndjson", "csv"]),
        metadata={"description": "ndjson (default) or csv"},
    )


class InteractionQuery(_Paging, AsOf, UserDataParams):
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


class AccessLogQuery(_Paging):
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


class Event(Schema):
    event_id = fields.Integer(required=True)
    received_at = fields.DateTime(required=True)
    stored_at = fields.DateTime(required=True)
    kind = fields.String(required=True)
    account = fields.String(required=True)
    channel = fields.String(required=True, allow_none=True)
    interaction_id = fields.String(required=True, allow_none=True)
    messageType = fields.String(required=True, allow_none=True)
    notificationType = fields.String(required=True, allow_none=True)
    referenceId = fields.String(required=True, allow_none=True)
    mediaType = fields.String(required=True, allow_none=True)
    openmediaType = fields.String(required=True, allow_none=True)
    state = fields.String(required=True, allow_none=True)
    error_code = fields.String(required=True, allow_none=True)
    error_message = fields.String(required=True, allow_none=True)
    payload = fields.Dict(required=True)


class EventPage(Schema):
    items = fields.List(fields.Nested(Event), required=True)
    next_cursor = fields.String(required=True, allow_none=True)
    coverage = fields.Nested(CoverageSummary, required=True)


class Interaction(Schema):
    interaction_id = fields.String(required=True)
    state = fields.String(required=True, allow_none=True)
    capabilities = fields.Raw(required=True, allow_none=True)
    mediaType = fields.String(required=True, allow_none=True)
    openmediaType = fields.String(required=True, allow_none=True)
    uri = fields.String(required=True, allow_none=True)
    user_data = fields.Dict(required=True, allow_none=True)
    accounts = fields.List(fields.String(), required=True)
    account_states = fields.Dict(required=True)
    first_seen_at = fields.DateTime(required=True)
    last_seen_at = fields.DateTime(required=True)
    completed_at = fields.DateTime(required=True, allow_none=True)
    event_count = fields.Integer(required=True)
    first_event_id = fields.Integer(required=True)
    last_event_id = fields.Integer(required=True)
    last_notificationType = fields.String(required=True, allow_none=True)
    last_referenceId = fields.String(required=True, allow_none=True)


class InteractionPage(Schema):
    items = fields.List(fields.Nested(Interaction), required=True)
    next_cursor = fields.String(required=True, allow_none=True)
    coverage = fields.Nested(CoverageSummary, required=True)


class AccessEntry(Schema):
    id = fields.Integer(required=True)
    at = fields.DateTime(required=True)
    token = fields.String(required=True, allow_none=True, metadata={"description": "null: none"})
    role = fields.String(required=True, allow_none=True)
    method = fields.String(required=True)
    endpoint = fields.String(required=True)
    filters = fields.Dict(required=True, metadata={"description": "query parameters as sent"})
    status = fields.Integer(required=True)
    rows_returned = fields.Integer(required=True, allow_none=True)
    client = fields.String(
        required=True, allow_none=True, metadata={"description": "the client's IP address"}
    )
    outcome = fields.String(
        required=True,
        metadata={
            "description": "answered; for an export: started, then completed, cut or failed "
            "in a second row that `follows` the first"
        },
    )
    follows = fields.Integer(required=True, allow_none=True)
    sha256 = fields.String(
        required=True, allow_none=True, metadata={"description": "a completed export's hash"}
    )
    error = fields.String(
        required=True, allow_none=True, metadata={"description": "a failed export's error class"}
    )


class AccessLogPage(Schema):
    items = fields.List(fields.Nested(AccessEntry), required=True)
    next_cursor = fields.String(required=True, allow_none=True)


class UserDataDiff(Schema):
    added = fields.Dict(required=True)
    changed = fields.Dict(required=True, metadata={"description": "key -> {from, to}"})
    removed = fields.List(fields.String(), required=True)


class TimelineEvent(Schema):
    event_id = fields.Integer(required=True)
    received_at = fields.DateTime(required=True)
    stored_at = fields.DateTime(
        required=True, metadata={"description": "when it was stored (as_of compares this)"}
    )
    account = fields.String(required=True)
    kind = fields.String(required=True, metadata={"description": "notification or snapshot"})
    snapshot = fields.Boolean(required=True, metadata={"description": "state re-read after a gap"})
    channel = fields.String(required=True, allow_none=True)
    notificationType = fields.String(required=True, allow_none=True)
    messageType = fields.String(required=True, allow_none=True)
    state = fields.String(required=True, allow_none=True)
    capabilities = fields.Raw(required=True, allow_none=True)
    referenceId = fields.String(required=True, allow_none=True)
    user_data_diff = fields.Nested(UserDataDiff, required=True, allow_none=True)
    error_code = fields.String(required=True, allow_none=True)
    error_message = fields.String(required=True, allow_none=True)


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


def utc_iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


class InteractionDetail(Interaction):
    """GET /interactions/{id} (its own class: apispec registers each class under one name)."""
