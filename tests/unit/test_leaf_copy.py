"""verify's fast path in C (auditor/evidence/_leafcopy.c): from a binary COPY stream, the
reference's leaf hash of each row or the row left to Python, never another hash; a repeated
id reported, whichever order; a malformed stream a ValueError, never a crash; no leak.

The streams are built here as PostgreSQL writes them (binary COPY: header, rows of
length-prefixed fields, trailer; jsonb as version 1 and its text), with JSON texts in
PostgreSQL's style (its escapes, spaces, keys in any order)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import uuid
from array import array
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from auditor.evidence import batches
from auditor.evidence.canonical import leaf_hash
from auditor.evidence.leaves import SOURCES, leaf_bytes, load_json
from auditor.store import leaf_copy
from auditor.store.leaf_copy import CopyPlan
from tests.helpers import truncations_not_refused
from tests.leaks import assert_no_leak, rss_kib

hash_copy = leaf_copy.hash_copy
pytestmark = pytest.mark.skipif(hash_copy is None, reason="_leafcopy not built or switched off")

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
PLAN = CopyPlan("event")
EVENT_KINDS = SOURCES["event"].kinds
HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
TRAILER = b"\xff\xff"


def _field(kind: str, value: Any) -> bytes:
    if value is None:
        return struct.pack("!i", -1)
    if kind == "text":
        data = value.encode()
    elif kind == "integer":
        data = struct.pack("!q", value)
    elif kind == "uuid":
        data = value.bytes
    elif kind == "timestamp":
        data = struct.pack("!q", (value - EPOCH) // timedelta(microseconds=1))
    elif kind == "json":
        data = b"\x01" + value.encode()
    else:
        raise AssertionError(kind)
    return struct.pack("!i", len(data)) + data


def _row(row: dict[str, Any], json_text: str) -> bytes:
    """One event row as COPY (SELECT id, <the plan's columns>) writes it."""
    fields = [_field("integer", row["id"])]
    for prefix, kind in PLAN.fields:
        if kind == leaf_copy.K_CONST:
            continue
        name = prefix.decode()[1:-2]
        value = json_text if name == "payload" else row[name]
        fields.append(_field(EVENT_KINDS[name], value))
    return struct.pack("!h", len(fields)) + b"".join(fields)


def _stream(rows: list[bytes]) -> bytes:
    return HEADER + b"".join(rows) + TRAILER


def _event(event_id: int, payload: Any = None, **columns: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(EVENT_KINDS)
    row.update(
        id=event_id,
        receipt_id=uuid.UUID(int=event_id * 7919 % 2**128),
        received_at=EPOCH + timedelta(days=9800, microseconds=event_id % 10**9),
        kind="notification",
        account="agent001",
        payload={"data": {"n": event_id}} if payload is None else payload,
    )
    row.update(columns)
    return row


def _pg_text(value: Any, spaced: bool = True) -> str:
    """JSON text as PostgreSQL's jsonb output writes it: its escapes (json.dumps without
    ensure_ascii makes the same ones), ", " and ": " between items."""
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": ") if spaced else None)


def _reference(row: dict[str, Any], json_text: str) -> bytes:
    return leaf_hash(leaf_bytes("event", {**row, "payload": load_json(json_text)}))


