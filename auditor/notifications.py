"""Pure parsing of one raw Bayeux message into a record, or a quarantine reason. No I/O.

GWS documentation renders a notification three ways, and all are accepted:
``{"data": {...}}``, ``{"channel": ..., "data": {...}}`` and the bare inner object. Any JSON
object becomes a record with whatever could be extracted (unknown channels and messageTypes
included); only what PostgreSQL could not store faithfully as jsonb, or what is not a JSON
object at all, goes to quarantine with a reason. ``parse`` never raises.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Final, TypeVar, dataclass_transform

import orjson

MAX_FIELD_CHARS: Final = 256  # extracted columns are indexed; btree entries must stay small
MAX_DEPTH: Final = 1000  # PostgreSQL takes far deeper jsonb; orjson stops at 1024
_INNER_MARKERS: Final = ("messageType", "notificationType", "openmedia", "referenceId")


_T = TypeVar("_T")


@dataclass_transform(frozen_default=True)
def _read_only(cls: type[_T]) -> type[_T]:
    """A slots dataclass that type checkers hold frozen (mypy refuses an assignment to a
    field), without frozen's run-time __init__: that sets each field through
    object.__setattr__, and made a Record cost 2.2 us to build against 0.5 us (16 fields;
    a parse is about 7 us in all). Nothing assigns to a Record's fields."""
    return dataclass(slots=True)(cls)


@_read_only
class Record:
    """What one notification contributes to the store, besides its receipt."""

    payload_text: str  # the message as JSON text, exactly as stored (jsonb input)
    envelope: str  # where the inner object sat: "data", "bare" (the message itself) or "none"
    channel: str | None
    message_type: str | None
    notification_type: str | None
    interaction_id: str | None
    reference_id: str | None
    media_type: str | None
    openmedia_type: str | None
    state: str | None
    capabilities: list[Any] | None
    user_data: dict[str, Any] | None
    uri: str | None
    error_code: str | None
    error_message: str | None
    # The message as decoded (so the record's leaf need not decode it again).
    payload: Any = None


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str


