"""Benchmark of the query API over HTTP against `auditor serve` (gunicorn) on 127.0.0.1.

Loads N events (default 5,000,000) with a generator straight into PostgreSQL (COPY into
events, then the interactions projection with one SQL statement; not through the worker),
starts `auditor serve`, and prints p50/p99 of the total time (client, new connection per
request) and of the server time (the Server-Timing header: from before_request to
after_request in the Flask app) for: timeline, search page 1 and page 10, projection lookup,
by-referenceId lookup; the first page, a deep page and every page of one 200,000-event
interaction with the workers' RSS before and after; user-data searches (exact, ever, as_of);
and export rows/s. Targets: timeline p99 <= 5 ms, search p99 <= 10 ms (server time), first
page of the long interaction <= 100 ms, exact user-data match p99 <= 20 ms, export >= 50,000
rows/s.

    python bench/api.py [--events N] [--samples 300] [--data-dir /tmp/auditor-bench-api]

Uses AUDITOR_DATABASE_URL if set (its database is filled once), else a durable embedded
PostgreSQL under --data-dir, kept between runs so that the load happens only once per size.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import random
import secrets
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import psycopg
from sqlalchemy.engine import URL

from auditor import tokens
from auditor.config import libpq_conninfo, parse_database_url
from auditor.db import sa_connection
from auditor.pgserver import EmbeddedPostgres
from auditor.roles import grant_login
from auditor.store import event_references, schema, userdata_values

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.serving
from tests.serving import serve

START = datetime(2026, 10, 1, tzinfo=UTC)
SPAN = timedelta(days=30)
ACCOUNTS = 50
EVENTS_PER_INTERACTION = 8
STATES = ["Routing", "Routing", "Handling", "Handling", "Handling", "Handling", "Handling",
          "Completed"]  # fmt: skip
MEDIA = ["email", "chat", "sms", "workitem"]
COLUMNS = (
    "receipt_id, received_at, kind, account, channel, message_type, notification_type,"
    " interaction_id, reference_id, media_type, openmedia_type, state, payload"
)

PROJECT = """
INSERT INTO interactions (
    interaction_id, media_type, openmedia_type, user_data, user_data_event_id, account_states,
    accounts, first_seen_at, last_seen_at, first_event_id, last_event_id, event_count,
    last_notification_type, last_reference_id)
WITH per_account AS (
    SELECT DISTINCT ON (interaction_id, account) interaction_id, account, id, state,
           received_at, payload->'data'->'openmedia'->'capabilities' AS capabilities
    FROM events ORDER BY interaction_id, account, id DESC
), acct AS (
    SELECT interaction_id, jsonb_object_agg(account, jsonb_build_object(
               'state', state, 'capabilities', capabilities, 'event_id', id, 'at', received_at))
               AS account_states
    FROM per_account GROUP BY interaction_id
), agg AS (
    SELECT interaction_id,
           (array_agg(media_type ORDER BY id DESC))[1] AS media_type,
           (array_agg(openmedia_type ORDER BY id DESC))[1] AS openmedia_type,
           (array_agg(payload->'data'->'openmedia'->'userData' ORDER BY id DESC))[1] AS user_data,
           max(id) AS user_data_event_id,
           array_agg(DISTINCT account ORDER BY account) AS accounts,
           min(received_at) AS first_seen_at, max(received_at) AS last_seen_at,
           min(id) AS first_event_id, max(id) AS last_event_id, count(*) AS event_count,
           (array_agg(notification_type ORDER BY id DESC))[1] AS last_notification_type,
           (array_agg(reference_id ORDER BY id DESC))[1] AS last_reference_id
    FROM events GROUP BY interaction_id
)
SELECT agg.interaction_id, media_type, openmedia_type, user_data, user_data_event_id,
       account_states, accounts, first_seen_at, last_seen_at, first_event_id, last_event_id,
       event_count, last_notification_type, last_reference_id
