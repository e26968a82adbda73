"""Benchmark: the by-referenceId lookup on bench/year.py's database, through the side table
(event_references, as shipped) against events' own per-partition reference_id index (the
lookup before migration 2026_12_04_refindex), the same random referenceIds, alternating.

    python bench/year_refs.py [--data-dir /tmp/auditor-bench-year] [--samples 300]

Straight SQL (the API's first page: keys newest first, limit 50, then the rows rendered as
JSON), one connection, each referenceId looked up once by each way (which goes first
alternates), so neither way finds the other's pages warm more often. Random keys over the
whole id range of a database larger than memory: mostly cold leaf pages. Prints p50/p99 of
each. A benchmark that prints numbers; it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))

from api import _pct
from year import DATABASE

from auditor.pgserver import EmbeddedPostgres
from auditor.store import queries

LIMIT = 50


def _side_table(reference: str) -> tuple[sql.Composable, list[Any]]:
    return queries._events_query(
        queries.EventFilter({"referenceId": reference}), True, LIMIT, None, False
    )


# The lookup before the side table: the keys from events' partial reference_id index of every
# partition, then the page's rows (queries._events_query as it was).
_PARTITIONS = sql.SQL(
    "SELECT id, received_at, account, " + queries.EVENT_JSON + " FROM ("
    "SELECT id, received_at FROM events WHERE reference_id = %s ORDER BY id DESC LIMIT %s"
    ") AS page JOIN events USING (id, received_at) ORDER BY id DESC"
)


def _partitions(reference: str) -> tuple[sql.Composable, list[Any]]:
    return _PARTITIONS, [reference, LIMIT]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/auditor-bench-year"))
    parser.add_argument("--samples", type=int, default=300)
    args = parser.parse_args()
    server = EmbeddedPostgres(args.data_dir, durable=True).start()
    try:
        dsn = f"{server.url(DATABASE)}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            events = conn.execute("SELECT max(id) FROM events").fetchone()
            top = int(events[0]) if events and events[0] else 0
            rng = random.Random(top)
            ways = {"side table (event_references)": _side_table, "every partition": _partitions}
            times: dict[str, list[float]] = {name: [] for name in ways}
            found: dict[str, int] = dict.fromkeys(ways, 0)
            for n in range(args.samples):
                reference = str(rng.randrange(top))
                order = list(ways.items())
                for name, way in order if n % 2 else order[::-1]:
                    query, params = way(reference)
                    t0 = time.perf_counter()
                    rows = conn.execute(query, params).fetchall()
                    times[name].append((time.perf_counter() - t0) * 1000)
                    found[name] += len(rows)
        print(
            f"{args.samples} random referenceIds of {top:,} events, load"
            f" {', '.join(f'{x:.1f}' for x in os.getloadavg())}"
        )
        for name in ways:
            print(
                f"  {name:<32} p50 {_pct(times[name], 0.5):7.2f} ms  p99"
                f" {_pct(times[name], 0.99):7.2f} ms  rows found {found[name]}"
            )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
