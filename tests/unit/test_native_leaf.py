"""The C leaf encoder (auditor/evidence/_leafc.c): the reference's bytes or None, never other
bytes; built on this machine kind; no leak or crash on odd input. Where it answers None the
encoder's Python path gives the reference's bytes (or refuses as the reference does)."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from enum import IntEnum
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from auditor.evidence import native
from auditor.evidence.canonical import NotCanonicalizable, canonical_bytes, leaf_hash
from auditor.evidence.leaves import SOURCES, LeafEncoder, Parsed, leaf_bytes, load_json
from auditor.notifications import Record, parse
from auditor.sample import generate
from auditor.store import writer
from auditor.store.receipts import Receipt
from tests.leaks import assert_no_leak

leafc = native.leafc


needs_native = pytest.mark.skipif(leafc is None, reason=f"C encoder {native.UNAVAILABLE}")
pytestmark = needs_native

MAX_DEPTH = 64  # _leafc.c's limit (the module says it too)
INT64 = 2**63

# Strings meant to hit every branch of the string writer: escapes and controls, DEL, Latin-1,
# BMP, astral characters, and surrogate code points (which have no UTF-8 form).
_chars = (
    st.characters(codec="utf-8")
    | st.characters(min_codepoint=0, max_codepoint=0x10FFFF)
    | st.sampled_from(
        [
            *('"', "\\", "\b", "\t", "\n", "\f", "\r", "\x00", "\x1f", "\x7f", "\xe9"),
            *("\uffff", "\ue000", "\U0001f600", "\U00010000", "\ud800", "\udfff"),
        ]
    )
)
_texts = st.text(_chars, max_size=20) | st.text(st.sampled_from('ab"\\\n\x01'), max_size=40)
_keys = st.text(_chars, max_size=5)
_ints = (
    st.integers(-(2**70), 2**70)
    | st.integers(-INT64 - 2, -INT64 + 2)
    | st.integers(INT64 - 2, INT64 + 2)
    | st.integers(-1000, 1000)
)
_scalars = st.none() | st.booleans() | _ints | st.floats() | _texts
json_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(_keys, inner, max_size=6),
    max_leaves=30,
)


def _native_takes(value: Any, depth: int = 0) -> bool:
    """What the C encoder promises to write (its module comment), in Python."""
    kind = type(value)
    if kind is str:
        return not any("\ud800" <= c <= "\udfff" for c in value)
    if kind is int:
        return -INT64 <= value < INT64
    if value is None or kind is bool:
        return True
    if depth > MAX_DEPTH:
        return False
    if kind is list:
        return all(_native_takes(item, depth + 1) for item in value)
    if kind is dict:
        return all(
            type(key) is str and max(key, default="a") <= "\uffff" and _native_takes(key)
            for key in value
        ) and all(_native_takes(item, depth + 1) for item in value.values())
    return False


def _reference(value: Any) -> bytes | None:
    try:
        return canonical_bytes(value)
    except NotCanonicalizable:
        return None


@settings(max_examples=150, deadline=None)
@given(json_values)
@example({"\U0001f600": 1, "\uffff": 2})  # code point and UTF-16 order differ here...
@example({"\ue000": 1, "\U00010000": 2})  # ...and here: the C encoder hands both back
@example([1.0, 1e16, -0.0])
@example({"n": 2**64 - 1})
@example({"s": "\ud83d\ude00"})  # a surrogate pair as two code points: no UTF-8 form
def test_native_json_is_the_reference_or_none(value: Any) -> None:
    assert leafc is not None
    encoded = leafc.dumps(value)
    assert (encoded is not None) == _native_takes(value)
    if encoded is not None:
        assert encoded == _reference(value)


def test_nesting_is_taken_to_its_limit_and_handed_back_beyond() -> None:
    assert leafc is not None
    deep: Any = 1
    for _ in range(MAX_DEPTH + 1):
        deep = [deep]
    assert leafc.dumps(deep) == canonical_bytes(deep)
    assert leafc.dumps([deep]) is None
    very: Any = {}
    for _ in range(100_000):  # far deeper than any C stack would take, were it followed
        very = {"a": very}
    assert leafc.dumps(very) is None


@pytest.mark.parametrize(
    "value",
    [
        (1, 2),
        {1: "a"},
        {"a": {1, 2}},
        [b"bytes"],
        [bytearray(b"x")],
        [IntEnum("E", "A").A],
        {"a": float("nan")},
        [uuid.UUID(int=1)],
        [datetime(2026, 1, 1, tzinfo=UTC)],
        [type("S", (str,), {})("subclass")],
        {type("K", (str,), {})("k"): 1},
        [type("D", (dict,), {})()],
        [type("L", (list,), {})()],
        [object()],
        Parsed("{}", {}),
    ],
)
def test_anything_but_exact_json_types_is_handed_back(value: Any) -> None:
    assert leafc is not None
    assert leafc.dumps(value) is None


def test_long_strings_are_written_whole() -> None:
    assert leafc is not None
    for text in (
        "a" * 3_000_000 + '"\\\n\x01',
        "\xe9\x00" * 1_000_000,
        "\u20ac\n" * 700_000,
        "\U0001f600\x1f" * 500_000,
    ):
        assert leafc.dumps({"k": text}) == canonical_bytes({"k": text})
    assert leafc.dumps(["\U0001f600" * 10_000 + "\udc00"]) is None


# --- rows ----------------------------------------------------------------------------------


class _Odd(tzinfo):
    """A zone at offset zero that is not datetime.UTC (utcoffset is asked)."""

    def utcoffset(self, dt: datetime | None) -> timedelta:
        return timedelta(0)

    def dst(self, dt: datetime | None) -> timedelta:
        return timedelta(0)


class _Broken(tzinfo):
    def utcoffset(self, dt: datetime | None) -> timedelta:
        raise RuntimeError("no offset today")


_zones = st.sampled_from(
    [
        *(UTC, timezone(timedelta(hours=-5)), timezone(timedelta(minutes=1))),
        *(ZoneInfo("UTC"), ZoneInfo("Europe/Paris"), _Odd(), None),
    ]
)
# A day inside the years datetime holds, so that converting to UTC cannot overflow.
_times = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=_zones
)
_uuids = st.uuids() | st.uuids().map(lambda u: str(u).upper())


@st.composite
def event_rows(draw: st.DrawFn) -> dict[str, Any]:
    fields = SOURCES["event"].fields
    row: dict[str, Any] = dict.fromkeys(fields)
    for name in fields:
        row[name] = draw(st.none() | _texts)
    row.update(
        id=draw(_ints),
        receipt_id=draw(_uuids),
        received_at=draw(_times),
        payload=json.dumps(draw(st.dictionaries(_keys, json_values, max_size=5))),
    )
    return row


def _reference_leaf(source: str, row: dict[str, Any]) -> bytes | None:
    plain = dict(row)
    for name, kind in SOURCES[source].kinds.items():
        if kind == "json" and isinstance(plain[name], Parsed):
            plain[name] = load_json(plain[name].text)
        elif kind == "json" and isinstance(plain[name], str | bytes):
            plain[name] = load_json(plain[name])
    try:
        return leaf_bytes(source, plain)
    except (NotCanonicalizable, ValueError):  # a lone surrogate, a naive time
        return None


def _python_encoder(source: str, **kw: Any) -> LeafEncoder:
    encoder = LeafEncoder(source, **kw)
    encoder._native = None
    return encoder


@settings(max_examples=150, deadline=None)
@given(event_rows())
def test_a_native_event_leaf_is_the_reference_and_the_encoder_always_is(
    row: dict[str, Any],
) -> None:
    fields = SOURCES["event"].fields
    values = tuple(row[f] for f in fields)
    reference = _reference_leaf("event", row)
    encoder = LeafEncoder("event")
    assert encoder._native is not None
    encoded = encoder._native.encode(values)
    if encoded is not None:
        assert encoded == reference
    # Whichever way a row goes, the encoder's bytes are the reference's (or it refuses).
    python = _python_encoder("event")
    for each in (encoder, python):
        if reference is None:
            with pytest.raises((ValueError, TypeError)):
                each.encode(values)
        else:
            assert each.encode(values) == reference
            text = row["payload"]
            for parsed in (json.loads(text), orjson.loads(text)):
                assert each.encode_row({**row, "payload": Parsed(text, parsed)}) == reference


def test_what_the_native_row_encoder_hands_back() -> None:
    """None for the values only the Python path converts; bytes for those it writes."""
    fields = SOURCES["event"].fields
    base: dict[str, Any] = dict.fromkeys(fields)
    base.update(
        id=1,
        receipt_id=uuid.UUID(int=2**128 - 1),
        received_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        payload='{"a": 1}',
    )
    plan = LeafEncoder("event")._native
    assert plan is not None

    def native_of(**change: Any) -> bytes | None:
        row = {**base, **change}
        return plan.encode(tuple(row[f] for f in fields))

    assert native_of() == _reference_leaf("event", base)
    assert b'"received_at":"2026-01-02T03:04:05.000000Z"' in (native_of() or b"")
    for taken in (
        {"received_at": datetime(2026, 1, 2, tzinfo=ZoneInfo("UTC"))},
        {"received_at": datetime(1, 1, 1, tzinfo=_Odd())},
        {"payload": Parsed('{"a": 1}', {"a": 1})},
        {"payload": b'{"b": [true, null]}'},
        {"id": -(2**63)},
    ):
        assert native_of(**taken) == _reference_leaf("event", {**base, **taken}), taken
    # A jsonb JSON null is no SQL NULL: the leaf holds it, as the Python encoder writes it.
    null = native_of(payload="null")
    assert null is not None
    assert b'"payload":null' in null
    assert null == _python_encoder("event").encode(
        tuple({**base, "payload": "null"}[f] for f in fields)
    )
    for handed_back in (
        {"received_at": datetime(2026, 1, 2, tzinfo=timezone(timedelta(hours=1)))},
        {"received_at": datetime(2026, 1, 2)},
        {"received_at": datetime(2026, 1, 2, tzinfo=_Broken())},
        {"received_at": "2026-01-02T00:00:00Z"},
        {"receipt_id": str(uuid.UUID(int=5))},
        {"receipt_id": type("U", (uuid.UUID,), {})(int=5)},
        {"id": 2**63},
        {"id": True},
        {"account": 5},
        {"payload": '{"a": 1.0}'},
        {"payload": '{"a": 1e400}'},
        {"payload": "not json"},
        {"payload": {"a": 1}},
        {"payload": '{"\U0001f600": 1}'},
        {"kind": "\udc00"},
    ):
        assert native_of(**handed_back) is None, handed_back
    with pytest.raises(ValueError, match="values given"):
        plan.encode((1, 2))
    with pytest.raises(TypeError):
        plan.encode(iter(()))  # type: ignore[arg-type]


def test_other_sources_native_leaves_are_the_reference() -> None:
    at = datetime(2026, 11, 2, 9, 0, 0, 272000, tzinfo=UTC)
    rows: dict[str, list[dict[str, Any]]] = {
        "quarantine": [
            {
                "id": 7,
                "receipt_id": uuid.uuid4(),
                "received_at": at,
                "account": "agent001",
                "channel": None,
                "reason": "not JSON",
                "raw": raw,
            }
            for raw in (b"", b"\x00", b"\x00\xff", b"abc", bytes(range(256)), bytearray(b"ab"))
        ],
        "access": [
            {
                **dict.fromkeys(SOURCES["access"].fields),
                "id": 3,
                "at": at,
                "client": client,
                "endpoint": "/api/v1/events",
                "filters": '{"userData.case": "4711", "limit": 50}',
                "method": "GET",
                "status": 200,
            }
            for client in ("10.0.0.1/32", "10.0.0.1", "::1/128")
        ],
        "hold": [
            {
                **dict.fromkeys(SOURCES["hold"].fields),
                "id": 1,
                "placed_at": at,
                "placed_by": "auditor",
                "reason": "case 4711",
                "interaction_ids": ids,
            }
            for ids in (["a", "b\n"], ("x",), [], [1.5])
        ],
    }
    for source, examples in rows.items():
        fields = SOURCES[source].fields
        for row in examples:
            values = [row[f] for f in fields]
            reference = _reference_leaf(source, {k: row[k] for k in fields})
            assert LeafEncoder(source).encode(values) == reference, row
            assert _python_encoder(source).encode(values) == reference, row
    raw = bytes(range(256)) * 3 + b"z"
    quarantine = LeafEncoder("quarantine")._native
    assert quarantine is not None
    values = [{**rows["quarantine"][0], "raw": raw}[f] for f in SOURCES["quarantine"].fields]
    assert base64.b64encode(raw) in (quarantine.encode(values) or b"")


def test_formatted_rows_as_postgres_gives_them_back_take_the_native_path() -> None:
    fields = SOURCES["event"].fields
    row: dict[str, Any] = dict.fromkeys(fields)
    row.update(
        id=5,
        receipt_id="0189abcd-0000-7000-8000-000000000001",
        received_at="2026-11-02T09:00:00.272000Z",
        kind="notification",
        payload='{"b": [1, "\\u00e9"], "a": {"z": null}}',
    )
    encoder = LeafEncoder("event", formatted=True)
    assert encoder._native is not None
    encoded = encoder._native.encode(tuple(row[f] for f in fields))
    assert encoded is not None
    assert encoded == _python_encoder("event", formatted=True).encode([row[f] for f in fields])


# --- the writer ----------------------------------------------------------------------------


def _items(payloads: list[Any]) -> list[tuple[int, Receipt, Record]]:
    lines = generate(interactions=4, agents=2, extra_updates=1, seed=11)
    items = []
    for event_id, (line, extra) in enumerate(zip(lines, payloads, strict=False), start=1):
        message = dict(line.message)
        message["extra"] = extra
        raw = json.dumps(message, ensure_ascii=bool(event_id % 2))
        receipt = Receipt(line.receipt_id, line.received_at, line.account, line.channel, raw)
        record = parse(raw, channel=line.channel)
        assert isinstance(record, Record)
        items.append((event_id, receipt, record))
    return items


def _writer_reference(event_id: int, receipt: Receipt, record: Record) -> bytes:
    row: dict[str, Any] = dict.fromkeys(writer._EVENT_LEAF.fields)
    row.update(zip(writer._COPY_COLUMNS, writer._copy_row(receipt, record), strict=True))
    row.update(id=event_id, payload=load_json(record.payload_text))
    return leaf_hash(leaf_bytes("event", row))


_storable = st.recursive(
    st.none()
    | st.booleans()
    | _ints
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=4),
            inner,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_storable, min_size=1, max_size=8))
def test_the_writer_leaf_is_the_reference_with_and_without_the_c_encoder(
    payloads: list[Any],
) -> None:
    items = _items(payloads)
    expected = [_writer_reference(*item) for item in items]
    assert [writer._leaf(*item)[1] for item in items] == expected
    with pytest.MonkeyPatch.context() as off:
        off.setattr(writer, "_EVENT_NATIVE", None)
        off.setattr(writer._EVENT_LEAF, "_native", None)
        assert [writer._leaf(*item)[1] for item in items] == expected


def test_the_writer_takes_the_c_encoder_for_a_plain_event(monkeypatch: pytest.MonkeyPatch) -> None:
    """A GWS event without floats never reaches the Python encoder."""
    items = _items([None, "x", {"a": [1, 2]}, 2**40])
    expected = [_writer_reference(*item) for item in items]

    def refuse(*args: Any) -> bytes:
        raise AssertionError("the Python encoder was used for a plain event")

    monkeypatch.setattr(LeafEncoder, "encode_present", refuse)
    assert [writer._leaf(*item)[1] for item in items] == expected


# --- memory --------------------------------------------------------------------------------


def test_encoding_leaks_neither_references_nor_memory() -> None:
    """Every path (written, handed back, failed inside loads or utcoffset, refused) run
    many times: no reference count grows and traced memory stays flat."""
    fields = SOURCES["event"].fields
    payload = {"a": ["x" * 100, {"b": 2**40, "c": None}], "d": "\xe9\u20ac"}
    parsed = Parsed(json.dumps(payload), payload)
    stamp = datetime(2026, 1, 2, tzinfo=UTC)
    odd = datetime(2026, 1, 2, tzinfo=ZoneInfo("UTC"))
    broken = datetime(2026, 1, 2, tzinfo=_Broken())
    receipt_id = uuid.uuid4()
    text = "t\n" * 50
    plan = LeafEncoder("event")._native
    assert plan is not None
    assert leafc is not None
    variants = []
    for change in (
        {},
        {"payload": json.dumps(payload)},
        {"payload": "not json"},
        {"payload": '{"f": 1.5}'},
        {"received_at": odd},
        {"received_at": broken},
        {"kind": "\udc00" + text},
    ):
        row: dict[str, Any] = dict.fromkeys(fields)
        row.update(id=1, receipt_id=receipt_id, received_at=stamp, payload=parsed, account=text)
        row.update(change)
        variants.append(tuple(row[f] for f in fields))
    watched = [payload, parsed, stamp, odd, broken, receipt_id, text, *payload.values()]

    def run(times: int) -> None:
        for _ in range(times):
            for values in variants:
                plan.encode(values)
                plan.encode_prefixed(values)
            plan.encode_mapping({"payload": parsed, "receipt_id": receipt_id, "id": 1})
            leafc.dumps(payload)
            leafc.dumps([payload, 1.5])

    assert_no_leak(run, watched, warm=200)