FROM agg JOIN acct USING (interaction_id)
"""


def _lines(total: int, block: int = 1000) -> Iterator[str]:
    """COPY text lines: blocks of `block` interactions whose 8 events interleave in time."""
    step = SPAN / total
    n = 0
    interaction = 0
    while n < total:
        size = min(block, (total - n) // EVENTS_PER_INTERACTION or 1)
        for j in range(EVENTS_PER_INTERACTION):
            for k in range(size):
                if n >= total:
                    return
                ident = interaction + k
                iid = f"om{ident:09d}"
                account = f"agent{ident % ACCOUNTS:03d}"
                if ident % 10 == 0 and j >= 5:  # a transfer: another agent finishes it
                    account = f"agent{(ident + 1) % ACCOUNTS:03d}"
                media = MEDIA[ident % len(MEDIA)]
                state = STATES[j]
                ntype = "NewInteraction" if j == 0 else "StatusChange"
                at = (START + step * n).isoformat()
                payload = json.dumps(
                    {
                        "channel": "/v2/me/openmedia",
                        "data": {
                            "messageType": "OpenmediaStateChangeMessage",
                            "notificationType": ntype,
                            "referenceId": n,
                            "openmedia": {
                                "id": iid,
                                "state": state,
                                "mediaType": media,
                                "openmediaType": "Inbound",
                                "capabilities": ["Complete", "Transfer"] if j else [],
                                "userData": {
                                    "Subject": f"Question about order {ident}",
                                    "CustomerId": f"C{ident % 99991:05d}",
                                    "Step": j,
                                },
                            },
                        },
                    },
                    separators=(",", ":"),
                )
                yield (
                    f"{uuid.UUID(int=n + 1)}\t{at}\tnotification\t{account}\t/v2/me/openmedia\t"
                    f"OpenmediaStateChangeMessage\t{ntype}\t{iid}\t{n}\t{media}\tInbound\t"
                    f"{state}\t{payload}\n"
                )
                n += 1
        interaction += size


LONG_ID = "omlong0000"
LONG_EVENTS = 200_000
LONG_ACCOUNTS = ("agent001", "agent002", "agent003")


def _long_lines(first: int, events: int = LONG_EVENTS) -> Iterator[str]:
    """One long-lived email item: ``events`` updates over the whole span by three agents,
    its userData growing a step at a time (issue 12: 200,000 events)."""
    step = SPAN / events
    for k in range(events):
        n = first + k
        at = (START + step * k).isoformat()
        account = LONG_ACCOUNTS[k % len(LONG_ACCOUNTS)]
        state = "Routing" if k == 0 else "Handling"
        payload = json.dumps(
            {
                "channel": "/v2/me/openmedia",
                "data": {
                    "messageType": "OpenmediaStateChangeMessage",
                    "notificationType": "PropertiesUpdated" if k else "NewInteraction",
                    "referenceId": n,
                    "openmedia": {
                        "id": LONG_ID,
                        "state": state,
                        "mediaType": "email",
                        "openmediaType": "Inbound",
                        "capabilities": ["Complete", "Transfer"],
                        "userData": {
                            "Subject": "A long-lived item",
                            "CustomerId": "CLONG",
                            "Step": k // 10,
                        },
                    },
                },
            },
            separators=(",", ":"),
        )
        yield (
            f"{uuid.UUID(int=n + 1)}\t{at}\tnotification\t{account}\t/v2/me/openmedia\t"
            f"OpenmediaStateChangeMessage\tPropertiesUpdated\t{LONG_ID}\t{n}\temail\tInbound\t"
            f"{state}\t{payload}\n"
        )


def _cover(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """Coverage: every account covered, with one gap of 5 minutes on day 3 for agent000.
    Closed intervals are in the record (never deleted), so each is inserted once."""
    have = conn.execute("SELECT count(*) FROM coverage_intervals").fetchone()
    if have and have[0] > 0:
        return
    gap_at = START + timedelta(days=3)
    conn.execute(
        "INSERT INTO coverage_intervals (account, worker_id, channels, started_at,"
        " heartbeat_at, ended_at, end_reason)"
        " SELECT 'agent' || lpad(a::text, 3, '0'), 'bench', ARRAY['/v2/me/openmedia'],"
        " %s, %s, %s, 'shutdown' FROM generate_series(1, %s) AS a",
        (START - timedelta(hours=1), START + SPAN, START + SPAN, ACCOUNTS - 1),
    )
    for lo, hi in (
        (START - timedelta(hours=1), gap_at),
        (gap_at + timedelta(minutes=5), START + SPAN),
    ):
        conn.execute(
            "INSERT INTO coverage_intervals (account, worker_id, channels, started_at,"
            " heartbeat_at, ended_at, end_reason) VALUES ('agent000', 'bench',"
            " ARRAY['/v2/me/openmedia'], %s, %s, %s, 'disconnected')",
            (lo, hi, hi),
        )


def load(url: URL, total: int) -> None:
    with psycopg.connect(libpq_conninfo(url), autocommit=True) as conn:
        have = conn.execute("SELECT count(*) FROM interactions").fetchone()
        if have and have[0] > 0:
            print(f"database already loaded ({have[0]:,} interactions)", flush=True)
            _cover(conn)
            return
        month = START.date()
        while month <= (START + SPAN).date():
            conn.execute("SELECT auditor_ensure_event_partition(%s)", (month,))
            month = (month.replace(day=1) + timedelta(days=32)).replace(day=1)
        t0 = time.perf_counter()
        with (
            conn.transaction(),
            conn.cursor() as cur,
            cur.copy(f"COPY events ({COLUMNS}) FROM STDIN") as copy,
        ):
            chunk: list[str] = []
            # The long item first: its ids are the lowest, so the newest-first searches
            # (a backward scan by id) do not walk through its 200,000 events.
            for line in itertools.chain(_long_lines(total), _lines(total)):
                chunk.append(line)
                if len(chunk) >= 5000:
                    copy.write("".join(chunk))
                    chunk.clear()
            if chunk:
                copy.write("".join(chunk))
        t1 = time.perf_counter()
        copied = total + LONG_EVENTS
        print(f"COPY {copied:,} events: {t1 - t0:.1f} s ({copied / (t1 - t0):,.0f}/s)", flush=True)
        conn.execute("SET work_mem = '256MB'")
        conn.execute(PROJECT)
        # What the writer keeps for user-data search, filled as the migration fills it.
        conn.execute(userdata_values.BACKFILL)
        # And where each referenceId's events are (the writer adds these rows too).
        conn.execute(event_references.BACKFILL)
        # As autovacuum would after a bulk load: statistics, and the visibility map that
        # index-only scans need.
        conn.execute("VACUUM (ANALYZE) events")
        conn.execute("VACUUM (ANALYZE) interactions")
        conn.execute("VACUUM (ANALYZE) user_data_values")
        conn.execute("VACUUM (ANALYZE) event_references")
        _cover(conn)
        print(f"projection, analyze, coverage: {time.perf_counter() - t1:.1f} s", flush=True)


class Client:
    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.headers = {"Authorization": f"Bearer {token}"}

    def get(self, path: str, **params: object) -> tuple[int, bytes, float, float]:
        """status, body, total ms, server ms."""
        target = path + ("?" + urlencode(params) if params else "")
        t0 = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        conn.request("GET", target, headers=self.headers)
        response = conn.getresponse()
        body = response.read()
        total = (time.perf_counter() - t0) * 1000
        conn.close()
        timing = response.getheader("Server-Timing", "app;dur=nan")
        server = float(timing.split("dur=")[1])
        if response.status != 200:
            raise SystemExit(f"{target}: {response.status} {body[:300]!r}")
        return response.status, body, total, server


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def report(name: str, totals: list[float], servers: list[float]) -> None:
    print(
        f"{name:<28} n={len(totals):<5} total p50 {_pct(totals, 0.5):7.2f} ms"
        f"  p99 {_pct(totals, 0.99):7.2f} ms   server p50 {_pct(servers, 0.5):7.2f} ms"
        f"  p99 {_pct(servers, 0.99):7.2f} ms",
        flush=True,
    )


def measure(
    name: str, client: Client, requests: list[tuple[str, dict[str, object]]]
) -> list[float]:
    """Prints the request's timings; returns the server times (ms)."""
    for path, params in requests[:20]:  # warm up
        client.get(path, **params)
    totals, servers = [], []
    for path, params in requests:
        _, _, total, server = client.get(path, **params)
        totals.append(total)
        servers.append(server)
    report(name, totals, servers)
    return servers


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _workers(master: int) -> list[int]:
    """gunicorn's worker processes: the children of its master."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master:
            found.append(int(stat.parent.name))
    return found


def long_timeline(client: Client, master: int, samples: int) -> None:
    """Issue 12: the first page of a 200,000-event interaction, a deep page, every page in
    turn, and the workers' memory before and after."""
    path = f"/api/v1/interactions/{LONG_ID}/timeline"
    before = {pid: _rss_kb(pid) for pid in _workers(master)}
    measure(f"timeline {LONG_EVENTS:,} events, page 1", client, [(path, {})] * samples)
    cursor = None
    for _ in range(99):
        query = {"limit": 200, **({"cursor": cursor} if cursor else {})}
        cursor = json.loads(client.get(path, **query)[1])["next_cursor"]
    measure("  page 100 (cursor)", client, [(path, {"limit": 200, "cursor": cursor})] * samples)
    t0 = time.perf_counter()
    pages = events = 0
    body_max = 0
    cursor = None
    while True:
        query = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        _, body, _, _ = client.get(path, **query)
        page = json.loads(body)
        pages += 1
        events += len(page["events"])
        body_max = max(body_max, len(body))
        cursor = page["next_cursor"]
        if cursor is None:
            break
    elapsed = time.perf_counter() - t0
    after = {pid: _rss_kb(pid) for pid in _workers(master)}
    print(
        f"  every page (limit 1000): {events:,} events in {pages} pages, {elapsed:.1f} s, "
        f"largest body {body_max / 1e6:.2f} MB",
        flush=True,
    )
    for pid in sorted(before):
        print(
            f"  worker {pid} RSS before {before[pid] / 1024:.0f} MB, after "
            f"{after.get(pid, 0) / 1024:.0f} MB",
            flush=True,
        )


