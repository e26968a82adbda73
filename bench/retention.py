"""Benchmark: retention plan, a purge with its receipts, and `verify` before and after it.

    python bench/retention.py [--notifications 120000] [--runs 2] [--months 2]
                              [--interleave] [--variants two-step,locked]

Per run, on a fresh database of a durable embedded PostgreSQL: the batch writer stores the
notifications spread over `--months` months past the keep and one recent month (in that
order, or with `--interleave` consecutive notifications in different months, five per
interaction either way), then, for each of `--variants` on a copy of that database (CREATE
DATABASE ... TEMPLATE):

- `verify` of the whole record (every row recomputed);
- `retention plan` (row counts per partition, hold matching; one hold that matches nothing);
- `retention apply`: a purge receipt per old month, each sealed, and the partitions dropped,
  while a writer stores a one-event batch every 20 ms into the recent month: the longest
  such batch is how long the writer waited for the purge's lock. `two-step` is apply as
  shipped (the month read and folded without the writer's lock, then the short locked step);
  `locked` runs both steps in one transaction under the lock (purge_partition: how every
  purge ran before); `lock held` is from taking the lock to the commit;
- `verify` of the whole record again: the purged positions are skipped (chain checked, leaf
  hashes digested against their receipt), the rest recomputed.

Prints wall seconds and rows per second; asserts nothing. The machine is shared: compare the
two verify rates of the same run, not across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import create_engine, pool

from auditor.config import libpq_conninfo, parse_database_url
from auditor.pgserver import EmbeddedPostgres
from auditor.retention import holds
from auditor.retention.plan import Plan, make_plan
from auditor.retention.purge import apply, purge_partition
from auditor.retention.settings import RetentionSettings
from auditor.store import integrity, schema
from auditor.store.receipts import Receipt, new_receipt_id
from auditor.store.writer import store_batch

RECENT = datetime(2026, 11, 3, tzinfo=UTC)
NOW = datetime(2026, 12, 2, tzinfo=UTC)
BATCH = 5_000


def _message(n: int) -> str:
    return json.dumps(
        {
            "messageType": "OpenmediaStateChangeMessage",
            "notificationType": "StatusChange",
            "openmedia": {
                "id": f"OM-{n // 5}",
                "state": "Processing",
                "mediaType": "email",
                "userData": {"n": n, "CaseId": f"C{n}"},
            },
        }
    )


def _fill(url: str, notifications: int, months: int, interleave: bool) -> None:
    starts = [datetime(2023 + m // 12, 1 + m % 12, 3, tzinfo=UTC) for m in range(months)]
    starts.append(RECENT)
    with psycopg.connect(url) as conn:
        for first in range(0, notifications, BATCH):
            batch: dict[int, list[Receipt]] = {}
            for n in range(first, min(first + BATCH, notifications)):
                month = n % len(starts) if interleave else n * len(starts) // notifications
                at = starts[month] + timedelta(milliseconds=n)
                # With --interleave, interaction n // 5 still has five events, in five months.
                body = _message(n // len(starts) * len(starts) + month if interleave else n)
                receipt = Receipt(new_receipt_id(), at, "agent001", "/v2/me/openmedia", body)
                batch.setdefault(month, []).append(receipt)
            for part in batch.values():  # a writer batch never spans two months
                store_batch(conn, part)
            conn.commit()


class Writer(threading.Thread):
    """A one-event batch into the recent month every 20 ms; the longest batch is how long
    the writer waited for the lock."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.stop, self.longest, self.batches = url, threading.Event(), 0.0, 0

    def run(self) -> None:
        with psycopg.connect(self.url) as conn:
            while not self.stop.wait(0.02):
                receipt = Receipt(
                    new_receipt_id(), RECENT, "agent002", "/v2/me/openmedia", _message(-1)
                )
                began = time.perf_counter()
                store_batch(conn, [receipt])
                conn.commit()
                self.longest = max(self.longest, time.perf_counter() - began)
                self.batches += 1


