"""bench/year.py's loading: bench/api.py's events spread over monthly partitions, stored by
the batch writer or, row for row the same, by SQL (bench/year_sql.py); and the check that the
two store the same rows (`bench/year.py --check-shape`)."""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import psycopg
import year_sql
from api import ACCOUNTS, EVENTS_PER_INTERACTION, MEDIA, STATES
from sqlalchemy.engine import URL

from auditor.config import libpq_conninfo
from auditor.db import sa_connection
from auditor.retention.settings import months_before
from auditor.store import schema
from auditor.store.receipts import Receipt
from auditor.store.writer import store_batch

START = datetime(2024, 12, 1, tzinfo=UTC)
BLOCK = 1000  # interactions whose events interleave in time
BATCH = year_sql.BATCH
CHUNK = 500_000  # the writer loader's events between two disk checks
SQL_CHUNK = 200_000  # the SQL loader's events per transaction (and between disk checks)
CHANNEL = "/v2/me/openmedia"


def _end(months: int) -> datetime:
    return months_before(START, -months)


def span_us(months: int) -> int:
    return (_end(months) - START) // timedelta(microseconds=1)


def receipt(n: int, per_pass: int, months: int) -> Receipt:
    """Event number n: pass n // per_pass, spread evenly over the months; within a pass,
    blocks of BLOCK interactions whose 8 events interleave (bench/api.py's shape)."""
    run, k = divmod(n, per_pass)
    block, r = divmod(k, BLOCK * EVENTS_PER_INTERACTION)
    step, i = divmod(r, BLOCK)
    ident = run * (per_pass // EVENTS_PER_INTERACTION) + block * BLOCK + i
    at = START + timedelta(microseconds=span_us(months) * k // per_pass + run)
    iid = f"om{ident:09d}"
    account = f"agent{ident % ACCOUNTS:03d}"
    if ident % 10 == 0 and step >= 5:  # a transfer: another agent finishes it
        account = f"agent{(ident + 1) % ACCOUNTS:03d}"
    message = {
        "channel": CHANNEL,
        "data": {
            "messageType": "OpenmediaStateChangeMessage",
            "notificationType": "NewInteraction" if step == 0 else "StatusChange",
            "referenceId": n,
            "openmedia": {
                "id": iid,
                "state": STATES[step],
                "mediaType": MEDIA[ident % len(MEDIA)],
                "openmediaType": "Inbound",
                "capabilities": ["Complete", "Transfer"] if step else [],
                "userData": {
                    "Subject": f"Question about order {ident}",
                    "CustomerId": f"C{ident % 99991:05d}",
                    "Step": step,
                },
            },
        },
    }
    return Receipt(uuid.UUID(int=n + 1), at, account, CHANNEL, orjson.dumps(message).decode())


def ensure_partitions(conn: psycopg.Connection[tuple[object, ...]], months: int) -> None:
    """The monthly partitions, as the writer makes them when a batch first reaches a month
    (the SQL loader does not go through that code)."""
    for month in range(months):
        conn.execute("SELECT auditor_ensure_event_partition(%s)",
                     (months_before(START, -month).date(),))  # fmt: skip
    conn.commit()


def stored(dsn: str) -> int:
    """Events stored so far: what the record's head covers (nothing but events is appended
    while loading)."""
    with psycopg.connect(dsn) as conn:
        return year_sql.covered(conn)


def free_gb(path: Path) -> float:
    return shutil.disk_usage(path).free / 1e9


def _when(n0: int, n1: int, per_pass: int, months: int) -> tuple[datetime, datetime]:
    """The first and last receipt times of events n0..n1-1 (times grow within a pass: the
    ends of the range and of each pass it crosses)."""
    ends = {n0, n1 - 1}
    for cut in range((n0 // per_pass + 1) * per_pass, n1, per_pass):
        ends |= {cut - 1, cut}
    when = [receipt(i, per_pass, months).received_at for i in ends]
    return min(when), max(when)


def _stop(n: int, chunk: int, data_dir: Path, min_free_gb: float, until: datetime | None
          ) -> str | None:  # fmt: skip
    """Why loading must stop before the next ``chunk`` events, if it must."""
    free = free_gb(data_dir)
    needed = chunk * 2.5e3 / 1e9  # about 2 KB per event, with room for WAL
    if free - needed < min_free_gb:
        return (f"{free:.1f} GB free, the next {chunk:,} events need about {needed:.1f} GB"
                f" and {min_free_gb} GB must stay free")  # fmt: skip
    if (until is not None and datetime.now(UTC) >= until) or (data_dir / "STOP").exists():
        return f"time is up (--until or {data_dir}/STOP)"
    return None


def load_to(dsn: str, target: int, per_pass: int, months: int, data_dir: Path,
            min_free_gb: float, loader: str = "sql", until: datetime | None = None,
            sessions: int = 3) -> int:  # fmt: skip
    """Store events until ``target`` (resuming where the record's head is); stop early when
    the next chunk would bring the free disk under ``min_free_gb``, or after ``until``, or
    when the file STOP exists in ``data_dir``. Returns the count."""
    n = stored(dsn)
    if n >= target:
        return n
    began, first = time.perf_counter(), n
    shown = [n]

    def progress(done: int) -> None:
        if done - shown[0] < 1_000_000 and done < target:
            return
        shown[0] = done
        rate = (done - first) / (time.perf_counter() - began)
        print(f"  {done:>12,} events  {rate:>7,.0f}/s  {free_gb(data_dir):6.1f} GB free"
              f"  load {os.getloadavg()[0]:.1f}  {time.strftime('%H:%M:%S')}",
              flush=True)  # fmt: skip

    def stop(at: int, chunk: int) -> bool:
        reason = _stop(at, chunk, data_dir, min_free_gb, until)
        if reason:
            print(f"STOP loading at {at:,} events: {reason}", flush=True)
        return reason is not None

    with psycopg.connect(dsn) as conn:
        ensure_partitions(conn, months)
        if loader == "sql":
            row = conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()
            if row is None or row[0] != n:
                raise SystemExit(f"the SQL loader numbers events from the record's head ({n:,})"
                                 f" but the events go to id {row and row[0]:,}: load an empty"
                                 " database (delete the data directory)")  # fmt: skip
            conn.commit()
            n = _load_sql(dsn, n, target, per_pass, months, sessions, stop, progress)
            # The writer's ids go on after the loaded ones (retention, a writer run later).
            conn.execute("SELECT setval(pg_get_serial_sequence('events', 'id'), %s)",
                         (max(n, 1),))  # fmt: skip
            conn.commit()
            return n
        while n < target and not stop(n, min(CHUNK, target - n)):
            end = min(n + CHUNK, target)
            while n < end:
                n = store(conn, n, min(n + BATCH, end), per_pass, months, loader)
                if n - first == BATCH:
                    _analyze(conn)
            progress(n)
    return n


def _analyze(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """Statistics as autovacuum keeps them (it lags a bulk load, and the SQL fold is planned
    from them: a partition never analyzed makes every join a nested loop)."""
    conn.execute("ANALYZE events, interactions, user_data_values, record, event_references")
    conn.commit()


def _chunk(dsn: str, n0: int, n1: int, per_pass: int, months: int, after: int | None,
           started: Callable[[], None]) -> int:  # fmt: skip
    with psycopg.connect(dsn) as conn:
        # Bench-only: the load need not wait for its WAL to reach the disk (nothing the
        # measurement reads depends on it).
        conn.execute("SET synchronous_commit = off")
        conn.commit()
        return year_sql.store_chunk(conn, n0, n1, per_pass, START, span_us(months),
                                    _when(n0, n1, per_pass, months), after, started)  # fmt: skip


def _load_sql(dsn: str, n: int, target: int, per_pass: int, months: int, sessions: int,
              stop: Callable[[int, int], bool], progress: Callable[[int], None],
              chunk: int = SQL_CHUNK) -> int:  # fmt: skip
    """Chunks of ``chunk`` events, up to ``sessions`` at once (year_sql.store_chunk keeps
    their commits in order). Returns the events stored."""
    inflight: deque[Future[int]] = deque()
    done, after, analyzed = n, None, False
    errors: list[BaseException] = []

    def collect() -> None:
        nonlocal done
        try:
            done = inflight.popleft().result()
            progress(done)
        except Exception as exc:  # the chunks after it fail too (the record's head check)
            errors.append(exc)

    with ThreadPoolExecutor(sessions) as pool:
        try:
            while n < target and not errors:
                if inflight and (len(inflight) >= sessions or not analyzed):
                    collect()
                    if not analyzed and not errors:  # the first chunk alone, then statistics
                        with psycopg.connect(dsn) as conn:
                            _analyze(conn)
                        analyzed = True
                    continue
                if errors or stop(n, min(chunk, target - n)):
                    break
                m = min(n + chunk, target)
                started = threading.Event()
                future = pool.submit(_chunk, dsn, n, m, per_pass, months, after, started.set)
                while not started.wait(0.1) and not future.done():
                    pass
                inflight.append(future)
                after, n = n, m
        finally:
            while inflight:
                collect()
    if errors:
        raise errors[0]
    return done


def store(conn: psycopg.Connection[tuple[object, ...]], n0: int, n1: int, per_pass: int,
          months: int, loader: str) -> int:  # fmt: skip
    """Events n0..n1-1, committed as one batch of the writer, or as the rows it would store
    (bench/year_sql.py). Returns n1."""
    if loader != "writer":
        return year_sql.store_chunk(conn, n0, n1, per_pass, START, span_us(months),
                                    _when(n0, n1, per_pass, months), None)  # fmt: skip
    with conn.transaction():
        result = store_batch(conn, [receipt(i, per_pass, months) for i in range(n0, n1)])
    count = result.stored + result.duplicates
    if count != n1 - n0:
        raise SystemExit(f"batch {n0}..{n1}: {count} events stored")
    return n1


_SHAPES = {
    "partitions": "SELECT tableoid::regclass::text, count(*) FROM events GROUP BY 1 ORDER BY 1",
    "events": "SELECT id, receipt_id, received_at, kind, account, channel, message_type,"
    " notification_type, interaction_id, reference_id, media_type, openmedia_type, state,"
    " error_code, error_message, payload FROM events ORDER BY id",
    # The two seal batches of different sizes (the writer's 5,000 events, the loader's
    # chunks), so the record is compared by what it covers: every event once, in id order,
    # no batch across a month, hashes of the real length.
    "record": "SELECT source, format, sum(coalesce(leaf_count, 1)), min(source_id),"
    " max(source_id + coalesce(leaf_count, 1) - 1), bool_and(octet_length(leaf_hash) = 32"
    " AND octet_length(chain_hash) = 32) FROM record GROUP BY 1, 2",
    "record gaps": "SELECT count(*) FROM record AS a JOIN record AS b ON b.position = a.position"
    " + 1 WHERE b.source_id <> a.source_id + coalesce(a.leaf_count, 1)",
    "record months": "SELECT count(*) FROM record AS b JOIN events AS f ON f.id = b.source_id"
    " JOIN events AS l ON l.id = b.source_id + b.leaf_count - 1"
    " WHERE date_trunc('month', f.received_at AT TIME ZONE 'UTC')"
    " <> date_trunc('month', l.received_at AT TIME ZONE 'UTC')",
    "user_data_values": "SELECT interaction_id, event_id, changed FROM user_data_values"
    " ORDER BY event_id",
    "event_references": "SELECT event_id, received_at, reference_id FROM event_references"
    " ORDER BY event_id",
    "interactions": "SELECT to_jsonb(i) - 'accounts', ARRAY(SELECT unnest(accounts) ORDER BY 1)"
    " FROM interactions AS i ORDER BY interaction_id",
}


def check_shape(admin: URL, months: int) -> bool:
    """The same 24,000 events (three passes of 8,000) stored by the batch writer (batches of
    5,000) and by the SQL loader (three sessions at once: chunks of 8,000, then of 3,000)
    into two scratch databases: every row compared (the record by what it covers)."""
    rows: dict[str, dict[str, list[tuple[object, ...]]]] = {}
    for loader in ("writer", "sql"):
        name = f"bench_year_shape_{loader}"
        with psycopg.connect(libpq_conninfo(admin), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        with sa_connection(admin.set(database=name)) as connection:
            schema.upgrade(connection)
        dsn = libpq_conninfo(admin.set(database=name))
        with psycopg.connect(dsn) as conn:
            ensure_partitions(conn, months)
            if loader == "writer":
                for n in range(0, 24_000, BATCH):
                    store(conn, n, min(n + BATCH, 24_000), 8_000, months, loader)
            else:  # as it loads, parallel sessions: chunks of whole blocks (each folds
                # its own interactions), then chunks that cut interactions (folded in order)
                for n0, n1, chunk in ((0, 16_000, 8_000), (16_000, 24_000, 3_000)):
                    _load_sql(dsn, n0, n1, 8_000, months, 3, lambda *_: False, lambda _: None,
                              chunk)  # fmt: skip
            rows[loader] = {t: conn.execute(q).fetchall() for t, q in _SHAPES.items()}
        with psycopg.connect(libpq_conninfo(admin), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}"')
    same = True
    for table in _SHAPES:
        ours, theirs = rows["sql"][table], rows["writer"][table]
        differing = [(a, b) for a, b in zip(ours, theirs, strict=False) if a != b]
        print(f"shape {table}: writer {len(theirs):,} rows, SQL loader {len(ours):,} rows,"
              f" {len(differing)} differ", flush=True)  # fmt: skip
        for a, b in differing[:3]:
            print(f"  writer {b}\n  sql    {a}")
        same = same and not differing and len(ours) == len(theirs)
    return same
