"""An evidence export's chunk written by C from a binary COPY (auditor/evidence/_leafcopy.c
``export_copy``): each row's events.ndjson line is the leaf encoder's bytes and its
events.csv line pack_csv's Python reference's (CsvRows.python_rows), or the row is left to
Python; lines come in the order asked for; the leaf is checked against the hash given; a
damaged stream is a ValueError, never a crash; no leak.

The streams are built as tests/unit/test_leaf_copy.py builds them (PostgreSQL's binary
COPY by hand)."""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from array import array
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from auditor.evidence import leaves
from auditor.evidence.leaves import SOURCES, leaf_bytes, load_json
from auditor.evidence.pack_csv import CsvRows
from auditor.evidence.pack_rows import _CopyPlan, splice
from auditor.store import leaf_copy
from tests.helpers import truncations_not_refused
from tests.leaks import assert_no_leak, rss_kib
from tests.unit.test_leaf_copy import (
    EPOCH,
    EVENT_KINDS,
    PLAN,
    _event,
    _needs_python,
    _pg_text,
    _row,
    _stream,
    event_ids,
    micros_in_range,
    payloads,
    texts,
)

export_copy = leaf_copy.export_copy
pytestmark = pytest.mark.skipif(export_copy is None, reason="_leafcopy not built or switched off")

COPY = _CopyPlan()
_NAMES = sorted([*SOURCES["event"].fields, "source"])


def _json_value(kind: str, value: Any) -> bytes:
    """A plain field's JSON value as the leaf's runs carry it (LeafQuery's columns)."""
    if kind == "text":
        return orjson.dumps(value)
    if kind == "integer":
        return b"%d" % value
    if kind == "uuid":
        return b'"%s"' % str(value).encode()
    assert kind == "timestamp"
    return b'"%s"' % leaves.timestamp(value).encode()


def _pieces_row(position: int | None, row: dict[str, Any], json_text: str) -> tuple[Any, ...]:
    """(position, id, run, payload text, run): the row as leaf_sql's query hands it over."""
    runs: list[list[bytes]] = [[]]
    for name in _NAMES:
        if name == "source":
            runs[-1].append(b'"source":"event"')
        elif EVENT_KINDS[name] == "json":
            runs.append([])
        elif row[name] is not None:
            runs[-1].append(b'"%s":%s' % (name.encode(), _json_value(EVENT_KINDS[name], row[name])))
    return (position, row["id"], b",".join(runs[0]), json_text.encode(), b",".join(runs[1]))


def _reference(position: int | None, row: dict[str, Any], json_text: str) -> tuple[bytes, bytes]:
    """The row's events.ndjson and events.csv lines by the Python references."""
    leaf = leaf_bytes("event", {**row, "payload": load_json(json_text)})
    csv = CsvRows(at=1, position=0).python_rows([_pieces_row(position, row, json_text)])
    return leaf + b"\n", csv


def _lines(data: bytes, ends: bytes) -> list[bytes]:
    offsets = array("q")
    offsets.frombytes(ends)
    out, start = [], 0
    for end in offsets:
        out.append(data[start:end])
        start = end
    return out


def _export(
    data: bytes,
    order: list[int],
    positions: list[int | None] | None = None,
    hashes: list[bytes | None] | None = None,
) -> tuple[list[bytes], list[bytes], list[int], list[int], set[str | None]]:
    assert export_copy is not None
    positions = positions or [None] * len(order)
    ndjson, ends, csv, csv_ends, left, mismatched, accounts = export_copy(
        PLAN.fields,
        data,
        array("q", order).tobytes(),
        array("q", [p or 0 for p in positions]).tobytes(),
        hashes if hashes is not None else [None] * len(order),
        COPY.csv_columns,
        COPY.account,
    )
    return _lines(ndjson, ends), _lines(csv, csv_ends), left, mismatched, accounts


csv_texts = st.none() | st.text(alphabet=',"\n\r ab\\\x01é', max_size=8)


