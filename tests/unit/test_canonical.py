"""Canonical bytes: RFC 8785 exactly, big integers exact, and a fast path never different."""

from __future__ import annotations

import hashlib
import json
from importlib.resources import files
from typing import Any

import pytest
import rfc8785
from hypothesis import example, given
from hypothesis import strategies as st

from auditor.evidence.canonical import (
    ZERO_HASH,
    NotCanonicalizable,
    canonical_bytes,
    canonical_bytes_fast,
    chain_next,
    leaf_hash,
)

_SAFE = 2**53 - 1
_SAMPLE_LINE = files("auditor").joinpath("data/sample.ndjson").read_text("utf-8").splitlines()[1]
# Keys drawn so that UTF-16 and code point order disagree often: BMP private use and
# specials (U+E000..U+FFFF) next to astral characters.
_key_chars = st.characters(codec="utf-8") | st.sampled_from(
    ["a", "b", "\ue000", "\ufb33", "\uffff", "\U0001f600", "\U00010000", "\r", "\x7f"]
)
_keys = st.text(_key_chars, max_size=4)
_texts = st.text(st.characters(codec="utf-8"), max_size=12)


def _json(scalars: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=5),
        max_leaves=25,
    )


_ijson = _json(
    st.none()
    | st.booleans()
    | st.integers(-_SAFE, _SAFE)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _texts
)
_any_json = _json(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.integers(-(2**64), 2**64)
    | st.floats()
    | _texts
)


@given(_ijson)
def test_reference_is_rfc8785_within_the_double_integer_range(value: Any) -> None:
    assert canonical_bytes(value) == rfc8785.dumps(value)


@given(st.floats(allow_nan=False, allow_infinity=False))
@example(333333333.33333329)
@example(1e21)
@example(1e-7)
@example(5e-324)
@example(-0.0)
def test_floats_are_written_in_the_ecmascript_form(number: float) -> None:
    written = canonical_bytes(number)
    assert written == rfc8785.dumps(number)
    assert float(written) == number


def test_rfc8785_section_3_2_2_example() -> None:
    text = (
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}'
    )
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonical_bytes(json.loads(text)) == expected.encode()


def test_keys_sort_by_utf16_code_units_as_rfc8785_section_3_2_3() -> None:
    value = {
        "\u20ac": 0,
        "\r": 0,
        "\ufb33": 0,
        "1": 0,
        "\U0001f600": 0,
        "\u0080": 0,
        "\u00f6": 0,
    }
    keys = list(json.loads(canonical_bytes(value)))
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    assert canonical_bytes_fast(value) == canonical_bytes(value)


@pytest.mark.parametrize("number", [2**53, 2**60 + 1, -(2**63) - 1, 2**64, 10**30 + 7])
def test_integers_beyond_two_to_the_53_keep_every_digit(number: int) -> None:
    assert canonical_bytes({"id": number}) == b'{"id":' + str(number).encode() + b"}"
    assert canonical_bytes(number) != canonical_bytes(number + 1)
    assert canonical_bytes_fast(number) == canonical_bytes(number)


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), [float("-inf")], {1: "x"}, "\ud800", b"bytes", {"a": {1, 2}}],
)
def test_values_without_a_json_form_are_refused_by_both(value: Any) -> None:
    with pytest.raises(NotCanonicalizable):
        canonical_bytes(value)
    with pytest.raises(NotCanonicalizable):
        canonical_bytes_fast(value)


@given(_any_json)
@example({"\U0001f600": 1, "\ufb33": 2})
@example({"a": 1.0, "b": "x:1.5"})
@example({"t": "2026-11-02T09:00:21.628Z", "n": 7})
@example([(1, 2), 2**64, -(2**63)])
def test_fast_path_is_byte_identical_to_the_reference(value: Any) -> None:
    try:
        expected = canonical_bytes(value)
    except NotCanonicalizable:
        with pytest.raises(NotCanonicalizable):
            canonical_bytes_fast(value)
        return
    assert canonical_bytes_fast(value) == expected


def test_fast_path_takes_a_gws_payload_without_falling_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from auditor.evidence import canonical

    payload = json.loads(_SAMPLE_LINE)
    expected = canonical_bytes(payload)

    def no_fallback(value: Any) -> bytes:
        raise AssertionError("fell back to the reference")

    monkeypatch.setattr(canonical, "canonical_bytes", no_fallback)
    assert canonical_bytes_fast(payload) == expected


def test_leaf_hash_is_rfc6962_and_the_chain_starts_at_zero() -> None:
    assert leaf_hash(b"") == bytes.fromhex(
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )
    first = chain_next(ZERO_HASH, leaf_hash(b"a"))
    assert first == hashlib.sha256(bytes(32) + hashlib.sha256(b"\x00a").digest()).digest()
    assert chain_next(first, leaf_hash(b"b")) != chain_next(first, leaf_hash(b"c"))
    with pytest.raises(ValueError, match="32-byte"):
        chain_next(b"short", leaf_hash(b"a"))
