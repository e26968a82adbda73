"""The C export helpers (auditor/evidence/_leafc.c, "export"): the Python path's bytes or None,
never other bytes; no crash or leak on odd input.

- canonical_json: jsonb text -> auditor.store.leaf_sql.unchecked_json's bytes;
- leaf_lines: a row's leaf from its pieces -> LeafQuery.join's bytes;
- csv_rows: a chunk's events.csv lines -> pack_csv.CsvRows.python_rows' bytes (which
  tests/integration/test_pack_csv.py proves to be COPY's)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from auditor.evidence import native
from auditor.evidence.canonical import canonical_bytes
from auditor.evidence.leaves import SOURCES
from auditor.evidence.pack_csv import CsvRows
from auditor.sample import generate
from auditor.store.leaf_sql import LeafQuery, unchecked_json
from tests.leaks import assert_no_leak

leafc = native.leafc
pytestmark = pytest.mark.skipif(leafc is None, reason=f"C helpers {native.UNAVAILABLE}")

_chars = st.characters(codec="utf-8") | st.sampled_from(
    ['"', "\\", "\b", "\t", "\n", "\f", "\r", "\x00", "\x1f", "\x7f", "\u2028", "\U0001f600"]
)
_texts = st.text(_chars, max_size=12)
_numbers = (
    st.integers(-(2**70), 2**70)
    | st.integers(-(10**15) - 2, -(10**15) + 2)
    | st.integers(10**15 - 2, 10**15 + 2)
    | st.integers(-1000, 1000)
    | st.floats(allow_nan=False, allow_infinity=False)
)
_values = st.recursive(
    st.none() | st.booleans() | _numbers | _texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_texts, inner, max_size=5),
    max_leaves=25,
)


def _python(text: bytes) -> bytes | None:
    try:
        return unchecked_json(text)
    except Exception:  # the Python path refuses it: C must hand it back
        return None


def _check_canonical(text: bytes) -> bytes | None:
    assert leafc is not None
    got = leafc.canonical_json(text)
    if got is not None:
        assert got == _python(text), text
    return got


@settings(max_examples=80, deadline=None)
@given(_values, st.booleans(), st.sampled_from([(", ", ": "), (",", ":"), (" ,\n", " :\t")]))
@example({"b": 1, "a": "x", "aa": [1, -0, 10**15 - 1], "": None}, False, (", ", ": "))
@example({"é": 1, "e": 2, "\U0001f600": 3}, True, (",", ":"))
def test_canonical_json_is_the_python_paths_bytes_or_none(
    value: Any, ascii_only: bool, separators: tuple[str, str]
) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only, separators=separators)
    _check_canonical(text.encode("utf-8", "surrogatepass"))


@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=40) | st.text(st.sampled_from('{}[]",:\\u0aZ1-.eE tfn'), max_size=30))
@example(b'{"a":1,"a":2}')
@example(b'"\\ud800"')
@example(b'"\\ud83d\\ude00"')
@example(b"[-0, 1.0, 1e2, 0.5, 007, 1000000000000000, 999999999999999]")
@example(b'{"\\u0041": 1}')
@example(b"[" * 70 + b"]" * 70)
@example(b'"\xed\xa0\x80"')
@example(b'"\xf4\x90\x80\x80"')
@example(b'"\xc0\x80"')
def test_canonical_json_never_invents_bytes_from_any_input(text: str | bytes) -> None:
    _check_canonical(text if isinstance(text, bytes) else text.encode())


def test_real_payloads_take_the_c_path() -> None:
    """GWS payloads (strings, integers, nested objects) never need Python, as jsonb writes
    them (', ' and ': ', its own key order)."""
    assert leafc is not None
    lines = generate(interactions=40, agents=5, extra_updates=7, seed=3)
    for line in lines:
        text = json.dumps(line.message, ensure_ascii=False, separators=(", ", ": "))
        assert _check_canonical(text.encode()) is not None


def test_specific_forms() -> None:
    assert leafc is not None
    c = leafc.canonical_json
    assert c(b'{"b": [1, {"d": null, "c": true}], "a": "\\u00e9\\n"}') == (
        b'{"a":"\xc3\xa9\\n","b":[1,{"c":true,"d":null}]}'
    )
    for handed_back in (b"1.5", b"-0", b"1e3", b"1000000000000000", b'{"a":1,"a":2}', b"{"):
        assert c(handed_back) is None, handed_back


# --- leaf_lines --------------------------------------------------------------------------

_runs = st.sampled_from([b"", b'"a":"x"', b'"id":1,"kind":"n"', b'"z":"\\u0001"'])


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(_runs, st.none() | _values.map(lambda v: json.dumps(v).encode()), _runs),
        max_size=6,
    )
)
def test_leaf_lines_are_the_joins_or_none(pieces: list[tuple[bytes, bytes | None, bytes]]) -> None:
    assert leafc is not None
    query = LeafQuery("event")
    rows: list[Any] = [(7, *piece) for piece in pieces]
    got = leafc.leaf_lines(rows, 1, query.json_keys[0])
    assert len(got) == len(rows)
    for row, leaf in zip(rows, got, strict=True):
        if leaf is not None:
            assert leaf == query.join(row, 1)


def test_leaf_lines_hand_back_rows_too_short_or_not_bytes() -> None:
    assert leafc is not None
    rows: list[Any] = [(1,), [1, b"a", b"{}", b"b"], (1, "str", b"{}", b"b"), (1, b"a", b"{}")]
    assert leafc.leaf_lines(rows, 1, b'"payload":') == [None, b'\x00{a,"payload":{},b}', None, None]
    with pytest.raises(TypeError):
        leafc.leaf_lines((), 1, b"")  # type: ignore[arg-type]


# --- csv_rows ----------------------------------------------------------------------------

_FIELDS = SOURCES["event"].fields
_KINDS = SOURCES["event"].kinds
_AT = datetime(2026, 11, 2, 9, tzinfo=UTC)


def _pieces(values: dict[str, Any], payload: bytes | None) -> tuple[bytes, bytes | None, bytes]:
    """The pieces LeafQuery's SQL gives for a row of these values (None: NULL, left out)."""
    runs: list[list[bytes]] = [[]]
    for name in sorted([*_FIELDS, "source"]):
        if name == "source":
            runs[-1].append(b'"source":"event"')
            continue
        kind = _KINDS[name]
        if kind == "json":
            runs.append([])
            continue
        value = values.get(name)
        if value is None:
            continue
        if kind == "integer":
            text = str(value).encode()
        elif kind == "timestamp":
            text = b'"' + value.strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode() + b'"'
        elif kind == "uuid":
            text = b'"' + str(value).encode() + b'"'
        else:  # to_json(text) escapes as RFC 8785 does
            text = canonical_bytes(value)
        runs[-1].append(b'"' + name.encode() + b'":' + text)
    return b",".join(runs[0]), payload, b",".join(runs[1])