def _answer(data: bytes) -> tuple[dict[int, bytes], set[int], set[int]]:
    assert hash_copy is not None
    ids, hashes, twice, left = hash_copy(PLAN.fields, data)
    assert len(hashes) == 32 * (len(ids) // 8)
    ids_array, twice_array, left_array = array("q"), array("q"), array("q")
    ids_array.frombytes(ids)
    twice_array.frombytes(twice)
    left_array.frombytes(left)
    assert list(ids_array) == sorted(set(ids_array))
    table = {i: hashes[at * 32 : at * 32 + 32] for at, i in enumerate(ids_array)}
    return table, set(twice_array), set(left_array)


def _needs_python(value: Any) -> bool:
    """What the module's note says C leaves to Python, for a value json.dumps writes."""
    if isinstance(value, float):
        return True
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return False
    if isinstance(value, int):
        return not -(2**63) <= value < 2**63
    if isinstance(value, list):
        return any(_needs_python(item) for item in value)
    return any(
        any(c < " " or c in '"\\' or ord(c) > 0xFFFF for c in key) or _needs_python(item)
        for key, item in value.items()
    )


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 0, -1])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=20,
)
texts = st.none() | st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
payloads = st.dictionaries(st.text(max_size=8), json_values, max_size=6)
# microseconds since EPOCH of every instant PostgreSQL and Python both hold (years 1..9999)
micros_in_range = st.integers(
    min_value=(datetime(1, 1, 1, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1),
    max_value=(datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) - EPOCH)
    // timedelta(microseconds=1),
)
event_ids = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@settings(max_examples=100, deadline=None)
@given(
    payload=payloads,
    spaced=st.booleans(),
    channel=texts,
    state=texts,
    micros=micros_in_range,
    event_id=event_ids,
)
@example(
    payload={"b": 1, "a": [1.5, {"z\u00e9": "\x01\x7f\u2028", "z": "\ud7ff\U0001f600"}]},
    spaced=True,
    channel='x"\\\n\x1f',
    state=None,
    micros=0,
    event_id=1,
).via("escapes, a float, unsorted keys")
@example(
    payload={"\U0001f600": 1, "\uffff": 2},
    spaced=False,
    channel=None,
    state=None,
    micros=-1,
    event_id=0,
).via("keys beyond U+FFFF")
def test_c_gives_the_reference_hash_or_leaves_the_row_to_python(
    payload: dict[str, Any],
    spaced: bool,
    channel: str | None,
    state: str | None,
    micros: int,
    event_id: int,
) -> None:
    row = _event(
        event_id,
        payload,
        channel=channel,
        state=state,
        received_at=EPOCH + timedelta(microseconds=micros),
    )
    text = _pg_text(payload, spaced)
    table, twice, left = _answer(_stream([_row(row, text)]))
    assert not twice
    if event_id in left:
        assert _needs_python(payload), f"left to Python without a documented reason: {text}"
    else:
        assert not _needs_python(payload)
        assert table == {event_id: _reference(row, text)}


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('{"a": 1.0}', "a fraction"),
        ('{"a": 1e3}', "an exponent"),
        ('{"a": -0}', "-0"),
        ('{"a": 9223372036854775808}', "beyond int64"),
        ('{"a": -9223372036854775809}', "below int64"),
        ('{"a": 12345678901234567890}', "20 digits"),
        ('{"a\\n": 1}', "an escape in a key"),
        ('{"\U0001f600": 1}', "a key beyond U+FFFF"),
        ('{"a": "\\u00e9"}', "an escape PostgreSQL does not write"),
        ('{"a": "\\u001F"}', "uppercase hex"),
        ('{"a": "\\n\\u000a"}', "\\u000a where RFC 8785 writes \\n"),
        ('{"a": "\\/"}', "an escaped solidus"),
        ('{"a": 1, "a": 2}', "a repeated key"),
        ('{"a": [' * 70 + "]" * 70 + "}", "deeper than MAX_DEPTH"),
        ('{"a": tru}', "not JSON"),
        ('{"a": 1} x', "text after the value"),
        ('{"a": "open', "an open string"),
    ],
)
def test_what_c_does_not_write_exactly_is_left_to_python(text: str, why: str) -> None:
    table, _, left = _answer(_stream([_row(_event(5), text), _row(_event(6), '{"b": 2}')]))
    assert left == {5}, why
    assert set(table) == {6}


def test_a_timestamp_outside_years_1_to_9999_is_left_to_python() -> None:
    stream = bytearray(_stream([_row(_event(1), "{}"), _row(_event(2), "{}")]))
    # received_at is a plan field; patch both rows' 8 bytes: infinity, and the year 10000
    for event_id, micros in ((1, 2**63 - 1), (2, 252455616000000000)):
        old = struct.pack(
            "!q", (_event(event_id)["received_at"] - EPOCH) // timedelta(microseconds=1)
        )
        at = stream.index(old)
        stream[at : at + 8] = struct.pack("!q", micros)
    table, _, left = _answer(bytes(stream))
    assert left == {1, 2}
    assert not table


