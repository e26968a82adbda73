"""The CSV export two ways, alternating in one run: CSV quoting written in SQL (one finished line
per row, fetched through a server-side cursor: the export until issue 10) and PostgreSQL's
COPY ... TO STDOUT (FORMAT csv) (what web/export.py does now, with the summary's look at the
rows first). Both carry the formula guard. Prints rows/s, the client's CPU, and the ratio.

    python bench/csv_export.py [--events 200000] [--rounds 3]

A fresh durable embedded PostgreSQL, events stored by the writer. Prints numbers; asserts
nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from store import fresh_database

from auditor.config import libpq_conninfo, parse_database_url
from auditor.pgserver import EmbeddedPostgres
from auditor.sample import generate
from auditor.store import queries
from auditor.store.receipts import Receipt
from auditor.store.writer import store_batch

FETCH = 5000
_CODES = "(61, 43, 45, 64, 9, 13)"  # = + - @ TAB CR
# The cells as the SQL-quoting export built them (kept here only to compare).
_SOURCES = (
    "id::text",
    "to_json(received_at) #>> '{}'",
    "to_json(stored_at) #>> '{}'",
    "kind",
    "account",
    "channel",
    "interaction_id",
    "message_type",
    "notification_type",
    "reference_id",
    "media_type",
    "openmedia_type",
    "state",
    "error_code",
    "error_message",
    "payload::text",
)
_UNGUARDED = {"id::text", "to_json(received_at) #>> '{}'", "to_json(stored_at) #>> '{}'"}


def _sql_quoted(source: str) -> str:
    guard = (
        "''"
        if source in _UNGUARDED or source in ("kind", "payload::text")
        else f"CASE WHEN ascii({source}) IN {_CODES} THEN chr(39) ELSE '' END"
    )
    return (
        f"CASE WHEN ({source}) IS NULL THEN ''"
        f" WHEN ({source}) ~ '[\",\r\n]'"
        f" THEN '\"' || {guard} || replace({source}, '\"', '\"\"') || '\"'"
        f" ELSE {guard} || ({source}) END"
    )


_SQL_LINE = " || ',' || ".join(_sql_quoted(s) for s in _SOURCES)


def sql_quoting(conn: psycopg.Connection[Any]) -> tuple[int, str]:
    digest = hashlib.sha256()
    rows = 0
    with conn.transaction(), conn.cursor(name="bench_export") as cur:
        cur.execute(f"SELECT received_at, account, {_SQL_LINE} FROM events ORDER BY id")  # type: ignore[arg-type]
        accounts: set[str] = set()
        while batch := cur.fetchmany(FETCH):
            digest.update(("\n".join(r[2] for r in batch) + "\n").encode())
            accounts.update(r[1] for r in batch)
            rows += len(batch)
    return rows, digest.hexdigest()


def copy_csv(conn: psycopg.Connection[Any]) -> tuple[int, str]:
    digest = hashlib.sha256()
    rows = 0
    flt = queries.EventFilter(equals={})
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        queries.export_extent(conn, flt)
        for chunk, count in queries.export_events_csv(conn, flt, chunk_rows=FETCH):
            digest.update(chunk)
            rows += count
    return rows, digest.hexdigest()


def _receipts(count: int) -> list[Receipt]:
    lines = generate(interactions=max(1, count // 10), agents=50, extra_updates=7, seed=1)
    return [
        Receipt(
            line.receipt_id,
            line.received_at,
            f"agent{n % 50:02d}",
            line.channel,
            json.dumps(line.message, separators=(",", ":")),
        )
        for n, line in enumerate(lines[:count])
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    receipts = _receipts(args.events)
    data_dir = Path(tempfile.mkdtemp(prefix="auditor-bench-csv-"))
    server = EmbeddedPostgres(data_dir, durable=True).start()
    try:
        dsn = libpq_conninfo(parse_database_url(fresh_database(server, "bench_csv")))
        with psycopg.connect(dsn) as conn:
            for start in range(0, len(receipts), 2000):
                with conn.transaction():
                    store_batch(conn, receipts[start : start + 2000])
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("VACUUM (ANALYZE) events")
        kinds: dict[str, Callable[[psycopg.Connection[Any]], tuple[int, str]]] = {
            "SQL quoting, cursor": sql_quoting,
            "COPY (FORMAT csv)": copy_csv,
        }
        totals = dict.fromkeys(kinds, 0.0)
        with psycopg.connect(dsn, autocommit=True, options="-c TimeZone=UTC") as conn:
            for n in range(args.rounds):
                order = list(kinds) if n % 2 == 0 else list(reversed(kinds))
                for name in order:
                    wall, cpu = time.perf_counter(), time.process_time()
                    rows, _ = kinds[name](conn)
                    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                    totals[name] += wall
                    print(
                        f"round {n}: {name:20s} {rows:,} rows in {wall:5.2f} s"
                        f" = {rows / wall:9,.0f} rows/s, client CPU {cpu:5.2f} s",
                        flush=True,
                    )
        before, now = totals.values()
        print(f"COPY / SQL quoting, wall time of all rounds: {now / before:.2f}", flush=True)
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
