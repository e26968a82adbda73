"""verify's fast path (auditor.store.leaf_copy: one binary COPY, leaf bytes and hashes in C)
against the leaves the writer sealed, straight, without the careful second opinion that
would hide a wrong hash; rows C leaves to Python still get the sealed leaf; the tamper kinds
found with the fast path off are found with it on (test_tamper*.py run both ways)."""

from __future__ import annotations

import json
from array import array
from typing import Any

import psycopg
import pytest

from auditor.sample import generate
from auditor.store import leaf_copy
from auditor.store.leaf_copy import Table
from auditor.store.receipts import Receipt
from auditor.store.writer import store_batch
from tests.helpers import om_message, receipt
from tests.integration.test_leaf_sql import AWKWARD, _sealed

Conn = psycopg.Connection[Any]

pytestmark = pytest.mark.skipif(leaf_copy.hash_copy is None, reason="_leafcopy not built")


def _store(conn: Conn) -> None:
    texts = [*AWKWARD, "plain"]
    store_batch(
        conn,
        [
            receipt(
                om_message(
                    text,
                    text,
                    reference_id=at,
                    user_data={"k": text, "n": 12, "big": 2**62, "list": [text, None, True]},
                ),
                account=text,
                at=at,
            )
            for at, text in enumerate(texts)
        ]
        + [
            # floats and a key beyond U+FFFF: left to Python, still the sealed leaf
            receipt(om_message("F", "f", user_data={"f": 1.5, "e": 1e300}), at=50),
            receipt(om_message("G", "g", user_data={"\U0001f600": 1, "\uffff": 2}), at=51),
            receipt(om_message("H", "h", user_data={"a\nb": 1}), at=53),  # an escaped key
            receipt("not json", at=52),  # a quarantine row
        ],
    )


def test_the_fast_paths_hashes_are_the_sealed_leaves(conn: Conn) -> None:
    _store(conn)
    sealed = _sealed(conn, "event")
    lo, hi = min(sealed), max(sealed)
    pieces = leaf_copy.pieces(conn, "event", lo, hi)
    assert pieces is not None
    ids = array("q")
    ids.frombytes(pieces.ids)
    assert len(ids) >= len(AWKWARD) + 1, "C wrote too few rows itself"
    extra = array("q")
    extra.frombytes(pieces.extra_ids)
    assert len(extra) == 3  # the float, the astral key, the escaped key
    table = Table([pieces])
    assert {i: table.get(i) for i in sealed} == sealed
    first = min(ids)
    assert table.span(first, len(ids)) == b"".join(sealed[first + k] for k in range(len(ids)))
    # ids C left to Python in a span: asked for id by id
    assert table.span(first, len(ids) + len(extra)) is None


def test_quarantine_rows_take_the_fast_path_too(conn: Conn) -> None:
    _store(conn)
    sealed = _sealed(conn, "quarantine")
    pieces = leaf_copy.pieces(conn, "quarantine", min(sealed), max(sealed))
    assert pieces is not None
    assert pieces.extra_ids == b""
    table = Table([pieces])
    assert {i: table.get(i) for i in sealed} == sealed


def test_sources_with_kinds_c_does_not_write_take_the_leaf_sql_path(conn: Conn) -> None:
    assert leaf_copy.pieces(conn, "coverage", 1, 10) is None  # channels: text[]
    assert leaf_copy.pieces(conn, "access", 1, 10) is None  # client: inet


def test_a_client_encoding_other_than_utf8_takes_the_leaf_sql_path(conn: Conn) -> None:
    conn.execute("SET client_encoding TO 'LATIN1'")
    assert leaf_copy.pieces(conn, "event", 1, 10) is None


def test_sample_notifications_are_all_hashed_by_c_and_match_what_was_sealed(conn: Conn) -> None:
    """The generator's notifications (what bench/evidence.py stores): none left to Python."""
    lines = generate(interactions=40, agents=5, extra_updates=7, seed=3)
    store_batch(
        conn,
        [
            Receipt(line.receipt_id, line.received_at, "agent001", line.channel, raw)
            for line in lines
            for raw in [json.dumps(line.message, separators=(",", ":"))]
        ],
    )
    sealed = _sealed(conn, "event")
    pieces = leaf_copy.pieces(conn, "event", min(sealed), max(sealed))
    assert pieces is not None
    assert pieces.extra_ids == b""
    assert pieces.twice == b""
    table = Table([pieces])
    assert table.span(min(sealed), len(sealed)) == b"".join(
        sealed[i] for i in range(min(sealed), max(sealed) + 1)
    )


@pytest.fixture(params=["c", "python"])
def reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The COPY read by _leafcopy.read_copy (libpq's calls, no GIL) or message by message."""
    if request.param == "c":
        assert leaf_copy._reader() is not None, "psycopg's libpq not found: C cannot read"
    else:
        monkeypatch.setattr(leaf_copy, "_READER", [None])
    return str(request.param)


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        (b"COPY (SELECT * FROM no_such_table) TO STDOUT (FORMAT binary)", "no_such_table"),
        # fails after rows were sent: in the middle of the read
        (
            b"COPY (SELECT 1 / (x - 3000) FROM generate_series(1, 5000) AS x)"
            b" TO STDOUT (FORMAT binary)",
            "division by zero",
        ),
    ],
)
def test_a_failing_copy_raises_and_leaves_the_connection_usable(
    conn: Conn, reader: str, statement: bytes, message: str
) -> None:
    conn.execute("SELECT 1")  # in the transaction: the libpq path
    with pytest.raises(psycopg.DatabaseError, match=message):
        leaf_copy._copy_out(conn, statement)
    conn.rollback()
    assert conn.execute("SELECT 2").fetchone() == (2,)


def test_the_libpq_read_gives_what_psycopgs_copy_gives(conn: Conn, reader: str) -> None:
    _store(conn)
    statement = leaf_copy.CopyPlan("event").statement(1, 10**9)
    with conn.cursor() as cur, cur.copy(statement) as copy:
        expected = b"".join(copy)
    assert leaf_copy._copy_out(conn, statement.as_bytes(conn)) == expected
