"""The worker's JSON codec: orjson's speed, never a value different from the stdlib's."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from auditor.ingest import codec

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
_messages = st.dictionaries(st.text(), _values, max_size=6)


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON values, with NaN equal to NaN and 1 never equal to 1.0."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if type(a) is not type(b) and not (isinstance(a, dict) and isinstance(b, dict)):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@given(st.lists(_messages, max_size=3))
def test_decoding_then_encoding_keeps_every_value_the_stdlib_would(messages: list[Any]) -> None:
    response = json.dumps(messages)  # a Bayeux response: an array of messages
    decoded = codec.loads(response)
    assert _same(decoded, json.loads(response))
    for message, original in zip(decoded, messages, strict=True):
        assert _same(json.loads(codec.dumps(message)), original)


def test_an_integer_beyond_64_bits_stays_an_exact_integer() -> None:
    big = 2**70 + 1
    [message] = codec.loads(f'[{{"data": {{"n": {big}, "m": -{big}}}}}]')
    assert json.loads(codec.dumps(message)) == {"data": {"n": big, "m": -big}}


def test_nan_and_infinity_survive_as_the_stdlib_writes_them() -> None:
    [message] = codec.loads('[{"a": NaN, "b": -Infinity, "c": 1e999}]')
    assert codec.dumps(message) == '{"a":NaN,"b":-Infinity,"c":Infinity}'


def test_an_unpaired_surrogate_is_kept_escaped() -> None:
    [message] = codec.loads('[{"a": "x\\ud800y"}]')
    assert codec.dumps(message) == '{"a":"x\\ud800y"}'


def test_plain_messages_take_the_fast_path_and_keep_unicode_as_utf8() -> None:
    [message] = codec.loads('[{"channel": "/v2/me/openmedia", "data": {"note": "café"}}]')
    assert type(message) is dict
    assert codec.dumps(message) == '{"channel":"/v2/me/openmedia","data":{"note":"café"}}'


@given(st.binary(max_size=200) | st.text(alphabet='0123456789a,"', max_size=200).map(str.encode))
def test_the_long_digit_check_finds_exactly_the_runs_of_19_digits(data: bytes) -> None:
    assert codec._long_digit_run(data) == bool(re.search(rb"[0-9]{19}", data))