def user_data_searches(client: Client, rng: random.Random, samples: int, count: int) -> None:
    """Issue 12: exact user-data matches returning one page (about 6 interactions and 50
    events per CustomerId), ever=true, a prefix with a narrowing filter, and as_of."""
    customers = [f"C{rng.randrange(min(count, 99991)):05d}" for _ in range(samples)]
    interactions = measure(
        "userData exact, interactions",
        client,
        [("/api/v1/interactions", {"userData.CustomerId": c}) for c in customers],
    )
    events = measure(
        "userData exact, events",
        client,
        [("/api/v1/events", {"userData.CustomerId": c}) for c in customers],
    )
    measure(
        "userData exact x2, events",
        client,
        [("/api/v1/events", {"userData.CustomerId": c, "userData.Step": "7"}) for c in customers],
    )
    measure(
        "userData ever=true, interactions",
        client,
        [("/api/v1/interactions", {"userData.CustomerId": c, "ever": "true"}) for c in customers],
    )
    # A value held by one interaction of 200,000 events: each candidate read newest first to
    # the page (a bitmap over all its events took 0.54 s warm).
    measure(
        "userData exact, the 200,000-event item, events",
        client,
        [("/api/v1/events", {"userData.CustomerId": "CLONG"})] * min(samples, 50),
    )
    as_of = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    measure(
        "userData exact + as_of, events",
        client,
        [("/api/v1/events", {"userData.CustomerId": c, "as_of": as_of}) for c in customers],
    )
    print(
        f"issue 12 target, exact user-data match returning one page (server p99, <= 20 ms):"
        f" events {_pct(events, 0.99):.1f} ms, interactions {_pct(interactions, 0.99):.1f} ms",
        flush=True,
    )


