"""Coverage gaps two ways, alternating on the same intervals: fetched intervals and
auditor.store.coverage_queries.gaps_of in Python (what the store does), against PostgreSQL's
multiranges (tstzmultirange(range) minus range_agg(intervals), one more statement beside the
intervals' fetch, which answers list anyway). Prints ms per answer and the ratio.

    python bench/coverage_gaps.py [--accounts 10] [--intervals 20] [--rounds 6]

Prints numbers; asserts nothing (but that both give the same gaps).
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import args_row

from auditor.config import libpq_conninfo, parse_database_url
from auditor.pgserver import EmbeddedPostgres
from auditor.store.coverage_queries import Interval, gaps_of

START = datetime(2026, 12, 1, tzinfo=UTC)
END = START + timedelta(days=1)
PARAMS = {"from": START, "to": END}
INTERVALS = (
    "SELECT * FROM iv WHERE started_at < %(to)s AND end_at > %(from)s ORDER BY account, started_at"
)
GAPS = """SELECT account, lower(g), upper(g) FROM (
    SELECT account, unnest(tstzmultirange(tstzrange(%(from)s, %(to)s))
           - range_agg(tstzrange(started_at, end_at))) AS g
    FROM iv WHERE started_at < %(to)s AND end_at > %(from)s GROUP BY account) AS x
ORDER BY 1, 2"""

Gaps = list[tuple[str, datetime, datetime]]


def _intervals(conn: psycopg.Connection[Any]) -> list[Interval]:
    with conn.cursor(row_factory=args_row(Interval)) as cur:
        cur.execute(INTERVALS, PARAMS)
        return cur.fetchall()


def in_python(conn: psycopg.Connection[Any]) -> Gaps:
    by_account: dict[str, list[Interval]] = {}
    for interval in _intervals(conn):
        by_account.setdefault(interval.account, []).append(interval)
    return [
        (gap.account, gap.start, gap.end)
        for account, found in by_account.items()
        for gap in gaps_of(account, found, START, END)
    ]


def with_multiranges(conn: psycopg.Connection[Any]) -> Gaps:
    _intervals(conn)
    with conn.cursor() as cur:
        cur.execute(GAPS, PARAMS)
        return [(str(r[0]), r[1], r[2]) for r in cur.fetchall()]


def load(conn: psycopg.Connection[Any], accounts: int, per_account: int) -> None:
    conn.execute(
        "CREATE TEMP TABLE iv (account text, worker_id text, channels text[],"
        " started_at timestamptz, end_at timestamptz, live bool, end_reason text)"
    )
    rng = random.Random(1)
    with conn.cursor() as cur, cur.copy("COPY iv FROM STDIN") as copy:
        for a in range(accounts):
            at = START - timedelta(minutes=5)
            for _ in range(per_account):
                at += timedelta(seconds=rng.randint(0, 60))
                ends = at + timedelta(seconds=rng.randint(60, 86400 * 2 // per_account))
                copy.write_row((f"a{a:05d}", "w", ["/c"], at, ends, False, "x"))
                at = ends
    conn.execute("CREATE INDEX ON iv (account, started_at)")
    conn.execute("ANALYZE iv")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10)
    parser.add_argument("--intervals", type=int, default=20, help="per account")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="auditor-bench-gaps-"))
    server = EmbeddedPostgres(data_dir).start()
    try:
        dsn = libpq_conninfo(parse_database_url(server.url("postgres")))
        with psycopg.connect(dsn, autocommit=True) as conn:
            load(conn, args.accounts, args.intervals)
            if in_python(conn) != with_multiranges(conn):
                raise SystemExit("the two ways give different gaps")
            kinds: dict[str, Callable[[psycopg.Connection[Any]], Gaps]] = {
                "python": in_python,
                "multiranges": with_multiranges,
            }
            totals = dict.fromkeys(kinds, 0.0)
            for n in range(args.rounds):
                for name in list(kinds) if n % 2 == 0 else list(reversed(kinds)):
                    began = time.perf_counter()
                    kinds[name](conn)
                    totals[name] += time.perf_counter() - began
        python, multiranges = (t / args.rounds * 1000 for t in totals.values())
        print(
            f"{args.accounts} accounts x {args.intervals} intervals: python {python:.1f} ms,"
            f" multiranges {multiranges:.1f} ms, multiranges / python {multiranges / python:.2f}"
        )
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
