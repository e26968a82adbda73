"""What the CSV export's formula guard (OWASP CSV injection) costs PostgreSQL.

Builds every event's CSV line twice per round, with plain RFC 4180 quoting and with the guard
(a `'` before a cell starting with = + - @ TAB CR), alternating, and prints each time and the
ratio. Uses the database bench/api.py loaded (run it first), or AUDITOR_DATABASE_URL.

    python bench/csv_guard.py [--events 200000] [--rounds 3] [--data-dir /tmp/auditor-bench-api]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import psycopg

from auditor.config import libpq_conninfo, parse_database_url
from auditor.pgserver import EmbeddedPostgres
from auditor.store import queries


def measure(conninfo: str, rounds: int) -> None:
    kinds = {
        "plain quoting": queries.csv_line(guard_formulas=False),
        "quoting + formula guard": queries.csv_line(),
    }
    totals = dict.fromkeys(kinds, 0.0)
    with psycopg.connect(conninfo) as conn:
        count = conn.execute("SELECT count(*) FROM events").fetchone()
        print(f"{count[0] if count else 0:,} events, {rounds} rounds", flush=True)
        for n in range(rounds):
            for name, line in kinds.items():
                t0 = time.perf_counter()
                conn.execute(f"SELECT sum(length({line})) FROM events").fetchone()  # type: ignore[arg-type]
                elapsed = time.perf_counter() - t0
                totals[name] += elapsed
                print(f"round {n}: {name:24s} {elapsed:6.2f} s", flush=True)
    plain, guarded = totals.values()
    print(f"guarded / plain, all rounds: {guarded / plain:.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/auditor-bench-api"))
    args = parser.parse_args()
    if os.environ.get("AUDITOR_DATABASE_URL"):
        measure(libpq_conninfo(parse_database_url(os.environ["AUDITOR_DATABASE_URL"])), args.rounds)
        return
    server = EmbeddedPostgres(args.data_dir).start()
    try:
        url = parse_database_url(server.url(f"bench_api_{args.events}"))
        measure(libpq_conninfo(url), args.rounds)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
