"""Strict reading of the request before any view runs: no control characters in any
parameter, no parameter given twice (every one is single-valued), HEAD refused on /api/.

The same rules are in the OpenAPI document (`pattern` on every string parameter), so a value
the document calls valid is never refused here."""

from __future__ import annotations

import re

from apiflask import HTTPError
from flask import Request

from web.errors import bad_params

# C0 controls, DEL and C1 controls (Unicode category Cc).
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
# For the OpenAPI document (ECMA-262 syntax, as JSON Schema `pattern` expects).
NO_CONTROL_PATTERN = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
CONTROL_REASON = "must not contain control characters (U+0000..U+001F, U+007F..U+009F)"
MAX_PATH_PARAM = 256


def _shown(name: str) -> str:
    return CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", name)[:64]


def check(request: Request) -> None:
    """Raise a 400 naming every offending parameter; None when the request reads cleanly."""
    reasons: dict[str, str] = {}
    for name in request.args:
        values = request.args.getlist(name)
        if CONTROL.search(name):
            reasons[_shown(name)] = "a parameter name " + CONTROL_REASON
        elif len(values) > 1:
            reasons[name] = f"is given {len(values)} times; give it once"
        elif CONTROL.search(values[0]):
            reasons[name] = CONTROL_REASON
    for name, value in (request.view_args or {}).items():
        if not isinstance(value, str):
            continue
        if CONTROL.search(value):
            reasons[name] = CONTROL_REASON
        elif len(value) > MAX_PATH_PARAM:
            reasons[name] = f"is longer than {MAX_PATH_PARAM} characters"
    if reasons:
        raise bad_params(**reasons)


def refuse_head() -> HTTPError:
    """HEAD on /api/ would run the query and send nothing: refused, and logged as such."""
    return HTTPError(
        405,
        "HEAD is not served under /api/ (it would read data and send none); use GET",
        headers={"Allow": "GET"},
    )
