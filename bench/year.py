"""Benchmark: a year of data (issue 14 item 4). One growing database of 24 monthly partitions,
measured at 5,000,000 events and again at 20,000,000, in the same run.

    python bench/year.py [--events 20000000] [--first 5000000] [--months 24]
                         [--data-dir /tmp/auditor-bench-year] [--min-free-gb 12]
                         [--until HH:MM] [--loader sql|writer] [--sessions 3] [--drop]
    python bench/year.py --measure-only   # the existing database, no loading
    python bench/year.py --measure-only --samples 0 --drop   # only drop the oldest month
    python bench/year.py --check-shape   # the SQL loader's rows against the writer's

Loading (bench/year_load.py): by default the rows the batch writer stores, generated in SQL
(bench/year_sql.py: events, user-data values, projection fold, record rows; the record's
hashes are stand-ins, see there), chunks of 200,000 events, ``--sessions`` chunks at once,
their record rows appended in order; or with ``--loader writer`` through
auditor.store.writer.store_batch itself, batches of 5,000. The cluster runs with fsync off
while loading (bench-only) and as deployed, fsync on, while measuring. The events are
bench/api.py's shape (8 per interaction, 50 agents, 4 media types, 3 user-data keys),
received in passes of ``--first`` events, each pass spread evenly over the ``--months``
months: at the first measurement every month holds a quarter of what it holds after four
passes. Before each chunk the free disk is checked; loading stops when it would fall under
``--min-free-gb``, after ``--until`` or when the file STOP exists in the data directory, and
the database is measured at the size it reached (printed). A stopped load resumes where the
record's head is; the measurement at ``--first`` events is then read from year-stages.json
in the data directory (printed so).

Each measurement: VACUUM (ANALYZE), as autovacuum would after a bulk load; disk per event
(`pg_database_size` and per table); then `auditor serve` (2 gunicorn workers, the API's own
login) and p50/p99 (total and server time) of timeline, projection lookup, by-referenceId
lookup and three searches, ``--samples`` requests each over the whole id and time range. At
the end the two measurements side by side with their ratios (target: p99 within 1.5x).
``--drop`` then drops the oldest month through the retention path (plan, purge receipt
sealed into the record, DROP of the partition, the projection rows it leaves without events)
and prints the time. A benchmark that prints numbers; it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest.mock import patch

import orjson
import psycopg
from sqlalchemy.engine import URL

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.serving

from api import ACCOUNTS, EVENTS_PER_INTERACTION, MEDIA, Client, _pct, kept_database
from year_load import START, _end, check_shape, load_to, stored

from auditor import tokens
from auditor.config import libpq_conninfo, parse_database_url
from auditor.pgserver import EmbeddedPostgres
from auditor.retention.plan import make_plan
from auditor.retention.purge import apply
from auditor.retention.settings import RetentionSettings
from auditor.roles import grant_login
from auditor.store import event_references
from tests.serving import serve

DATABASE = "bench_year"


@dataclass
class Stage:
    events: int
    interactions: int = 0
    disk: dict[str, int] = field(default_factory=dict)
    p99: dict[str, tuple[float, float]] = field(default_factory=dict)  # total, server


class Cluster:
    """The benchmark's PostgreSQL: loaded with fsync off (bench-only: a crash while loading
    costs the data directory, nothing else), measured as deployed, fsync on (every API
    request commits its access-log row). The port stays (its file in the data directory)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.server: EmbeddedPostgres | None = None

    def running(self, durable: bool) -> EmbeddedPostgres:
        if self.server is not None and self.server.durable != durable:
            self.server.stop()
            self.server = None
        if self.server is None:
            self.server = EmbeddedPostgres(self.data_dir, durable=durable).start()
        return self.server

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


def load_stage(saved: dict[str, Any]) -> Stage:
    p99 = {k: (float(v[0]), float(v[1])) for k, v in saved["p99"].items()}
    return Stage(int(saved["events"]), int(saved["interactions"]), dict(saved["disk"]), p99)


