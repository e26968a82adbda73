"""Benchmark: retention plan, a purge with its receipts, and `verify` before and after it.

    python bench/retention.py [--notifications 120000] [--runs 2]

Per run, on a fresh database of a durable embedded PostgreSQL: the batch writer stores the
notifications spread over three months (two past the keep, one recent), then:

- `verify` of the whole record (every row recomputed);
- `retention plan` (row counts per partition, hold matching; one hold that matches nothing);
- `retention apply`: two purge receipts, each sealed, and two partitions dropped;
- `verify` of the whole record again: the purged positions are skipped (chain checked, leaf
  hashes digested against their receipt), the rest recomputed.

Prints wall seconds and rows per second; asserts nothing. The machine is shared: compare the
two verify rates of the same run, not across runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from sqlalchemy import create_engine, pool

from auditor.config import libpq_conninfo, parse_database_url
from auditor.pgserver import EmbeddedPostgres
from auditor.retention import holds
from auditor.retention.plan import make_plan
from auditor.retention.purge import apply
from auditor.retention.settings import RetentionSettings
from auditor.store import integrity, schema
from auditor.store.receipts import Receipt, new_receipt_id
from auditor.store.writer import store_batch

MONTHS = (datetime(2023, 1, 3, tzinfo=UTC), datetime(2023, 2, 3, tzinfo=UTC))
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


def _fill(url: str, notifications: int) -> None:
    starts = (*MONTHS, RECENT)
    with psycopg.connect(url) as conn:
        for first in range(0, notifications, BATCH):
            batch = []
            for n in range(first, min(first + BATCH, notifications)):
                at = starts[n * len(starts) // notifications] + timedelta(milliseconds=n)
                batch.append(
                    Receipt(new_receipt_id(), at, "agent001", "/v2/me/openmedia", _message(n))
                )
            store_batch(conn, batch)
            conn.commit()


def _fresh(server: EmbeddedPostgres) -> str:
    name = f"bench_retention_{uuid.uuid4().hex[:8]}"
    admin = libpq_conninfo(parse_database_url(server.url("postgres")))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    engine = create_engine(parse_database_url(server.url(name)), poolclass=pool.NullPool)
    with engine.begin() as c:
        schema.upgrade(c)
    engine.dispose()
    return libpq_conninfo(parse_database_url(server.url(name)))


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
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="auditor-bench-retention-"))
    server = EmbeddedPostgres(data_dir, durable=True).start()
    try:
        print(
            "| run | rows | verify before, rows/s | plan s | apply s (rows purged) |"
            " verify after, rows/s (positions skipped) |"
        )
        print("|---|---|---|---|---|---|")
        for run in range(1, args.runs + 1):
            url = _fresh(server)
            _fill(url, args.notifications)
            before, report = _verify(url)
            with psycopg.connect(url, autocommit=True) as conn:
                with conn.transaction():
                    holds.place(conn, holds.HoldSpec("bench", interaction_ids=["none"]), "b")
                began = time.perf_counter()
                plan = make_plan(conn, RetentionSettings(24), NOW)
                planned = time.perf_counter() - began
                began = time.perf_counter()
                result = apply(conn, plan, "bench", dry_run=False)
                applied = time.perf_counter() - began
            purged = sum(entry["rows"] for entry in result.dropped)
            after, again = _verify(url)
            print(
                f"| {run} | {report.checked:,} | {report.checked / before:,.0f} |"
                f" {planned:.2f} | {applied:.2f} ({purged:,}) |"
                f" {again.checked / after:,.0f} ({again.purged_positions:,}) |"
            )
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
