"""Benchmark: `auditor projection check` and `rebuild` (the projection recomputed from the
events in SQL) against the issue's target of 100,000 events/s.

    python bench/projection.py [--events 500000] [--interactions 50000] [--runs 2]
                               [--data-dir DIR] [--months 1,24] [--interleave]
                               [--fold partition,id] [--jobs 1,2]

Stores the events with the batch writer (hash chain patched out, as in bench/store.py, to
load faster; it does not change the projection) on a durable embedded PostgreSQL, then times
check() `--runs` times and rebuild() after corrupting 1% of the projection's rows, alternating
(and alternating the `--chunks` sizes). Prints events/s for each, of wall time and of the
backend's CPU time. `--months 1,24` stores the same events into one database per value,
spread over that many monthly partitions (ids in time order, as the writer makes them; with
`--interleave` consecutive ids go to different months, as bench/year.py's passes leave
them), and alternates between the databases in each run. `--jobs 1,2` alternates the number
of sessions folding at once (one snapshot; 1 is the serial fold); the CPU time is then that
of the whole PostgreSQL cluster (every backend, and the ones that ended, through the
postmaster's reaped-children times), per event. A benchmark that prints numbers;
it asserts nothing. With
--data-dir the database is kept there and loaded only once per size (the runs then leave it
as they found it: rebuild corrects what they corrupted).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from store import fresh_database, make_receipts, run_writer_without_chain

from auditor.pgserver import EmbeddedPostgres
from auditor.store import projection_rebuild
from auditor.store.receipts import Receipt


def _month(first: datetime, offset: int) -> datetime:
    year, month = divmod(first.month - 1 + offset, 12)
    return first.replace(year=first.year + year, month=month + 1)


def spread(receipts: list[Receipt], months: int, interleave: bool) -> list[Receipt]:
    """The receipts received over ``months`` complete months before this one: receipt i in
    month i * months // n (or i % months with ``interleave``), in order within its month."""
    now = datetime.now(UTC)
    first = _month(now.replace(day=1, hour=0, minute=0, second=0, microsecond=0), -months)
    n = len(receipts)
    out = []
    for i, receipt in enumerate(receipts):
        if interleave:
            month, share = i % months, i / n
        else:
            month = i * months // n
            share = i * months / n - month
        at = _month(first, month) + timedelta(days=27 * share)
        out.append(dataclasses.replace(receipt, received_at=at))
    return out


def make_partitions(dsn: str, receipts: list[Receipt]) -> None:
    firsts = {r.received_at.date().replace(day=1) for r in receipts}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for first in sorted(firsts):
            conn.execute("SELECT auditor_ensure_event_partition(%s)", (first,))


def corrupt(dsn: str, share: float) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(
            "UPDATE interactions SET event_count = event_count + 1"
            " WHERE abs(hashtext(interaction_id)) %% 1000 < %s",
            (int(share * 1000),),
        )
        return cur.rowcount


def _check(
    conn: psycopg.Connection[Any], chunk: int, by_partition: bool, jobs: int, dsn: str
) -> projection_rebuild.Report:
    report = projection_rebuild.check(
        conn, chunk=chunk, by_partition=by_partition, jobs=jobs, connect=_opener(dsn)
    )
    conn.rollback()
    return report


def _rebuild(
    conn: psycopg.Connection[Any], chunk: int, by_partition: bool, jobs: int, dsn: str
) -> projection_rebuild.Report:
    return projection_rebuild.rebuild(
        conn, chunk=chunk, by_partition=by_partition, jobs=jobs, connect=_opener(dsn)
    )


def _opener(dsn: str) -> Callable[[], psycopg.Connection[Any]]:
    return lambda: psycopg.connect(dsn)


def _ticks(pid: int, reaped: bool) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11 : 15 if reaped else 13])


def cluster_cpu(postmaster: int) -> float:
    """CPU seconds of the whole cluster so far: the postmaster with its reaped children
    (backends that ended), and every live child."""
    total = _ticks(postmaster, True)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if int(text.rsplit(")", 1)[1].split()[1]) == postmaster:
            with contextlib.suppress(OSError, ValueError):
                total += _ticks(int(stat.parent.name), False)
    return total / os.sysconf("SC_CLK_TCK")


def timed(
    run: str,
    what: str,
    chunk: int,
    dsn: str,
    work: Callable[[psycopg.Connection[Any]], projection_rebuild.Report],
    postmaster: int,
) -> projection_rebuild.Report:
    """Wall time and the CPU time of the PostgreSQL cluster (this process does nearly
    nothing): CPU per event hardly moves with the machine's load, wall time does."""
    with psycopg.connect(dsn) as conn:
        cpu, t0 = cluster_cpu(postmaster), time.perf_counter()
        report = work(conn)
        seconds = time.perf_counter() - t0
    time.sleep(0.2)  # the helpers' backends end and are reaped
    used = cluster_cpu(postmaster) - cpu
    print(
        f"{run} {what:<8} {chunk:>9,} {report.events:>10,} {seconds:>8.2f}"
        f" {report.events / seconds:>10,.0f} {report.events / used:>10,.0f}"
        f" {used / report.events * 1e6:>7.2f} {os.getloadavg()[0]:>5.1f}"
        f" {len(report.differences)} (build {report.build_seconds:.2f} s,"
        f" compare {report.compare_seconds:.2f} s)",
        flush=True,
    )
    return report