_SIZES = """
SELECT pg_database_size(current_database()),
       (SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('events'::regclass)),
       pg_total_relation_size('record'), pg_total_relation_size('interactions'),
       pg_total_relation_size('user_data_values'), pg_total_relation_size('event_references'),
       (SELECT count(*) FROM pg_partition_tree('events'::regclass) WHERE isleaf),
       (SELECT count(*) FROM interactions)
"""


def disk(dsn: str, stage: Stage) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        t0 = time.perf_counter()
        for table in ("events", "record", "interactions", "user_data_values", "event_references"):
            conn.execute(f"VACUUM (ANALYZE) {table}")
        print(f"VACUUM (ANALYZE): {time.perf_counter() - t0:.0f} s", flush=True)
        row = conn.execute(_SIZES).fetchone()
        assert row is not None
    names = ("database", "events", "record", "interactions", "user_data_values",
             "event_references")  # fmt: skip
    stage.disk = {name: int(v) for name, v in zip(names, row[:6], strict=True)}
    partitions, stage.interactions = int(row[6]), int(row[7])
    per_event = ", ".join(f"{k} {v / stage.events:,.0f}" for k, v in stage.disk.items())
    print(f"disk at {stage.events:,} events ({stage.interactions:,} interactions,"
          f" {partitions} partitions of events incl. default): database"
          f" {stage.disk['database'] / 1e9:.2f} GB; bytes per event: {per_event}",
          flush=True)  # fmt: skip


@contextmanager
def api_server(url: URL) -> Iterator[Client]:
    """`auditor serve` as deployed: 2 workers, its own login in auditor_api."""
    with psycopg.connect(libpq_conninfo(url), autocommit=True) as conn:
        conn.execute("DELETE FROM api_tokens WHERE name = 'bench'")
        token = tokens.create(conn, "bench", "admin")
        password = secrets.token_urlsafe(24)
        grant_login(conn, "api", "bench_api", password)
    api_url = url.set(username="bench_api", password=password)
    with serve(api_url, None, workers=2) as served:
        yield Client(served.port, token)


def timed(stage: Stage, name: str, client: Client, requests: list[tuple[str, dict[str, object]]]
          ) -> None:  # fmt: skip
    for path, params in requests[:20]:  # warm up the connection path, not the data
        client.get(path, **params)
    totals, servers = [], []
    for path, params in requests:
        _, _, total, server = client.get(path, **params)
        totals.append(total)
        servers.append(server)
    stage.p99[name] = (_pct(totals, 0.99), _pct(servers, 0.99))
    print(f"{name:<30} n={len(totals):<5} total p50 {_pct(totals, 0.5):7.2f} ms"
          f"  p99 {_pct(totals, 0.99):7.2f} ms   server p50 {_pct(servers, 0.5):7.2f} ms"
          f"  p99 {_pct(servers, 0.99):7.2f} ms", flush=True)  # fmt: skip


