"""Benchmark of the BI views: each sample query of docs/bi.md over N events (default
5,000,000 over a year), run as a member of auditor_bi, p50/p99 of the wall time per query.

Targets (issue #11): each sample query <= 1 s; daily volumes over a whole year <= 10 s.

Data: documented Open Media lifecycles generated inside PostgreSQL (bench/api.py's generator
has no Invited/Accept/transfer lifecycle, so it cannot exercise these views): per interaction
6 in 10 handled (5 events), 2 in 10 transferred to another agent (8), 1 in 10 rejected and
re-routed (6), 1 in 10 with an Error (5); 200 agents, 4 media types, userData with a changing
Priority; every account covered, with a 10-minute gap each month. Then the interactions
projection in one statement (bench/api.py's), VACUUM ANALYZE, and the BI summaries brought
up to date by auditor_bi_refresh() (its rate is printed).

    python bench/bi.py [--events N] [--runs 5] [--data-dir /tmp/auditor-bench-bi]

Uses AUDITOR_DATABASE_URL if set (its database is filled once), else a durable embedded
PostgreSQL under --data-dir, kept between runs so that the load happens once per size.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from sqlalchemy.engine import URL

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api import PROJECT

from auditor.bi import refresh
from auditor.bi.samples import SAMPLE_QUERIES, for_psycopg
from auditor.config import libpq_conninfo, parse_database_url
from auditor.db import sa_connection
from auditor.pgserver import EmbeddedPostgres
from auditor.roles import grant_login
from auditor.store import schema

START = datetime(2025, 12, 1, tzinfo=UTC)
SPAN = timedelta(days=365)
END = START + SPAN
ACCOUNTS = 200
EVENTS_PER_INTERACTION = 5.7  # the scenario mix below
CHUNK = 50_000  # interactions per INSERT

STEPS = """(VALUES
    ('handled', 1, 'a', 'Invited', 'StatusChange', 0),
    ('handled', 2, 'a', 'Processing', 'StatusChange', 15),
    ('handled', 3, 'a', 'Processing', 'PropertiesUpdated', 40),
    ('handled', 4, 'a', 'Processing', 'PropertiesUpdated', 90),
    ('handled', 5, 'a', 'Completed', 'StatusChange', 240),
    ('transferred', 1, 'a', 'Invited', 'StatusChange', 0),
    ('transferred', 2, 'a', 'Processing', 'StatusChange', 12),
    ('transferred', 3, 'a', 'Processing', 'PropertiesUpdated', 30),
    ('transferred', 4, 'a', 'Completed', 'StatusChange', 60),
    ('transferred', 5, 'b', 'Invited', 'StatusChange', 61),
    ('transferred', 6, 'b', 'Processing', 'StatusChange', 75),
    ('transferred', 7, 'b', 'Processing', 'PropertiesUpdated', 100),
    ('transferred', 8, 'b', 'Completed', 'StatusChange', 200),
    ('rejected', 1, 'a', 'Invited', 'StatusChange', 0),
    ('rejected', 2, 'a', 'Completed', 'StatusChange', 8),
    ('rejected', 3, 'b', 'Invited', 'StatusChange', 10),
    ('rejected', 4, 'b', 'Processing', 'StatusChange', 20),
    ('rejected', 5, 'b', 'Processing', 'PropertiesUpdated', 50),
    ('rejected', 6, 'b', 'Completed', 'StatusChange', 150),
    ('error', 1, 'a', 'Invited', 'StatusChange', 0),
    ('error', 2, 'a', 'Processing', 'StatusChange', 10),
    ('error', 3, 'a', 'Processing', 'PropertiesUpdated', 30),
    ('error', 4, 'a', 'Processing', 'Error', 35),
    ('error', 5, 'a', 'Completed', 'StatusChange', 120)
) AS s(scenario, k, who, state, ntype, offset_s)"""

INSERT = f"""
INSERT INTO events (receipt_id, received_at, kind, account, channel, message_type,
                    notification_type, interaction_id, reference_id, media_type,
                    openmedia_type, state, error_code, error_message, payload)