_text_or_null = st.none() | st.text(_chars.filter(lambda c: c != "\x00"), max_size=8)
_rows = st.fixed_dictionaries(
    {
        name: (
            st.integers(1, 2**62)
            if kind == "integer"
            else st.uuids()
            if kind == "uuid"
            else st.integers(0, 10**9).map(lambda us: _AT + timedelta(microseconds=us * 997))
            if kind == "timestamp"
            else st.just(None)
            if kind == "json"
            else _text_or_null
        )
        for name, kind in _KINDS.items()
    }
)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.none() | st.integers(1, 2**40),
            _rows,
            st.none() | _values.map(lambda v: json.dumps({"v": v}, separators=(", ", ": "))),
        ),
        max_size=5,
    )
)
@example([(None, {"id": 1, "received_at": _AT, "receipt_id": uuid.UUID(int=0)}, "{}")])
def test_csv_rows_are_the_python_rows(rows: list[tuple[int | None, dict[str, Any], str]]) -> None:
    assert leafc is not None
    writer = CsvRows(1)
    chunk: list[Any] = [
        (position, values["id"], *_pieces(values, None if p is None else p.encode()))
        for position, values, p in rows
    ]
    got = writer.lines(chunk)
    assert got == writer.python_rows(chunk)
    spec = (tuple(n.encode() for n in _FIELDS), tuple(_KINDS[n] for n in _FIELDS))
    assert leafc.csv_rows(chunk, 1, 0, *spec) == got  # the C path answered


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 3), st.integers(0, 400), st.binary(max_size=6) | st.none())
def test_csv_rows_on_damaged_pieces_answer_none_or_the_python_rows(
    column: int, cut: int, insert: bytes | None
) -> None:
    """Pieces no query gives (cut, spliced, NULL): the C helper must not crash and must not
    write what the Python path would not."""
    assert leafc is not None
    values = {name: f"v{name}" for name in _FIELDS if _KINDS[name] == "text"}
    values.update(id=5, received_at=_AT, receipt_id=uuid.UUID(int=1))
    row = [3, 5, *_pieces(values, b'{"a": 1}')]
    piece = row[1 + column]
    if isinstance(piece, bytes):
        piece = piece[:cut] + (insert or b"") + piece[cut:] if insert else piece[:cut]
    row[1 + column] = piece
    spec = (tuple(n.encode() for n in _FIELDS), tuple(_KINDS[n] for n in _FIELDS))
    got = leafc.csv_rows([tuple(row)], 1, 0, *spec)
    if got is not None:
        assert got == CsvRows(1).python_rows([tuple(row)])