def measure(url: URL, stage: Stage, months: int, samples: int) -> None:
    rng = random.Random(stage.events)
    span_days = (_end(months) - START).days
    interactions = -(-stage.events // EVENTS_PER_INTERACTION)
    print(
        f"\n{stage.events:,} events over {months} months; load {os.getloadavg()[0]:.1f};"
        " HTTP to gunicorn (2 sync workers), new connection per request",
        flush=True,
    )
    with api_server(url) as client:
        ids = kept_ids(url, [f"om{rng.randrange(interactions):09d}" for _ in range(2 * samples)])
        ids = (ids * samples)[:samples]
        timed(stage, "timeline", client, [(f"/api/v1/interactions/{i}/timeline", {})
                                          for i in ids])  # fmt: skip
        timed(stage, "projection lookup", client,
              [(f"/api/v1/interactions/{i}", {}) for i in ids])  # fmt: skip
        timed(stage, "by-referenceId lookup", client,
              [("/api/v1/events", {"referenceId": rng.randrange(stage.events)})
               for _ in range(samples)])  # fmt: skip
        days = [START + timedelta(days=rng.randrange(span_days)) for _ in range(samples)]
        timed(stage, "search page 1 (account+day)", client, [
            ("/api/v1/events", {"account": f"agent{rng.randrange(ACCOUNTS):03d}",
                                "from": d.isoformat(),
                                "to": (d + timedelta(days=1)).isoformat(), "limit": 100})
            for d in days])  # fmt: skip
        timed(stage, "search page 1 (account)", client,
              [("/api/v1/events", {"account": f"agent{rng.randrange(ACCOUNTS):03d}",
                                   "limit": 100}) for _ in range(samples)])  # fmt: skip
        timed(stage, "search page 1 (media+state)", client,
              [("/api/v1/events", {"mediaType": rng.choice(MEDIA), "state": "Handling"})
               for _ in range(samples)])  # fmt: skip


def kept_ids(url: URL, drawn: list[str]) -> list[str]:
    """The drawn interaction ids the projection still has, in their order (after a --drop
    the oldest month's interactions are gone and would answer 404)."""
    with psycopg.connect(libpq_conninfo(url)) as conn:
        kept = {
            r[0]
            for r in conn.execute(
                "SELECT interaction_id FROM interactions WHERE interaction_id = ANY(%s)", (drawn,)
            )
        }
    return [i for i in drawn if i in kept]


def compare(small: Stage, large: Stage) -> None:
    print(f"\n{'p99 (ms)':<30} {small.events:>12,} {large.events:>12,}   ratio"
          f"   (total / server time)")  # fmt: skip
    for name, (total, server) in small.p99.items():
        big_total, big_server = large.p99[name]
        print(f"{name:<30} {total:>5.1f} / {server:<5.1f} {big_total:>6.1f} / {big_server:<5.1f}"
              f"  {big_total / total:4.2f} / {big_server / server:4.2f}")  # fmt: skip
    print(f"{'disk, bytes per event':<30} {small.disk['database'] / small.events:>12,.0f}"
          f" {large.disk['database'] / large.events:>12,.0f}   (the database)")  # fmt: skip
    print(f"{'':<30} {tables(small) / small.events:>12,.0f} {tables(large) / large.events:>12,.0f}"
          "   (events, record, interactions, user_data_values, event_references with their"
          " indexes)")  # fmt: skip
    print(f"{'':<30} {small.disk.get('event_references', 0) / small.events:>12,.0f}"
          f" {large.disk.get('event_references', 0) / large.events:>12,.0f}"
          "   (event_references with its indexes)")  # fmt: skip


TABLES = ("events", "record", "interactions", "user_data_values", "event_references")


def tables(stage: Stage) -> int:
    return sum(stage.disk.get(t, 0) for t in TABLES)


def drop_oldest(dsn: str, months: int) -> None:
    """The oldest month through the retention path: keep ``months - 1`` months, as of the
    month after the data ends."""
    now = _end(months) + timedelta(days=1)
    forgetting: list[float] = []
    forget = event_references.forget_purged

    def timed_forget(conn: psycopg.Connection[Any], purge_id: int) -> int:
        t = time.perf_counter()
        try:
            return forget(conn, purge_id)
        finally:
            forgetting.append(time.perf_counter() - t)

    with (
        psycopg.connect(dsn, autocommit=True) as conn,
        patch.object(event_references, "forget_purged", timed_forget),
    ):
        t0 = time.perf_counter()
        plan = make_plan(conn, RetentionSettings(months - 1), now)
        planned = time.perf_counter() - t0
        t1 = time.perf_counter()
        result = apply(conn, plan, "bench/year.py", dry_run=False)
        applied = time.perf_counter() - t1
    for entry in result.dropped:
        print(
            f"retention dropped {entry['partition']}: {entry['rows']:,} events,"
            f" {entry['interactions_forgotten']:,} interactions forgotten,"
            f" {entry.get('references_forgotten', 0):,} event_references rows deleted",
            flush=True,
        )
    print(f"of the apply, the event_references deletes (after the drop, outside the writer's"
          f" lock): {sum(forgetting):.1f} s", flush=True)  # fmt: skip
    print(
        f"retention plan {planned:.1f} s (counts every partition's rows by media type);"
        f" apply {applied:.1f} s (purge receipt over the month's record positions, sealed,"
        " DROP of the partition, the projection rows left without events)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000_000)
    parser.add_argument("--first", type=int, default=5_000_000, help="the first measurement")
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/auditor-bench-year"))
    parser.add_argument("--min-free-gb", type=float, default=12.0)
    parser.add_argument("--measure-only", action="store_true", help="no loading: measure as is")
    parser.add_argument("--drop", action="store_true", help="then drop the oldest month")
    parser.add_argument("--loader", choices=("sql", "writer"), default="sql")
    parser.add_argument("--sessions", type=int, default=3,
                        help="the SQL loader's chunks in flight at once")  # fmt: skip
    parser.add_argument("--until", help="stop loading after this UTC time (HH:MM) and measure")
    parser.add_argument("--check-shape", action="store_true",
                        help="only compare the SQL loader's rows with the writer's")  # fmt: skip
    args = parser.parse_args()
    # A SIGTERM (the integrator stopping a long load) stops the server too, via finally.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    cluster = Cluster(args.data_dir)
    try:
        server = cluster.running(durable=True)
        if args.check_shape:
            sys.exit(
                0 if check_shape(parse_database_url(server.url("postgres")), args.months) else 1
            )
        url = kept_database(server, DATABASE)
        dsn = libpq_conninfo(url)
        until = None
        if args.until:
            hour, minute = (int(v) for v in args.until.split(":"))
            until = datetime.now(UTC).replace(hour=hour, minute=minute, second=0)
        saved = args.data_dir / "year-stages.json"
        stages: list[Stage] = []
        targets = [] if args.measure_only else sorted({args.first, args.events})
        for target in targets:
            if stored(dsn) > target and saved.exists():  # a resumed load: measured before
                stages += [load_stage(st) for st in orjson.loads(saved.read_bytes())
                           if st["events"] == target]  # fmt: skip
                print(f"the measurement at {target:,} events is {saved}'s (an earlier run)")
                continue
            cluster.running(durable=False)
            t0 = time.perf_counter()
            reached = load_to(dsn, target, args.first, args.months, args.data_dir,
                              args.min_free_gb, args.loader, until, args.sessions)  # fmt: skip
            print(f"loaded to {reached:,} events in {time.perf_counter() - t0:.0f} s", flush=True)
            if stages and reached == stages[-1].events:
                break
            cluster.running(durable=True)
            stages.append(Stage(reached))
            disk(dsn, stages[-1])
            measure(url, stages[-1], args.months, args.samples)
            saved.write_bytes(orjson.dumps([vars(st) for st in stages]))
            if reached < target:
                break
        cluster.running(durable=True)
        if args.measure_only:
            if saved.exists():  # the first measurement of the run that loaded the database
                first = orjson.loads(saved.read_bytes())[0]
                stages.append(load_stage(first))
                print(f"compared with {saved} (measured when the load passed"
                      f" {first['events']:,} events, not in this run)", flush=True)  # fmt: skip
            stages.append(Stage(stored(dsn)))
            if args.samples:  # --samples 0 --drop: only the drop
                disk(dsn, stages[-1])
                measure(url, stages[-1], args.months, args.samples)
        if len(stages) > 1 and stages[-1].p99:
            compare(stages[0], stages[-1])
        if args.drop:
            drop_oldest(dsn, args.months)
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
