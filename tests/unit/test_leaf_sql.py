"""The fast leaf encoding verify and packs compare with the record (auditor.store.leaf_sql):
where it is canonical JSON it is the reference's bytes, so equal to a sealed leaf proves
the row; where it is not, it can never equal a sealed leaf."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from auditor.evidence.canonical import canonical_bytes
from auditor.evidence.leaves import load_json
from auditor.store.leaf_sql import unchecked_json
from tests.unit.test_leaves import json_values

# Numbers as other writers (and PostgreSQL, which keeps numeric's scale) spell them.
number_texts = st.sampled_from(
    ["1.0", "100.0", "-0.0", "1e2", "1E-7", "1e21", "1e+16", "1.5e300", "1e400", "0.1",
     "9007199254740993", "9007199254740993.0", "123456789012345678901234567890", "5e-324",
     "18446744073709551616", "-9223372036854775809"]
)  # fmt: skip


def _canonical(text: bytes) -> bytes:
    return canonical_bytes(load_json(text))


def _is_reference_or_not_canonical(text: bytes) -> bool:
    fast = unchecked_json(text)
    return fast == _canonical(text) or _canonical(fast) != fast


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=6), json_values, max_size=5))
def test_unchecked_json_is_the_reference_or_no_canonical_text(value: dict[str, Any]) -> None:
    text = json.dumps(value, ensure_ascii=False).encode()
    assert _is_reference_or_not_canonical(text)


@settings(max_examples=100, deadline=None)
@given(st.lists(number_texts, min_size=1, max_size=3), st.text(max_size=3))
def test_numbers_orjson_writes_differently_never_pass_as_canonical(
    numbers: list[str], key: str
) -> None:
    text = f'{{"k": [{", ".join(numbers)}], {json.dumps(key)}: 1}}'.encode()
    assert _is_reference_or_not_canonical(text)


def test_keys_beyond_the_basic_plane_in_code_point_order_are_not_canonical() -> None:
    # orjson sorts by code point, RFC 8785 by UTF-16 units: U+FF61 < U+1F600 only by code point.
    text = json.dumps({"\U0001f600": 1, "\uff61": 2}, ensure_ascii=False).encode()
    fast = unchecked_json(text)
    assert fast != _canonical(text)
    assert _canonical(fast) != fast