class _Unstorable(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _Unstorable(f"{name} is not valid JSON")


def _check_storable(value: Any, depth: int = 0) -> None:
    """jsonb refuses NUL characters and lone surrogates, and deep nesting exhausts its stack."""
    if depth > MAX_DEPTH:
        raise _Unstorable(f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        _check_text(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key)
            _check_storable(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_storable(item, depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        raise _Unstorable("holds a number that is too large")


def _check_text(text: str) -> None:
    if "\x00" in text:
        raise _Unstorable("holds a NUL character (\\u0000), which PostgreSQL jsonb cannot store")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _Unstorable(
            "holds an unpaired UTF-16 surrogate, which is not valid Unicode"
        ) from None


def _decode(raw: str | bytes | bytearray) -> tuple[Any, str]:
    """Returns (value, original text) or raises _Unstorable.

    orjson first (the hot path: it already refuses NaN, infinities, lone surrogates and
    invalid UTF-8, and nests at most 1024 deep); whatever it refuses goes through the
    standard library, which says precisely why.
    """
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _decode_strictly(raw)
    text = raw if isinstance(raw, str) else bytes(raw).decode("utf-8")
    if "\\u0000" in text:
        raise _Unstorable("holds a NUL character (\\u0000), which PostgreSQL jsonb cannot store")
    return value, text


def _decode_strictly(raw: str | bytes | bytearray) -> tuple[Any, str]:
    if isinstance(raw, bytes | bytearray):
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Unstorable(f"not UTF-8 text (byte {exc.start})") from None
    else:
        text = raw
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise _Unstorable(f"nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise _Unstorable(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise _Unstorable(f"not storable: {exc}") from None
    _check_storable(value)
    return value, text


class _TooLong(ValueError):
    pass


class _Inexact(Exception):
    """A field needs the exact integer that only the standard library's parser keeps."""


def _field(value: Any, name: str, floats_exact: bool) -> str | None:
    """A scalar rendered as text for an extracted column; None when absent or not a scalar."""
    if value is None:
        return None
    if type(value) is str:  # nearly every field: decided before the isinstance chain
        result = value
    elif isinstance(value, bool):
        return None
    elif isinstance(value, int):
        result = str(value)
    elif isinstance(value, float):
        if not floats_exact and value.is_integer() and abs(value) >= 2**53:
            raise _Inexact  # orjson's reading of a big integer; ask the exact parser
        result = str(int(value)) if value.is_integer() else repr(value)
    elif isinstance(value, str):
        result = value
    else:
        return None
    if len(result) > MAX_FIELD_CHARS:
        raise _TooLong(f"{name} is longer than {MAX_FIELD_CHARS} characters")
    return result


def _inner(message: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    data = message.get("data")
    if isinstance(data, dict):
        return "data", data
    if "data" not in message and any(key in message for key in _INNER_MARKERS):
        return "bare", message  # the bare inner object, as on the Open Media operation pages
    return "none", {}


def openmedia_of(message: dict[str, Any]) -> dict[str, Any]:
    """The openmedia resource inside a stored message, or {} when it has none."""
    resource = _inner(message)[1].get("openmedia")
    return resource if isinstance(resource, dict) else {}


def parse(raw: str | bytes | bytearray | Any, *, channel: str | None = None) -> Record | Rejected:
    """One raw message (JSON text, bytes, or an already-decoded value) → Record or Rejected.

    ``channel`` is the channel the receiver saw the message on; the message's own ``channel``
    field wins when present.
    """
    try:
        if not isinstance(raw, (str, bytes, bytearray)):  # (a tuple: a union is slower)
            _check_storable(raw)
            return _extract(raw, None, channel, False)
        message, text = _decode(raw)
        try:
            return _extract(message, text, channel, True)
        except _Inexact:
            return _extract(_decode_strictly(raw)[0], text, channel, False)
    except (_Unstorable, _TooLong) as exc:
        return Rejected(str(exc))
    except Exception as exc:  # the contract is "never raises"; say what went wrong instead
        return Rejected(f"unparseable ({type(exc).__name__})")


_EMPTY: Final[dict[str, Any]] = {}  # only ever read


def _extract(
    message: Any, text: str | None, receipt_channel: str | None, from_orjson: bool
) -> Record | Rejected:
    """The fast path: nearly every notification's extracted fields are absent or short text
    (a referenceId or errorCode a small integer), and those need none of _field's checks.
    Any other value (a float, a bool, a list, a long text, a str subclass...) sends the
    whole message through _extract_slowly, which decides each field in the documented order
    (so the first too-long field names the reason, and _Inexact still asks for the exact
    parser). Both give the same Record: tests/unit/test_notifications.py checks it against
    the straightforward reading, field by field."""
    if type(message) is not dict:
        return _extract_slowly(message, text, receipt_channel, from_orjson)
    # The text as it arrived; a value handed over already decoded is serialised once.
    payload_text = text if text is not None else json.dumps(message, ensure_ascii=False)
    data = message.get("data")
    if type(data) is dict:
        envelope, inner = "data", data
    else:
        envelope, inner = _inner(message)
    om = inner.get("openmedia", _EMPTY)
    if type(om) is not dict:
        om = om if isinstance(om, dict) else _EMPTY
    get = inner.get
    message_type = get("messageType")
    notification_type = get("notificationType")
    reference_id = get("referenceId")
    error_code = get("errorCode")
    error_message = get("errorMessage")
    get = om.get
    interaction_id = get("id")
    media_type = get("mediaType")
    openmedia_type = get("openmediaType")
    state = get("state")
    uri = get("uri")
    capabilities = get("capabilities")
    user_data = get("userData")
    message_channel = message.get("channel")
    # GWS sends these as numbers. (An integer str() refuses, of more than 4,300 digits, never
    # gets here: the standard library's parser refuses it, and so does json.dumps() above.)
    if type(reference_id) is int:
        reference_id = str(reference_id)
    if type(error_code) is int:
        error_code = str(error_code)
    for value in (
        message_channel,
        receipt_channel,
        message_type,
        notification_type,
        interaction_id,
        reference_id,
        media_type,
        openmedia_type,
        state,
        error_code,
    ):
        if value is not None and (type(value) is not str or len(value) > MAX_FIELD_CHARS):
            return _extract_slowly(message, text, receipt_channel, from_orjson)
    return Record(
        payload_text,
        envelope,
        message_channel or receipt_channel,
        message_type,
        notification_type,
        interaction_id,
        reference_id,
        media_type,
        openmedia_type,
        state,
        capabilities if type(capabilities) is list else _list_or_none(capabilities),
        user_data if type(user_data) is dict else _dict_or_none(user_data),
        uri if type(uri) is str else (uri if isinstance(uri, str) else None),
        error_code,
        error_message
        if type(error_message) is str
        else (error_message if isinstance(error_message, str) else None),
        message,
    )


def _list_or_none(value: Any) -> list[Any] | None:
    return value if isinstance(value, list) else None


def _dict_or_none(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def _extract_slowly(
    message: Any, text: str | None, receipt_channel: str | None, from_orjson: bool
) -> Record | Rejected:
    """Every field decided by _field, in order; what _extract hands over."""
    if not isinstance(message, dict):
        kind = type(message).__name__ if message is not None else "null"
        kind = {"dict": "object", "list": "array", "str": "string"}.get(kind, kind)
        return Rejected(f"not a JSON object (a JSON {kind})")
    payload_text = text if text is not None else json.dumps(message, ensure_ascii=False)
    floats_exact = not from_orjson
    envelope, inner = _inner(message)
    resource = inner.get("openmedia")
    om: dict[str, Any] = resource if isinstance(resource, dict) else {}
    capabilities = om.get("capabilities")
    user_data = om.get("userData")
    message_channel = _field(message.get("channel"), "channel", floats_exact)
    return Record(
        payload_text,
        envelope,
        message_channel or _field(receipt_channel, "channel", floats_exact),
        _field(inner.get("messageType"), "messageType", floats_exact),
        _field(inner.get("notificationType"), "notificationType", floats_exact),
        _field(om.get("id"), "openmedia.id", floats_exact),
        _field(inner.get("referenceId"), "referenceId", floats_exact),
        _field(om.get("mediaType"), "openmedia.mediaType", floats_exact),
        _field(om.get("openmediaType"), "openmedia.openmediaType", floats_exact),
        _field(om.get("state"), "openmedia.state", floats_exact),
        capabilities if isinstance(capabilities, list) else None,
        user_data if isinstance(user_data, dict) else None,
        om.get("uri") if isinstance(om.get("uri"), str) else None,
        _field(inner.get("errorCode"), "errorCode", floats_exact),
        inner.get("errorMessage") if isinstance(inner.get("errorMessage"), str) else None,
        message,
    )
