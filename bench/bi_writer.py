"""Does keeping the BI summaries up cost the writer? The batch writer's rate alone, and with
`auditor bi refresh --follow` running beside it (its own process and connection, as it would
run beside the worker), alternating on fresh databases, twice each.

    python bench/bi_writer.py [--notifications 200000] [--interactions 20000] [--batch 2000]

The writer itself does no BI work (the summaries are not maintained in its transaction), so
any difference is the refresh competing for the same CPU and disk. Prints the rates, the
ratio and how far behind the refresh was when the writer finished.
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from store import fresh_database, make_receipts, run_writer

from auditor.bi import refresh
from auditor.pgserver import EmbeddedPostgres

AUDITOR = str(Path(sys.executable).with_name("auditor"))


def _wait_connected(dsn: str) -> None:
    """Until the refresh process holds its connection (its start-up is not measured)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()
            if row and row[0]:
                return
            time.sleep(0.1)
    raise SystemExit("the refresh process did not connect within 60 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--notifications", type=int, default=200_000)
    parser.add_argument("--interactions", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--follow", default="5", help="seconds between refresh passes")
    parser.add_argument("--refresh-batch", default="50000", help="events per refresh")
    args = parser.parse_args()
    receipts = make_receipts(args.notifications, args.interactions)
    gc.freeze()
    server = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="auditor-bench-biw-")), durable=True)
    server.start()

    def fresh(name: str) -> str:
        return fresh_database(server, name)

    def timed(dsn: str) -> float:
        t0 = time.perf_counter()
        run_writer(dsn, receipts, args.batch)
        return len(receipts) / (time.perf_counter() - t0)

    try:
        print(
            f"{len(receipts):,} notifications, batches of {args.batch:,}; refresh every"
            f" {args.follow} s, {args.refresh_batch} events a pass; load {os.getloadavg()}"
        )
        alone, beside = [], []
        for round_ in (1, 2):
            alone.append(timed(fresh(f"alone_{round_}")))
            print(f"  writer alone, run {round_}: {alone[-1]:9,.0f} notifications/s", flush=True)
            dsn = fresh(f"beside_{round_}")
            env = {**os.environ, "AUDITOR_DATABASE_URL": dsn}
            follower = subprocess.Popen(
                [AUDITOR, "bi", "refresh", "--follow", args.follow, "--batch", args.refresh_batch],
                env=env,
                stdout=subprocess.DEVNULL,
            )
            try:
                _wait_connected(dsn)
                beside.append(timed(dsn))
            finally:
                # SIGTERM ends it at once; its transaction of a batch is rolled back whole.
                # (after SIGINT it had not ended within 60 s here, mid-batch)
                follower.terminate()
                follower.wait(timeout=60)
            with psycopg.connect(dsn) as conn:
                behind = refresh.pending_events(conn)
            print(
                f"  writer with the refresh beside it, run {round_}: {beside[-1]:9,.0f}"
                f" notifications/s (refresh {behind:,} events behind at the end)",
                flush=True,
            )
        ratio = max(beside) / max(alone)
        print(f"best of two: alone {max(alone):,.0f}/s, beside the refresh {max(beside):,.0f}/s,")
        print(f"ratio {ratio:.2f} (target >= 0.90); load {os.getloadavg()}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