def test_the_helpers_leak_neither_references_nor_memory() -> None:
    assert leafc is not None
    values = {name: 'a,"b"\n' for name in _FIELDS if _KINDS[name] == "text"}
    values.update(id=5, received_at=_AT, receipt_id=uuid.UUID(int=1))
    good = (1, 5, *_pieces(values, b'{"b": [1, "x"], "a": {"c": null}}'))
    bad = (1, 5, *_pieces(values, b'{"b": 1.5}'))
    short = (1, 5, b"", None)
    rows: list[Any] = [good, bad, short]
    spec = (tuple(n.encode() for n in _FIELDS), tuple(_KINDS[n] for n in _FIELDS))
    # the row tuples and their pieces (not small ints or interned names: shared with the rest)
    watched = [good, bad, short, *[x for x in (*good, *bad) if isinstance(x, bytes)]]

    def run(rounds: int) -> None:
        assert leafc is not None
        for _ in range(rounds):
            leafc.leaf_lines(rows, 2, b'"payload":')
            leafc.csv_rows(rows[:2], 1, 0, *spec)
            leafc.csv_rows(rows, 1, 0, *spec)
            leafc.canonical_json(b'{"b": [1, "x"], "a": {"c": null}}' * 2)

    assert_no_leak(run, watched, warm=100)


def test_deep_nesting_fits_a_small_thread_stack() -> None:
    """Objects nested to the limit (and beyond, handed back) in a thread of 512 KB stack:
    the recursing frames stay small (a crash here is a segfault, not a failure)."""
    import threading

    assert leafc is not None
    deep = b'{"a": ' * 64 + b"1" + b"}" * 64
    deeper = b'{"a": ' * 80 + b"1" + b"}" * 80
    got: list[bytes | None] = []

    def run() -> None:
        assert leafc is not None
        got.append(leafc.canonical_json(deep))
        got.append(leafc.canonical_json(deeper))

    old = threading.stack_size(512 * 1024)
    try:
        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
    finally:
        threading.stack_size(old)
    assert got == [b'{"a":' * 64 + b"1" + b"}" * 64, None]
