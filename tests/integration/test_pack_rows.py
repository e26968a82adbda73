"""A pack's event rows read by a narrow sort and by id (auditor/evidence/pack_rows.py) are the
rows, in the order, of the one query that sorts whole rows by record position."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg

from auditor.evidence import pack
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
