"""A pack's event rows read by a narrow sort and by id (auditor/evidence/pack_rows.py) are the
rows, in the order, of the one query that sorts whole rows by record position."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest

from auditor.evidence import pack, pack_rows
from auditor.evidence.pack_rows import EventRows
from auditor.store.writer import store_batch
from tests.helpers import T0, om_message, receipt

Conn = psycopg.Connection[Any]


def _one_query(conn: Conn, where: Any, params: list[Any]) -> list[tuple[Any, ...]]:
    with conn.cursor(binary=True) as cur:
        cur.execute(pack._select("event", "events", where), params)
        return cur.fetchall()


def test_rows_in_record_order_also_where_ids_disagree(conn: Conn) -> None:
    # An event stored around the writer first (the lowest id, no position: listed last),
    # then sealed events of two accounts interleaved, so the chunks' ids are not contiguous.
    conn.execute(
        "INSERT INTO events (receipt_id, received_at, account, payload)"
        """ VALUES (gen_random_uuid(), %s, 'rows-a', '{"around": "the writer"}')""",
        (T0 + timedelta(milliseconds=5),),
    )
    for batch in range(3):
        store_batch(
            conn,
            [
                receipt(om_message(f"PR-{batch}", "Processing"), account=account, at=10 * i)
                for i in range(7)
                for account in ("rows-a", "rows-b")
            ],
        )
    query = pack.Query(account="rows-a", start=T0, end=T0 + timedelta(hours=1))
    where, params = query.where()
    expected = _one_query(conn, where, params)
    assert len(expected) == 22
    assert expected[-1][0] is None  # the unsealed one, last
    ids = [row[pack._PIECES] for row in expected]
    assert ids != sorted(ids)  # the reordering path is taken
    for chunk_rows in (4, 5000):
        chunks = list(EventRows(conn, where, params, chunk_rows))
        assert all(len(chunk) <= chunk_rows for chunk in chunks)
        got = [tuple(row) for chunk in chunks for row in chunk]
        assert got == [tuple(row) for row in expected]


@pytest.mark.parametrize("by", ["batch ranges", "probe per event"])
def test_the_order_by_batch_ranges_equals_the_probe_per_event(
    conn: Conn, by: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events sealed one record row each (format 1) and in batches (format 2), batches of
    other accounts between and around them, an unsealed event: both ways of finding each
    event's place give the one query's rows, and the arrays are taken only while small."""
    from auditor.store import writer

    def stored(account: str, at: int, count: int) -> None:
        store_batch(
            conn,
            [
                receipt(om_message(f"OB-{account}-{at}", "Processing"), account=account, at=at + i)
                for i in range(count)
            ],
        )

    stored("order-other", 0, 3)  # the last batch starting before the pack's first id
    with monkeypatch.context() as format_1:
        format_1.setattr(writer, "RECORD_FORMAT", 1)
        stored("order-a", 10, 4)
    for at in (20, 40, 60):
        stored("order-a", at, 5)
        stored("order-other", at + 5, 2)
    conn.execute(
        "INSERT INTO events (receipt_id, received_at, account, payload)"
        """ VALUES (gen_random_uuid(), %s, 'order-a', '{"unsealed": true}')""",
        (T0 + timedelta(milliseconds=70),),
    )
    if by == "probe per event":
        monkeypatch.setattr(pack_rows, "MIN_BATCHES", 0)
        monkeypatch.setattr(pack_rows, "BATCHES_PER_EVENT", 0)
    query = pack.Query(account="order-a", start=T0, end=T0 + timedelta(hours=1))
    where, params = query.where()
    statement, statement_params = pack_rows.order_statement(conn, where, params)
    assert (statement_params is params) == (by == "probe per event")
    with conn.cursor(binary=True) as cur:
        ours = cur.execute(statement, statement_params).fetchall()
        probed = cur.execute(pack_rows._order(where), params).fetchall()
    assert len(ours) == 4 + 15 + 1
    assert [row[4] for row in ours].count(-1) == 4 + 1  # format 1 and the unsealed one
    assert [tuple(row) for row in ours] == [tuple(row) for row in probed]
    expected = _one_query(conn, where, params)
    got = [tuple(row) for chunk in EventRows(conn, where, params, 6) for row in chunk]
    assert got == [tuple(row) for row in expected]