SELECT gen_random_uuid(), at, 'notification', account, '/v2/me/openmedia',
       'OpenmediaStateChangeMessage', ntype, iid, ref, media, 'Inbound', state,
       CASE WHEN ntype = 'Error' THEN '1203' END,
       CASE WHEN ntype = 'Error' THEN 'Interaction is locked or not owned by this agent' END,
       jsonb_build_object('channel', '/v2/me/openmedia', 'data', jsonb_build_object(
           'messageType', 'OpenmediaStateChangeMessage', 'notificationType', ntype,
           'referenceId', ref::int,
           'openmedia', jsonb_build_object(
               'id', iid, 'state', state, 'mediaType', media, 'openmediaType', 'Inbound',
               'capabilities', CASE state WHEN 'Invited' THEN '["Accept", "Reject"]'::jsonb
                                          WHEN 'Completed' THEN '[]'::jsonb
                                          ELSE '["Transfer", "Complete"]'::jsonb END,
               'userData', jsonb_build_object(
                   'RTenant', 'Environment', 'CaseId', 'C-' || i,
                   'CustomerSegment', (ARRAY['gold', 'silver', 'default'])[1 + i %% 3],
                   'ServiceType', (ARRAY['sales', 'support'])[1 + i %% 2],
                   'Priority', 1 + (s.k / 3) %% 3))))
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint - 1) AS i
CROSS JOIN LATERAL (
    SELECT CASE WHEN i %% 10 < 6 THEN 'handled' WHEN i %% 10 < 8 THEN 'transferred'
                WHEN i %% 10 = 8 THEN 'rejected' ELSE 'error' END AS scenario,
           'om' || lpad(i::text, 10, '0') AS iid,
           (ARRAY['email', 'chat', 'workitem', 'sms'])[1 + (i / 3) %% 4] AS media,
           %(start)s::timestamptz + i * %(spacing)s::interval AS t0,
           1 + (i %% 7) / 10.0 AS stretch
) AS x
JOIN {STEPS} ON s.scenario = x.scenario
CROSS JOIN LATERAL (
    SELECT x.t0 + s.offset_s * x.stretch * interval '1 second' AS at,
           'agent' || lpad((CASE s.who WHEN 'a' THEN i %% {ACCOUNTS}
                                      ELSE (i + 1 + i %% 17) %% {ACCOUNTS} END)::text, 3, '0')
               AS account,
           CASE WHEN s.state = 'Invited' THEN NULL ELSE (i * 10 + s.k)::text END AS ref
) AS y
ORDER BY at
"""


def _months() -> list[datetime]:
    months, month = [], START
    while month <= END:
        months.append(month)
        month = (month.replace(day=1) + timedelta(days=32)).replace(day=1)
    return months


def load(url: URL, total: int) -> None:
    with psycopg.connect(libpq_conninfo(url), autocommit=True) as conn:
        have = conn.execute("SELECT count(*) FROM interactions").fetchone()
        if have and have[0] > 0:
            print(f"database already loaded ({have[0]:,} interactions)", flush=True)
            return
        for month in _months():
            conn.execute("SELECT auditor_ensure_event_partition(%s)", (month.date(),))
        interactions = int(total / EVENTS_PER_INTERACTION)
        spacing = SPAN / interactions
        t0 = time.perf_counter()
        for lo in range(0, interactions, CHUNK):
            conn.execute(
                INSERT,
                {
                    "lo": lo,
                    "hi": min(lo + CHUNK, interactions),
                    "start": START,
                    "spacing": spacing,
                },
            )
        count = conn.execute("SELECT count(*) FROM events").fetchone()
        t1 = time.perf_counter()
        events = count[0] if count else 0
        print(f"{events:,} events ({interactions:,} interactions): {t1 - t0:.0f} s", flush=True)
        conn.execute("SET work_mem = '256MB'")
        conn.execute(PROJECT)
        conn.execute("VACUUM (ANALYZE) events")
        conn.execute("VACUUM (ANALYZE) interactions")
        # Every account covered, each with a 10-minute gap at the start of every month.
        conn.execute(
            "INSERT INTO coverage_intervals (account, worker_id, channels, started_at,"
            " heartbeat_at, ended_at, end_reason)"
            " SELECT 'agent' || lpad(a::text, 3, '0'), 'bench', ARRAY['/v2/me/openmedia'],"
            "        m + interval '10 minutes', m + interval '1 month',"
            "        m + interval '1 month', 'disconnected'"
            " FROM generate_series(0, %s) AS a,"
            "      generate_series(%s::timestamptz - interval '1 month', %s, interval '1 month')"
            "          AS m",
            (ACCOUNTS - 1, START, END),
        )
        conn.execute("VACUUM (ANALYZE) coverage_intervals")
        print(f"projection, analyze, coverage: {time.perf_counter() - t1:.0f} s", flush=True)


def _bi_login(url: URL) -> URL:
    """A login in auditor_bi, as analysts connect (the embedded cluster asks every login but
    its bootstrap superuser for a password)."""
    password = secrets.token_urlsafe(24)
    with psycopg.connect(libpq_conninfo(url), autocommit=True) as conn:
        grant_login(conn, "bi", "bench_bi", password)
    return url.set(username="bench_bi", password=password)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _time(conn: psycopg.Connection[tuple[object, ...]], sql: str, params: object) -> float:
    t0 = time.perf_counter()
    conn.execute(sql, params).fetchall()  # type: ignore[arg-type]
    return time.perf_counter() - t0


def measure(
    conn: psycopg.Connection[tuple[object, ...]],
    name: str,
    sql: str,
    params: object,
    runs: int,
    target: float,
) -> None:
    first = _time(conn, sql, params)  # warms the cache; counted only if it is the only run
    times = [_time(conn, sql, params) for _ in range(runs - 1)] or [first]
    verdict = "ok" if _pct(times, 0.99) <= target else "MISSED"
    print(
        f"{name:<46} n={len(times):<3} p50 {_pct(times, 0.5):8.3f} s  p99 {_pct(times, 0.99):8.3f}"
        f" s  (cold {first:7.3f} s, mean {statistics.fmean(times):7.3f} s)"
        f"  target {target:g} s: {verdict}",
        flush=True,
    )


def refresh_summaries(url: URL, batch: int) -> None:
    """Bring the summaries up to the events, as `auditor bi refresh` does; prints the rate."""
    with psycopg.connect(libpq_conninfo(url)) as conn:
        pending = refresh.pending_events(conn)
        t0 = time.perf_counter()
        done = 0
        while consumed := refresh.refresh_once(conn, batch):
            conn.commit()
            done += consumed
        conn.commit()
        elapsed = time.perf_counter() - t0
    if done:
        print(
            f"summary refresh: {done:,} of {pending:,} pending events in {elapsed:.0f} s"
            f" ({done / elapsed:,.0f} events/s, batches of {batch:,})",
            flush=True,
        )
    else:
        print("summaries up to date", flush=True)


def run(url: URL, total: int, runs: int, batch: int) -> None:
    load(url, total)
    refresh_summaries(url, batch)
    login = _bi_login(url)
    print(f"load average before: {os.getloadavg()}", flush=True)
    with psycopg.connect(libpq_conninfo(login), autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        ranges = {
            "last 1 day": (END - timedelta(days=1), END),
            "last 30 days": (END - timedelta(days=30), END),
        }
        for label, (lo, hi) in ranges.items():
            print(f"-- sample queries, range: {label}", flush=True)
            for query in SAMPLE_QUERIES:
                params = {"start": lo, "end": hi}
                measure(conn, query.name, for_psycopg(query.sql), params, runs, 1.0)
        print("-- full-table scans", flush=True)
        measure(
            conn,
            "daily_volumes over the year (per day, media)",
            "SELECT day, media_type, sum(events) FROM bi.daily_volumes"
            " WHERE day >= %(start)s AND day < %(end)s GROUP BY 1, 2",
            {"start": START.date(), "end": END.date()},
            max(2, runs // 2),
            10.0,
        )
        print("-- point lookups (the API's findings and an interaction's row)", flush=True)
        iid = f"om{int(total / EVENTS_PER_INTERACTION) // 2:010d}"
        for name, sql in (
            (
                "findings of one interaction",
                "SELECT * FROM bi.lifecycle_findings WHERE interaction_id = %(iid)s",
            ),
            ("one interaction", "SELECT * FROM bi.interactions WHERE interaction_id = %(iid)s"),
            (
                "findings of one account",
                "SELECT * FROM bi.lifecycle_findings WHERE account = 'agent007'",
            ),
            (
                "newest 101 findings (the API's first page)",
                "SELECT * FROM bi_v1.lifecycle_findings ORDER BY event_id DESC, code DESC"
                " LIMIT 101",
            ),
            (
                "findings of the last day, newest 101",
                "SELECT * FROM bi_v1.lifecycle_findings WHERE received_at >= %(day)s"
                " ORDER BY event_id DESC, code DESC LIMIT 101",
            ),
        ):
            measure(conn, name, sql, {"iid": iid, "day": END - timedelta(days=1)}, runs, 1.0)
    print(f"load average after: {os.getloadavg()}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--refresh-batch", type=int, default=50_000)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/auditor-bench-bi"))
    args = parser.parse_args()
    if os.environ.get("AUDITOR_DATABASE_URL"):
        url = parse_database_url(os.environ["AUDITOR_DATABASE_URL"])
        with sa_connection(url) as connection:
            schema.upgrade(connection)
        run(url, args.events, args.runs, args.refresh_batch)
        return
    data_dir = args.data_dir / f"{args.events}"
    server = EmbeddedPostgres(data_dir, durable=True).start()
    try:
        url = parse_database_url(server.url("postgres"))
        with sa_connection(url) as connection:
            schema.upgrade(connection)
        run(url, args.events, args.runs, args.refresh_batch)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