def run(
    url: URL, total: int, samples: int, export: bool = True, user_data_only: bool = False
) -> None:
    load(url, total)
    with psycopg.connect(libpq_conninfo(url), autocommit=True) as conn:
        conn.execute("DELETE FROM api_tokens WHERE name = 'bench'")
        token = tokens.create(conn, "bench", "admin")
        interactions = conn.execute("SELECT count(*) FROM interactions").fetchone()
        # The API runs as deployed: its own login in auditor_api, not the owner.
        api_password = secrets.token_urlsafe(24)
        grant_login(conn, "api", "bench_api", api_password)
    count = interactions[0] if interactions else 0
    api_url = url.set(username="bench_api", password=api_password)
    with serve(api_url, None, workers=2) as server:
        client = Client(server.port, token)
        rng = random.Random(7)
        ids = [f"om{rng.randrange(count):09d}" for _ in range(samples)]
        print(
            f"\n{total:,} events, {count:,} interactions; HTTP to gunicorn (2 sync workers) "
            "on 127.0.0.1, new connection per request",
            flush=True,
        )
        if user_data_only:
            user_data_searches(client, rng, samples, count)
            return
        timelines = [(f"/api/v1/interactions/{i}/timeline", {}) for i in ids]
        measure("timeline", client, timelines)
        measure("timeline (same again, warm)", client, timelines)
        long_timeline(client, server.process.pid, samples)
        measure("projection lookup", client, [(f"/api/v1/interactions/{i}", {}) for i in ids])
        refs = [rng.randrange(total) for _ in range(samples)]
        measure("by-referenceId lookup", client, [("/api/v1/events", {"referenceId": r})
                                                  for r in refs])  # fmt: skip
        days = [START + timedelta(days=rng.randrange(29)) for _ in range(samples)]
        searches = [
            (
                "/api/v1/events",
                {
                    "account": f"agent{rng.randrange(ACCOUNTS):03d}",
                    "from": d.isoformat(),
                    "to": (d + timedelta(days=1)).isoformat(),
                    "limit": 100,
                },
            )
            for d in days
        ]
        measure("search page 1 (account+day)", client, searches)
        measure("  (same again, warm)", client, searches)
        page10 = []
        accounts = [("/api/v1/events", {"account": f"agent{a:03d}", "limit": 100})
                    for a in range(ACCOUNTS)]  # fmt: skip
        measure("search page 1 (account)", client, (accounts * samples)[:samples])
        for path, params in accounts[:20]:
            cursor = None
            for _ in range(9):
                query = dict(params, **({"cursor": cursor} if cursor else {}))
                cursor = json.loads(client.get(path, **query)[1])["next_cursor"]
            page10.append((path, dict(params, cursor=cursor)))
        measure("search page 10 (account)", client, (page10 * 5)[:samples])
        media = [
            ("/api/v1/events", {"mediaType": rng.choice(MEDIA), "state": "Handling"})
            for _ in range(samples)
        ]
        measure("search page 1 (media+state)", client, media)
        measure(
            "interactions search page 1",
            client,
            [("/api/v1/interactions", {"state": "Completed", "mediaType": m})
             for m in (MEDIA * samples)[:samples]],
        )  # fmt: skip
        user_data_searches(client, rng, samples, count)
        if not export:
            return
        t0 = time.perf_counter()
        _, body, _, _ = client.get("/api/v1/events/export", format="ndjson")
        elapsed = time.perf_counter() - t0
        rows = json.loads(body.rstrip(b"\n").rsplit(b"\n", 1)[1])["_summary"]["rows"]
        print(f"export ndjson: {rows:,} rows, {len(body) / 1e6:,.0f} MB in {elapsed:.1f} s = "
              f"{rows / elapsed:,.0f} rows/s", flush=True)  # fmt: skip
        t0 = time.perf_counter()
        _, body, _, _ = client.get("/api/v1/events/export", format="csv")
        elapsed = time.perf_counter() - t0
        rows = body.count(b"\n") - 2
        print(f"export csv:    {rows:,} rows, {len(body) / 1e6:,.0f} MB in {elapsed:.1f} s = "
              f"{rows / elapsed:,.0f} rows/s", flush=True)  # fmt: skip


def kept_database(server: EmbeddedPostgres, name: str) -> URL:
    """The database ``name`` on ``server``, made if missing (a bench database is kept between
    runs: loading it takes long), upgraded to the current schema; its URL."""
    admin = parse_database_url(server.url("postgres"))
    with psycopg.connect(libpq_conninfo(admin), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    url = admin.set(database=name)
    with sa_connection(url) as connection:
        schema.upgrade(connection)
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/auditor-bench-api"))
    parser.add_argument("--no-export", action="store_true", help="skip the export timings")
    parser.add_argument(
        "--only-user-data", action="store_true", help="only the user-data searches (issue 12)"
    )
    args = parser.parse_args()
    database = f"bench_api_{args.events}"
    if os.environ.get("AUDITOR_DATABASE_URL"):
        url = parse_database_url(os.environ["AUDITOR_DATABASE_URL"])
        run(url, args.events, args.samples, not args.no_export, args.only_user_data)
        return
    server = EmbeddedPostgres(args.data_dir).start()
    try:
        url = kept_database(server, database)
        run(url, args.events, args.samples, not args.no_export, args.only_user_data)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