@pytest.mark.parametrize("forged_first", [True, False])
def test_an_id_met_twice_is_reported_whichever_row_comes_first(forged_first: bool) -> None:
    genuine = _row(_event(7), '{"a": 1}')
    forged = _row(_event(7, received_at=EPOCH), '{"forged": true}')
    rows = [_row(_event(6), "{}"), *([forged, genuine] if forged_first else [genuine, forged])]
    table, twice, left = _answer(_stream([*rows, _row(_event(8), "{}")]))
    assert twice == {7}
    assert set(table) == {6, 8}
    assert not left


def test_an_id_met_twice_is_reported_even_when_one_row_is_left_to_python() -> None:
    table, twice, left = _answer(
        _stream([_row(_event(7), '{"a": 1.5}'), _row(_event(7), '{"a": 1}')])
    )
    assert twice == {7}
    assert not table
    assert not left


def test_an_empty_stream_has_no_rows() -> None:
    assert _answer(_stream([])) == ({}, set(), set())


GOOD = _stream([_row(_event(i), _pg_text({"n": i, "s": "x" * i})) for i in range(1, 4)])


def test_every_truncation_of_a_stream_is_a_value_error() -> None:
    assert hash_copy is not None
    copy = hash_copy
    assert truncations_not_refused(lambda data: copy(PLAN.fields, data), GOOD, "binary COPY") == []


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (b"PGCOPX\n\xff\r\n\x00" + GOOD[11:], "signature"),
        (GOOD + b"\x00", "bytes after the trailer"),
        (GOOD[:11] + struct.pack("!i", 1 << 16) + GOOD[15:], "critical flag"),
        (GOOD[:15] + struct.pack("!i", 1 << 30) + GOOD[19:], "header extension"),
        (GOOD[:19] + struct.pack("!h", 3) + GOOD[21:], "field count"),
        (GOOD[:21] + struct.pack("!i", 4) + GOOD[25:], "id not 8 bytes"),
    ],
)
def test_a_malformed_stream_is_a_value_error(data: bytes, what: str) -> None:
    assert hash_copy is not None
    with pytest.raises(ValueError, match="binary COPY"):
        hash_copy(PLAN.fields, data)


@settings(max_examples=120, deadline=None)
@given(st.data())
def test_random_damage_to_a_stream_raises_or_answers_but_never_crashes(data: st.DataObject) -> None:
    assert hash_copy is not None
    stream = bytearray(GOOD)
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(stream) - 1))
        stream[at] = data.draw(st.integers(0, 255))
    with contextlib.suppress(ValueError):
        hash_copy(PLAN.fields, bytes(stream))


def test_a_bad_plan_is_refused() -> None:
    assert hash_copy is not None
    with pytest.raises(TypeError):
        hash_copy(((b"x", "text"),), GOOD)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kind"):
        hash_copy(((b"x", 99),), GOOD)
    with pytest.raises(TypeError):
        hash_copy([(b"x", 1)], GOOD)  # type: ignore[arg-type]


def outcome_streams() -> list[bytes]:
    """One stream of each outcome: hashed rows, a fallback, a repeated id, an error."""
    return [
        GOOD,
        _stream([_row(_event(1), '{"a": 1.5}')]),
        _stream([_row(_event(1), "{}"), _row(_event(1), "{}")]),
        GOOD[:-1],
    ]


def test_no_leak_over_many_calls_of_every_outcome() -> None:
    """RSS flat (within 2 MiB) over 200,000 calls: hashed rows, a fallback, a repeated id,
    an error. (bench/leafcopy_rss.py runs the same for 1,000,000 calls and prints RSS.)"""
    assert hash_copy is not None
    streams = outcome_streams()
    for stream in streams:  # warm up: caches, the allocator's arenas
        for _ in range(2000):
            with contextlib.suppress(ValueError):
                hash_copy(PLAN.fields, stream)
    before = rss_kib()
    for _ in range(50_000):
        for stream in streams:
            with contextlib.suppress(ValueError):
                hash_copy(PLAN.fields, stream)
    assert rss_kib() - before < 2048


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3000), st.randoms())
def test_c_gives_a_batchs_leaf_hash_as_the_reference(count: int, rng: Any) -> None:
    joined = rng.randbytes(32 * count)
    assert leaf_copy.batch_leaf_hash(joined) == batches.leaf_hash_of_joined(joined)


