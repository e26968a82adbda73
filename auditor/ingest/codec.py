"""JSON for the receive loop: orjson's speed with the standard library's exactness.

aiocometd decodes every response, and the worker serialises each message again for the
spool, so both directions sit on the hot path (together a third of the worker's CPU with
the standard library). orjson is several times faster, but where it differs from the
standard library it would change what is stored, and a message's text must keep every
value GWS sent:

* orjson turns integers beyond 64 bits into floats silently; text holding a run of 19 or
  more digits (possibly such an integer, possibly only a long string) is left to the
  standard library;
* orjson refuses NaN, Infinity, numbers that overflow a double and unpaired surrogates,
  which the standard library accepts: those responses fall back to it too.

What the standard library decoded is re-serialised by it as well (orjson would write NaN
as null), recognisable by its dict subclass. Whatever goes to the spool is then stored
exactly or quarantined with the reason by the storage core's parser.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_COMPACT = (",", ":")
# Digits to "1", everything else to "0": a run of 19 digits is then a substring search, two
# passes in C (a tenth of the cost of the regex [0-9]{19}, which was a sixth of the receive
# loop's time at 1,000 notifications/s).
_DIGIT_MAP = bytes(0x31 if 0x30 <= i <= 0x39 else 0x30 for i in range(256))
_LONG_RUN = b"1" * 19


def _long_digit_run(data: bytes) -> bool:
    return _LONG_RUN in data.translate(_DIGIT_MAP)


class _StdlibDecoded(dict[str, Any]):
    """An object the standard library decoded: serialise it with the standard library."""


def loads(text: str | bytes) -> Any:
    try:
        data = text.encode() if isinstance(text, str) else text
    except UnicodeEncodeError:  # an unpaired surrogate: only the standard library takes it
        return json.loads(text, object_pairs_hook=_StdlibDecoded)
    if _long_digit_run(data):
        return json.loads(text, object_pairs_hook=_StdlibDecoded)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(text, object_pairs_hook=_StdlibDecoded)


def dumps(value: Any) -> str:
    """Compact JSON text of a value that loads() returned (or that the worker built)."""
    if type(value) is dict:
        try:
            return orjson.dumps(value).decode()
        except TypeError:  # orjson.JSONEncodeError: e.g. a key that is not a string
            pass
    return json.dumps(value, separators=_COMPACT)
