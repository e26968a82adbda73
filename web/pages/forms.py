"""Reading the pages' query parameters with the API's own schemas (web/schemas.py), after
turning what HTML forms send into what the API accepts: empty fields dropped, a
datetime-local value (no offset) read as UTC."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError

_LOCAL = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?")
TIME_FIELDS = ("from", "to", "as_of")


def form_values(args: Mapping[str, str], names: tuple[str, ...]) -> dict[str, str]:
    """The named parameters that were filled in, times given without an offset taken as UTC."""
    found: dict[str, str] = {}
    for name in names:
        value = (args.get(name) or "").strip()
        if not value:
            continue
        if name in TIME_FIELDS and _LOCAL.fullmatch(value):
            value += "+00:00"
        found[name] = value
    return found


def load(schema: Schema, values: dict[str, str]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """(parsed values, []) or ({}, [(parameter, reason), ...])."""
    try:
        return schema.load(values, unknown=EXCLUDE), []
    except ValidationError as exc:
        return {}, _flatten(exc.messages)


def _flatten(messages: Any) -> list[tuple[str, str]]:
    if isinstance(messages, dict):
        return [
            (
                str(name),
                " ".join(str(m) for m in reasons) if isinstance(reasons, list) else str(reasons),
            )
            for name, reasons in messages.items()
        ]
    return [("", str(messages))]