@pytest.mark.parametrize("joined", [b"", b"x" * 31, b"x" * 33])
def test_a_batch_of_no_whole_hashes_is_a_value_error(joined: bytes) -> None:
    with pytest.raises(ValueError, match="32-byte"):
        leaf_copy.batch_leaf_hash(joined)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3000), st.randoms())
def test_c_gives_every_audit_path_in_a_batch_as_the_reference(count: int, rng: Any) -> None:
    joined = rng.randbytes(32 * count)
    paths = leaf_copy.batch_joined_paths(joined)
    assert paths == batches.joined_paths(batches.split(joined))


@pytest.mark.parametrize("joined", [b"", b"x" * 31, b"x" * 33])
def test_audit_paths_of_no_whole_hashes_are_a_value_error(joined: bytes) -> None:
    with pytest.raises(ValueError, match="32-byte"):
        leaf_copy.batch_joined_paths(joined)


def _hash_as(kind: str, leaf: bytes) -> bytes | memoryview | None:
    right = hashlib.sha256(leaf).digest()
    return {
        "right": right,
        "right view": memoryview(right),
        "none": None,
        "other": hashlib.sha256(leaf + b"x").digest(),
        "short": right[:31],
        "long": right + b"\x00",
    }[kind]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.binary(max_size=300),
            st.sampled_from(["right", "right view", "none", "other", "short", "long"]),
        ),
        max_size=40,
    )
)
def test_c_finds_the_leaves_whose_hash_is_not_the_sealed_one_as_python_does(
    cases: list[tuple[bytes, str]],
) -> None:
    leaves: list[bytes | memoryview] = [
        memoryview(leaf) if n % 2 else leaf for n, (leaf, _) in enumerate(cases)
    ]
    hashes = [_hash_as(kind, leaf) for leaf, kind in cases]
    expected = [n for n, (_, kind) in enumerate(cases) if kind not in ("right", "right view")]
    assert leaf_copy.leaf_mismatches(leaves, hashes) == expected
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(leaf_copy, "hash_copy", None)  # the Python branch, as AUDITOR_NATIVE=0
        assert leaf_copy.leaf_mismatches(leaves, hashes) == expected


@pytest.mark.parametrize(
    ("leaves", "hashes", "error"),
    [
        ([b"a"], [], ValueError),
        ([b"a", 1], [None, None], TypeError),
        ([b"a", b"b"], [None, 7], TypeError),
        ((b"a",), [None], TypeError),
    ],
)
def test_leaf_mismatches_refuses_what_is_not_two_lists_of_bytes(
    leaves: Any, hashes: Any, error: type[Exception]
) -> None:
    from auditor.evidence import _leafcopy

    with pytest.raises(error):
        _leafcopy.leaf_mismatches(leaves, hashes)


def test_no_leak_in_the_export_helpers() -> None:
    """Audit paths and mismatches, every outcome, errors included: reference counts and
    memory as they were (tests/leaks.py); the paths' own buffer is malloc'd, so RSS too."""
    from auditor.evidence import _leafcopy

    joined = os.urandom(32 * 2001)
    leaves = [os.urandom(100) for _ in range(50)]
    hashes: list[bytes | None] = [hashlib.sha256(leaf).digest() for leaf in leaves]
    hashes[3], hashes[7] = None, b"short"

    def run(rounds: int) -> None:
        for _ in range(rounds):
            _leafcopy.batch_paths(joined[: 32 * 7])
            _leafcopy.leaf_mismatches(leaves, hashes)
            with contextlib.suppress(TypeError):
                _leafcopy.leaf_mismatches([b"a", 1], [None, None])
            with contextlib.suppress(ValueError):
                _leafcopy.batch_paths(b"x")

    assert_no_leak(run, [joined, *leaves[:3], hashes[0]], warm=500, rounds=5000)
    before = rss_kib()
    for _ in range(300):
        _leafcopy.batch_paths(joined)
    assert rss_kib() - before < 2048
