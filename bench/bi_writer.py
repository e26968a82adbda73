"""Does keeping the BI summaries up cost the writer? The batch writer's rate alone, and with
`auditor bi refresh --follow` running beside it (its own process and connection, as it would
run beside the worker), alternating on fresh databases, twice each.

    python bench/bi_writer.py [--notifications 200000] [--interactions 20000] [--batch 2000]
                              [--rounds 2] [--duty 0.1]

The writer itself does no BI work (the summaries are not maintained in its transaction), so
any difference is the refresh competing for the same CPU and disk. The refresh yields to a
busy writer (it works --duty of the time while events keep coming) and runs at full speed
once the writer is idle. Prints the rates, the ratio per round, how far behind the refresh
was when the writer finished and how long it then took to catch up.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from store import LAST_CPU, cpu_seconds, fresh_database, make_receipts, run_writer

from auditor.bi import refresh
from auditor.pgserver import EmbeddedPostgres

AUDITOR = str(Path(sys.executable).with_name("auditor"))
REFRESH_APP = "auditor-bench-bi-refresh"  # libpq takes it from PGAPPNAME


def _wait_connected(dsn: str) -> int:
    """Until the refresh process holds its connection (its start-up is not measured); the
    process id of its PostgreSQL backend."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            # the refresh's connection, by the name its environment gives it (its last query
            # may be anything, COMMIT included, by the time this looks)
            row = conn.execute(
                "SELECT pid FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = %s",
                (REFRESH_APP,),
            ).fetchone()
            if row:
                return int(row[0])
            time.sleep(0.1)
    raise SystemExit("the refresh process did not connect within 60 s")


def _wait_caught_up(conn: psycopg.Connection[tuple[object, ...]]) -> float:
    """Seconds until the refresh (the writer now idle) has folded every event."""
    t0 = time.perf_counter()
    while refresh.pending_events(conn):
        if time.perf_counter() - t0 > 600:
            raise SystemExit("the refresh did not catch up within 600 s")
        time.sleep(0.2)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--notifications", type=int, default=200_000)
    parser.add_argument("--interactions", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--follow", default="5", help="seconds between refresh passes")
    parser.add_argument("--refresh-batch", default=str(refresh.DEFAULT_PACED_BATCH))
    parser.add_argument("--duty", default=str(refresh.DEFAULT_DUTY), help="the refresh's --duty")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    receipts = make_receipts(args.notifications, args.interactions)
    gc.freeze()
    data_dir = Path(tempfile.mkdtemp(prefix="auditor-bench-biw-"))
    server = EmbeddedPostgres(data_dir, durable=True)
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
            f" {args.follow} s, {args.refresh_batch} events a batch, duty {args.duty};"
            f" load {os.getloadavg()}"
        )
        alone: list[float] = []
        beside: list[float] = []

        def run_alone(round_: int) -> None:
            alone.append(timed(fresh(f"alone_{round_}")))
            print(f"  writer alone, run {round_}: {alone[-1]:9,.0f} notifications/s", flush=True)

        def run_beside(round_: int) -> None:
            dsn = fresh(f"beside_{round_}")
            env = {**os.environ, "AUDITOR_DATABASE_URL": dsn, "PGAPPNAME": REFRESH_APP}
            follower = subprocess.Popen(
                [
                    *(AUDITOR, "bi", "refresh", "--follow", args.follow),
                    *("--batch", args.refresh_batch, "--duty", args.duty),
                ],
                env=env,
                stdout=subprocess.DEVNULL,
            )
            try:
                backend = _wait_connected(dsn)
                pids = (follower.pid, backend)
                cpu_before = sum(cpu_seconds(pid) for pid in pids)
                beside.append(timed(dsn))
                # What the refresh took of the machine while the writer ran: unlike the wall
                # times, hardly moved by the other processes on a shared machine.
                refresh_cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_before
                writer_cpu = LAST_CPU[0]
                with psycopg.connect(dsn, autocommit=True) as conn:
                    behind = refresh.pending_events(conn)
                    caught_up = _wait_caught_up(conn)
            finally:
                # SIGTERM ends it at once; its transaction of a batch is rolled back whole.
                # (after SIGINT it had not ended within 60 s here, mid-batch)
                follower.terminate()
                follower.wait(timeout=60)
            print(
                f"  writer with the refresh beside it, run {round_}: {beside[-1]:9,.0f}"
                f" notifications/s (refresh {behind:,} events behind at the end, caught up"
                f" {caught_up:.1f} s later); CPU while the writer ran: writer {writer_cpu:.1f} s,"
                f" refresh {refresh_cpu:.1f} s = {refresh_cpu / writer_cpu:.1%} of the writer's",
                flush=True,
            )

        for round_ in range(1, args.rounds + 1):
            # the order alternates, so neither variant always pays for the previous one
            for run in (run_alone, run_beside) if round_ % 2 else (run_beside, run_alone):
                run(round_)
            print(f"  round {round_}: ratio {beside[-1] / alone[-1]:.2f}", flush=True)
        ratio = max(beside) / max(alone)
        print(f"best of each: alone {max(alone):,.0f}/s, beside the refresh {max(beside):,.0f}/s,")
        print(f"ratio {ratio:.2f} (target >= 0.90); load {os.getloadavg()}")
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