def _copy(server: EmbeddedPostgres, template: str) -> str:
    name = f"{template}_{uuid.uuid4().hex[:6]}"
    admin = libpq_conninfo(parse_database_url(server.url("postgres")))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')  # type: ignore[arg-type]
    return libpq_conninfo(parse_database_url(server.url(name)))


def _locked(conn: psycopg.Connection[Any], plan: Plan) -> tuple[int, float]:
    """Every partition's purge in one transaction under the writer's lock (as before)."""
    rows, held = 0, 0.0
    for decision in plan.to_drop:
        began = time.perf_counter()
        with conn.transaction():
            rows += purge_partition(conn, decision, "bench").rows
        held = max(held, time.perf_counter() - began)
    return rows, held


def _two_step(conn: psycopg.Connection[Any], plan: Plan) -> tuple[int, float]:
    result = apply(conn, plan, "bench", dry_run=False)
    held = max((e["locked_seconds"] for e in result.dropped), default=0.0)
    return sum(e["rows"] for e in result.dropped), held


def _fresh(server: EmbeddedPostgres) -> tuple[str, str]:
    name = f"bench_retention_{uuid.uuid4().hex[:8]}"
    admin = libpq_conninfo(parse_database_url(server.url("postgres")))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    engine = create_engine(parse_database_url(server.url(name)), poolclass=pool.NullPool)
    with engine.begin() as c:
        schema.upgrade(c)
    engine.dispose()
    return name, libpq_conninfo(parse_database_url(server.url(name)))


def _verify(url: str) -> tuple[float, integrity.Report]:
    with psycopg.connect(url) as conn:
        began = time.perf_counter()
        report = integrity.verify(conn)
        seconds = time.perf_counter() - began
        conn.rollback()
    assert report.ok, report.problem
    return seconds, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--notifications", type=int, default=120_000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--months", type=int, default=2, help="old months (past the keep)")
    parser.add_argument("--interleave", action="store_true")
    parser.add_argument(
        "--variants", type=lambda text: text.split(","), default=["two-step", "locked"]
    )
    args = parser.parse_args()
    variants = {"two-step": _two_step, "locked": _locked}
    data_dir = Path(tempfile.mkdtemp(prefix="auditor-bench-retention-"))
    server = EmbeddedPostgres(data_dir, durable=True).start()
    try:
        print(
            "| run | variant | rows | verify before, rows/s | plan s | apply s (rows purged) |"
            " lock held, longest s | writer's longest batch s (batches) |"
            " verify after, rows/s (positions skipped) | load |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for run in range(1, args.runs + 1):
            template, url = _fresh(server)
            _fill(url, args.notifications, args.months, args.interleave)
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")
            for variant in args.variants:
                url = _copy(server, template)
                before, report = _verify(url)
                with psycopg.connect(url, autocommit=True) as conn:
                    with conn.transaction():
                        holds.place(conn, holds.HoldSpec("bench", interaction_ids=["none"]), "b")
                    began = time.perf_counter()
                    plan = make_plan(conn, RetentionSettings(24), NOW)
                    planned = time.perf_counter() - began
                    writer = Writer(url)
                    writer.start()
                    time.sleep(0.5)
                    began = time.perf_counter()
                    purged, held = variants[variant](conn, plan)
                    applied = time.perf_counter() - began
                    time.sleep(0.5)
                    writer.stop.set()
                    writer.join()
                after, again = _verify(url)
                print(
                    f"| {run} | {variant} | {report.checked:,} | {report.checked / before:,.0f} |"
                    f" {planned:.2f} | {applied:.2f} ({purged:,}) | {held:.2f} |"
                    f" {writer.longest:.2f} ({writer.batches}) |"
                    f" {again.checked / after:,.0f} ({again.purged_positions:,}) |"
                    f" {os.getloadavg()[0]:.1f} |",
                    flush=True,
                )
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
