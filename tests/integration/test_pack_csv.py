"""events.csv, written by the exporter from the rows it reads for events.ndjson, is byte for
byte what PostgreSQL's COPY (FORMAT csv, HEADER) wrote for the same events before
(auditor/evidence/pack_csv.py), on values that need quoting, escaping or formatting."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg import sql

from auditor.evidence import batches, checkpoints, keys, pack
from auditor.evidence.leaves import SOURCES
from auditor.evidence.native import leafc
from auditor.evidence.pack_csv import HEADER, CsvRows
from auditor.evidence.pack_rows import EventRows
from auditor.store.writer import store_batch
from tests.helpers import T0, om_message, receipt

Conn = psycopg.Connection[Any]
ACCOUNT = "csv-tricky"

TRICKY: list[str | None] = [
    None,
    "",
    "plain",
    "a,b",
    'say "hi"',
    '"',
    '""',
    "line\nbreak",
    "cr\rhere",
    "crlf\r\n",
    "tab\there",
    "\x01\x1f control",
    "back\\slash",
    "\\.",
    "\\N",
    " lead and trail ",
    "NULL",
    "ünïcødé ✓ 𝄞 \u2028 \u00a0",
    "'single'",
    "{a,b}",
]

PAYLOADS: list[str] = [
    "{}",
    '{"b": 1, "a": "x", "aa": [1, 2.50, -0, 1e3, 12345678901234567890123], "": null}',
    '{"s": "quote \\" backslash \\\\ nl \\n cr \\r tab \\t ctl \\u0001 del \\u007f"}',
    '{"u": "\\u00e9\\ud834\\udd1e ✓", "𝄞": "astral key", "é": true, "e": false}',
    '{"deep": {"z": {"y": [{"x": []}, {}]}}, "comma,key": "v,v", "n": 0.1}',
    '{"big": 9007199254740993, "neg": -42, "exp": 1E-7, "frac": 3.14159265358979323846}',
]


def _copy_csv(conn: Conn, where: sql.Composable, params: list[Any]) -> bytes:
    """What main's pack_csv wrote: COPY of the same events in record order."""
    fields = SOURCES["event"].fields
    columns = sql.SQL(", ").join(sql.SQL("e.{}").format(sql.Identifier(n)) for n in fields)
    statement = sql.SQL(
        f"COPY (SELECT {batches.EVENT_POSITION} AS position, {{}}"
        f" FROM events AS e{batches.EVENT_PLACE_JOIN}"
        " WHERE {} ORDER BY 1 NULLS LAST, e.id)"
        " TO STDOUT WITH (FORMAT csv, HEADER)"
    ).format(columns, where)
    with conn.cursor() as cur, cur.copy(statement, params) as copy:
        return b"".join(bytes(chunk) for chunk in copy)


def _store_tricky(conn: Conn) -> pack.Query:
    # sealed events first (record format 2 batches), with tricky text in their messages...
    store_batch(
        conn,
        [
            receipt(om_message(f"CSV-{i}", "Processing"), account=ACCOUNT, at=7 * i)
            for i in range(5)
        ],
    )
    # ...then rows inserted around the writer (unsealed: no position) with every tricky
    # value in the text columns and awkward jsonb, at times with and without fractions
    columns = ["channel", "message_type", "interaction_id", "error_code", "error_message"]
    micros = [0, 500_000, 123_456, 100_000, 1, 999_999]
    for i, value in enumerate(TRICKY):
        conn.execute(
            sql.SQL(
                "INSERT INTO events (receipt_id, received_at, account, {}, payload)"
                " VALUES (gen_random_uuid(), %s, %s, {}, %s::jsonb)"
            ).format(
                sql.SQL(", ").join(map(sql.Identifier, columns)),
                sql.SQL(", ").join(sql.Placeholder() * len(columns)),
            ),
            [
                T0 + timedelta(seconds=i, microseconds=micros[i % len(micros)]),
                ACCOUNT,
                *[value if j % 2 == 0 else TRICKY[(i + j) % len(TRICKY)] for j in range(5)],
                PAYLOADS[i % len(PAYLOADS)],
            ],
        )
    return pack.Query(account=ACCOUNT, start=T0, end=T0 + timedelta(hours=1))


def test_events_csv_is_what_copy_wrote_on_tricky_values(conn: Conn) -> None:
    signer = keys.Signer(Ed25519PrivateKey.generate())
    query = _store_tricky(conn)
    conn.execute("SET TIME ZONE 'Europe/Paris'")  # the pack writes UTC whatever the session
    checkpoints.make(conn, signer)
    made = pack.export(conn, query, signer, made_by="test")
    conn.execute("SET LOCAL timezone = 'UTC'")  # as the pack's transaction had it
    where, params = query.where()
    expected = _copy_csv(conn, where, params)
    assert expected.count(b"\n") > len(TRICKY) + 5  # quoted newlines among them
    assert made.files["events.csv"] == expected

    rows = [row for chunk in EventRows(conn, where, params, 6) for row in chunk]
    writer = CsvRows(pack._PIECES)
    python = HEADER + writer.python_rows(rows)
    assert python == expected
    if leafc is not None:  # the C helper answers for these rows (as the query gives them)
        assert HEADER + writer.lines(rows) == expected
        assert leafc.csv_rows(rows, pack._PIECES, pack._POSITION, *writer._spec) is not None