@settings(max_examples=150, deadline=None)
@given(
    payload=payloads,
    spaced=st.booleans(),
    channel=texts,
    state=csv_texts,
    error_code=csv_texts,
    micros=micros_in_range,
    event_id=event_ids,
    position=st.none() | st.integers(min_value=1, max_value=2**63 - 1),
    sealed=st.sampled_from(["right", "wrong", "none"]),
)
@example(
    payload={"b": 1, "a": [1.5, {"z\u00e9": "\x01\x7f\u2028", "z": "\ud7ff\U0001f600"}]},
    spaced=True,
    channel='x"\\\n\x1f',
    state="",
    error_code=',"',
    micros=0,
    event_id=1,
    position=None,
    sealed="right",
).via("escapes, a float, unsorted keys, CSV quoting")
@example(
    payload={"a": 'say "hi", then\r\nbye', "n": -(2**63)},
    spaced=True,
    channel="",
    state="\r",
    error_code=None,
    micros=-1,
    event_id=0,
    position=7,
    sealed="wrong",
).via("quotes, commas and newlines in the payload and in text; an empty text")
@example(
    payload={},
    spaced=False,
    channel=None,
    state=None,
    error_code=None,
    micros=123_400,
    event_id=2**63 - 1,
    position=2**63 - 1,
    sealed="none",
).via("a fraction with trailing zeros; the largest id and position")
def test_c_writes_the_references_lines_or_leaves_the_row_to_python(
    payload: dict[str, Any],
    spaced: bool,
    channel: str | None,
    state: str | None,
    error_code: str | None,
    micros: int,
    event_id: int,
    position: int | None,
    sealed: str,
) -> None:
    row = _event(
        event_id,
        payload,
        channel=channel,
        state=state,
        error_code=error_code,
        received_at=EPOCH + timedelta(microseconds=micros),
    )
    text = _pg_text(payload, spaced)
    line, csv = _reference(position, row, text)
    right = hashlib.sha256(b"\x00" + line[:-1]).digest()
    hashes = {"right": right, "wrong": hashlib.sha256(b"x").digest(), "none": None}
    got_lines, got_csv, left, mismatched, accounts = _export(
        _stream([_row(row, text)]), [event_id], [position], [hashes[sealed]]
    )
    assert accounts == {"agent001"}
    if left:
        assert left == [0]
        assert _needs_python(payload), f"left to Python without a documented reason: {text}"
        assert got_lines == [b""]
        assert got_csv == [b""]
        assert not mismatched
    else:
        assert not _needs_python(payload)
        assert got_lines == [line]
        assert got_csv == [csv]
        assert mismatched == ([] if sealed == "right" else [0])


def test_lines_come_in_the_order_asked_and_a_missing_id_is_left_to_python() -> None:
    rows = {i: _event(i, {"n": i}, state=f"s{i}") for i in (3, 1, 2)}
    data = _stream([_row(row, _pg_text(row["payload"])) for row in rows.values()])
    got_lines, got_csv, left, _, _ = _export(data, [1, 9, 2, 3], [10, 11, None, 12])
    assert left == [1]
    for at, (event_id, position) in enumerate([(1, 10), (9, 0), (2, None), (3, 12)]):
        if event_id == 9:
            assert got_lines[at] == got_csv[at] == b""
            continue
        row = rows[event_id]
        assert (got_lines[at], got_csv[at]) == _reference(position, row, _pg_text(row["payload"]))


def test_an_id_met_twice_is_answered_with_its_last_row_as_the_python_path() -> None:
    first = _event(7, {"first": True}, received_at=EPOCH)
    last = _event(7, {"last": True})
    got_lines, _, left, _, _ = _export(
        _stream([_row(first, '{"first": true}'), _row(last, '{"last": true}')]), [7, 7]
    )
    assert not left
    assert got_lines == [_reference(None, last, '{"last": true}')[0]] * 2


def test_accounts_are_the_rows_of_the_order_and_null_is_none() -> None:
    rows = [_event(1, account="a"), _event(2, account="b"), _event(3, account=None)]
    rows.append(_event(4, account="a"))
    data = _stream([_row(row, "{}") for row in rows])
    assert _export(data, [1, 2, 3, 4])[4] == {"a", "b", None}
    assert _export(data, [4, 1])[4] == {"a"}


def test_every_row_left_to_python_gives_empty_lines() -> None:
    data = _stream([_row(_event(1), '{"a": 1.5}'), _row(_event(2), '{"a": 2.5}')])
    got_lines, got_csv, left, mismatched, _ = _export(data, [1, 2])
    assert (got_lines, got_csv, left, mismatched) == ([b"", b""], [b"", b""], [0, 1], [])