def load(server: EmbeddedPostgres, name: str, args: argparse.Namespace, months: int) -> str:
    """The database ``name`` with the events stored (once: kept in --data-dir); its URL."""
    dsn = server.url(name)
    with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    if exists is None:
        receipts = make_receipts(args.events, args.interactions)
        if months > 1:
            receipts = spread(receipts, months, args.interleave)
        gc.freeze()
        dsn = fresh_database(server, name)
        make_partitions(dsn, receipts)
        began = time.perf_counter()
        run_writer_without_chain(dsn, receipts, 5_000)
        loaded = time.perf_counter() - began
        print(f"{name}: loaded {len(receipts):,} events in {loaded:.1f} s"
              f" ({len(receipts) / loaded:,.0f}/s)")  # fmt: skip
        del receipts
        gc.unfreeze()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
    with psycopg.connect(dsn, autocommit=True) as conn:
        sizes = conn.execute(
            "SELECT pg_total_relation_size('interactions'),"
            " (SELECT sum(pg_total_relation_size(relid))"
            "  FROM pg_partition_tree('events'::regclass)),"
            " (SELECT count(*) FROM events), (SELECT count(*) FROM interactions),"
            " (SELECT count(*) FROM pg_partition_tree('events'::regclass) WHERE isleaf)"
        ).fetchone()
    if sizes is not None:
        projected, stored, events, interactions, partitions = (int(v) for v in sizes)
        print(
            f"{name}: {partitions} partitions; disk: events {stored / events:,.0f} bytes/event"
            f" (table, TOAST and indexes), interactions {projected / interactions:,.0f}"
            f" bytes/interaction ({events / interactions:.1f} events per interaction); the"
            " hash chain is patched out here (bench/store.py measures its cost)"
        )
    return dsn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--interactions", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument(
        "--chunks",
        type=lambda text: [int(v) for v in text.split(",")],
        default=[projection_rebuild.DEFAULT_CHUNK],
        help="event ids per fold statement; several (comma-separated) alternate in each run",
    )
    parser.add_argument("--data-dir", type=Path, help="keep the database here (default: temp)")
    parser.add_argument(
        "--months",
        type=lambda text: [int(v) for v in text.split(",")],
        default=[1],
        help="monthly partitions the events are spread over; several: one database each",
    )
    parser.add_argument(
        "--interleave", action="store_true", help="consecutive ids in different months"
    )
    parser.add_argument(
        "--fold",
        type=lambda text: text.split(","),
        default=["partition"],
        help="partition (each partition in pieces of --chunks rows, the default) and/or id"
        " (id ranges over the whole table, the way before); several alternate in each run",
    )
    parser.add_argument(
        "--jobs",
        type=lambda text: [int(v) for v in text.split(",")],
        default=[1, 2],
        help="sessions folding at once; several alternate in each run",
    )
    args = parser.parse_args()

    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="auditor-bench-"))
    server = EmbeddedPostgres(data_dir, durable=True).start()
    try:
        dsns = {}
        for months in args.months:
            name = f"projection_{args.events}_{args.interactions}"
            if months > 1:
                name += f"_{months}m{'i' if args.interleave else ''}"
            dsns[months] = load(server, name, args, months)
        print(
            f"{'run':>4} {'months':>6} {'fold':<9} {'jobs':>4} {'what':<8} {'chunk':>9}"
            f" {'events':>10} {'seconds':>8} {'events/s':>10} {'per CPU-s':>10} {'CPU µs/ev':>7}"
            f" {'load':>5} differences"
        )
        postmaster = server.postmaster_pid()
        assert postmaster is not None
        for run in range(1, args.runs + 1):
            for months, dsn in dsns.items():
                for chunk in args.chunks:
                    for how, jobs in [(h, j) for h in args.fold for j in args.jobs]:
                        by_partition = how == "partition"
                        label = f"{run:>4} {months:>6} {how:<9} {jobs:>4}"
                        timed(
                            label, "check", chunk, dsn,
                            lambda c, k=chunk, b=by_partition, j=jobs, d=dsn:
                                _check(c, k, b, j, d),
                            postmaster,
                        )  # fmt: skip
                        broken = corrupt(dsn, 0.01)
                        report = timed(
                            label, "rebuild", chunk, dsn,
                            lambda c, k=chunk, b=by_partition, j=jobs, d=dsn:
                                _rebuild(c, k, b, j, d),
                            postmaster,
                        )  # fmt: skip
                        print(f"{'':>26} (corrupted {broken}, corrected {report.fixed})")
    finally:
        server.stop()
        if args.data_dir is None:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
