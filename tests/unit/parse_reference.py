"""The parser's extraction as it read before it was made fast (a closure per call, a keyword
per field, every field through _field): the oracle that tests/unit/test_notifications.py
holds auditor.notifications.parse to. Decoding (orjson, then the standard library for what
it refuses) is the module's own; only the extraction is restated here, plainly."""

from __future__ import annotations

import json
from typing import Any

from auditor.notifications import (
    Record,
    Rejected,
    _check_storable,
    _decode,
    _decode_strictly,
    _field,
    _Inexact,
    _inner,
    _TooLong,
    _Unstorable,
)


def parse(raw: str | bytes | bytearray | Any, *, channel: str | None = None) -> Record | Rejected:
    try:
        if not isinstance(raw, str | bytes | bytearray):
            _check_storable(raw)
            return _extract(raw, None, channel, floats_exact=True)
        message, text = _decode(raw)
        try:
            return _extract(message, text, channel, floats_exact=False)
        except _Inexact:
            return _extract(_decode_strictly(raw)[0], text, channel, floats_exact=True)
    except (_Unstorable, _TooLong) as exc:
        return Rejected(str(exc))
    except Exception as exc:
        return Rejected(f"unparseable ({type(exc).__name__})")


def _extract(
    message: Any, text: str | None, receipt_channel: str | None, *, floats_exact: bool
) -> Record | Rejected:
    if not isinstance(message, dict):
        kind = type(message).__name__ if message is not None else "null"
        kind = {"dict": "object", "list": "array", "str": "string"}.get(kind, kind)
        return Rejected(f"not a JSON object (a JSON {kind})")
    payload_text = text if text is not None else json.dumps(message, ensure_ascii=False)

    envelope, inner = _inner(message)
    resource = inner.get("openmedia")
    om: dict[str, Any] = resource if isinstance(resource, dict) else {}
    capabilities = om.get("capabilities")
    user_data = om.get("userData")

    def _text(value: Any, name: str) -> str | None:
        return _field(value, name, floats_exact)

    message_channel = _text(message.get("channel"), "channel")
    return Record(
        payload_text=payload_text,
        envelope=envelope,
        channel=message_channel or _text(receipt_channel, "channel"),
        message_type=_text(inner.get("messageType"), "messageType"),
        notification_type=_text(inner.get("notificationType"), "notificationType"),
        interaction_id=_text(om.get("id"), "openmedia.id"),
        reference_id=_text(inner.get("referenceId"), "referenceId"),
        media_type=_text(om.get("mediaType"), "openmedia.mediaType"),
        openmedia_type=_text(om.get("openmediaType"), "openmedia.openmediaType"),
        state=_text(om.get("state"), "openmedia.state"),
        capabilities=capabilities if isinstance(capabilities, list) else None,
        user_data=user_data if isinstance(user_data, dict) else None,
        uri=om.get("uri") if isinstance(om.get("uri"), str) else None,
        error_code=_text(inner.get("errorCode"), "errorCode"),
        error_message=inner.get("errorMessage")
        if isinstance(inner.get("errorMessage"), str)
        else None,
        payload=message,
    )