def test_splice_puts_lines_in_place() -> None:
    data, ends = b"a\nbb\nd\n", array("q", [2, 5, 5, 7]).tobytes()
    new, new_ends = splice(data, ends, {2: b"c\n", 0: b"AAA\n"})
    assert new == b"AAA\nbb\nc\nd\n"
    assert _lines(new, new_ends) == [b"AAA\n", b"bb\n", b"c\n", b"d\n"]


GOOD = _stream(
    [
        _row(_event(i, state='a,"b"'), _pg_text({"n": i, "s": "x" * i, "q": '"'}))
        for i in range(1, 4)
    ]
)


def test_every_truncation_of_a_stream_is_a_value_error() -> None:
    assert truncations_not_refused(lambda data: _export(data, [1, 2, 3]), GOOD, "binary COPY") == []


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_random_damage_to_a_stream_raises_or_answers_but_never_crashes(data: st.DataObject) -> None:
    stream = bytearray(GOOD)
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(stream) - 1))
        stream[at] = data.draw(st.integers(0, 255))
    order = data.draw(st.lists(st.integers(-2, 5), max_size=5))
    with contextlib.suppress(ValueError):
        _export(bytes(stream), order)


def test_bad_arguments_are_refused() -> None:
    assert export_copy is not None
    one = array("q", [1]).tobytes()
    fields, csv, account = PLAN.fields, COPY.csv_columns, COPY.account
    with pytest.raises(ValueError, match="one length"):
        export_copy(fields, GOOD, one, one + one, [None], csv, account)
    with pytest.raises(ValueError, match="one length"):
        export_copy(fields, GOOD, one, one, [], csv, account)
    with pytest.raises(ValueError, match="one length"):
        export_copy(fields, GOOD, b"1234567", b"1234567", [None], csv, account)
    with pytest.raises(ValueError, match="CSV column"):
        export_copy(fields, GOOD, one, one, [None], (99,), account)
    with pytest.raises(ValueError, match="account"):
        export_copy(fields, GOOD, one, one, [None], csv, 99)
    with pytest.raises(ValueError, match="account"):
        export_copy(fields, GOOD, one, one, [None], csv, COPY.csv_columns[4])  # id: int8
    with pytest.raises(TypeError):
        export_copy(fields, GOOD, one, one, [1], csv, account)  # type: ignore[list-item]


CASES: list[tuple[bytes, list[int], list[bytes | None]]] = [
    (GOOD, [3, 1, 2], [None, hashlib.sha256(b"x").digest(), None]),  # written, mismatched
    (_stream([_row(_event(1), '{"a": 1.5}')]), [1, 2], [None, None]),  # left to Python
    (_stream([_row(_event(1, account=None), "{}")] * 2), [1], [None]),  # twice; NULL account
    (GOOD[:-1], [1], [None]),  # an error
]


def _run(rounds: int) -> None:
    for _ in range(rounds):
        for data, order, hashes in CASES:
            with contextlib.suppress(ValueError):
                _export(data, order, None, hashes)


def test_no_leak_of_references_or_memory() -> None:
    watched: list[object] = [data for data, _, _ in CASES] + [PLAN.fields, COPY.csv_columns]
    watched += [hashes for _, _, hashes in CASES]
    assert_no_leak(_run, watched, warm=500, rounds=3000)


def test_rss_stays_flat_over_many_calls_of_every_outcome() -> None:
    """RSS flat (within 2 MiB) over 200,000 calls (`bench/leafcopy_rss.py --what export`
    runs 1,000,000)."""
    _run(2000)
    before = rss_kib()
    _run(50_000)
    assert rss_kib() - before < 2048


def test_the_csv_of_a_uuid_and_a_timestamp_is_postgresqls_text() -> None:
    row = _event(
        5,
        receipt_id=uuid.UUID("0123ABCD-0000-4000-8000-00000000BEEF"),
        received_at=datetime.fromisoformat("0099-03-01T00:00:00.000010+00:00"),
    )
    _, csv, _, _, _ = _export(_stream([_row(row, "{}")]), [5], [3])
    assert b",0123abcd-0000-4000-8000-00000000beef," in csv[0]
    assert b",0099-03-01 00:00:00.00001+00," in csv[0]
    assert csv[0].startswith(b"3,")
