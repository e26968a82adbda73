"""End to end on loopback: simulator → worker → PostgreSQL (embedded), against the simulator's
ground truth. Prints one table:

* sustained notifications/s with 100 agents (simulator offered rate; stored/s over the run
  and the catch-up), lost and duplicated counts, worker peak RSS;
* receipt → committed latency p50/p99 at 1,000/s (worker in-process: the drain's commit hook
  records, per receipt, commit time - received_at);
* worker RSS with 1,000 sessions;
* worker RSS while draining a 1,000,000-row spool backlog (filled directly), and its drain rate.

    python bench/e2e.py [--rate 12000] [--seconds 15] [--sessions 1000] [--backlog 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import URL

from auditor.config import libpq_conninfo, parse_database_url
from auditor.ingest import config as worker_config
from auditor.ingest.drain import BatchReport
from auditor.ingest.spool import Row, Spool
from auditor.ingest.worker import Worker
from auditor.pgserver import EmbeddedPostgres
from auditor.store import schema
from auditor.store.receipts import new_receipt_id

AUDITOR = str(Path(sys.executable).parent / "auditor")
PASSWORD = "secret"  # noqa: S105  (the simulator's documented default)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (the worker and its drain process)."""
    total = 0.0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) / 1024
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                total += _rss_mb(int(child))
    except FileNotFoundError:
        pass
    return total


def _control(url: str, action: str) -> None:
    request = urllib.request.Request(f"{url}/sim/{action}", data=b"{}", method="POST")  # noqa: S310
    urllib.request.urlopen(request, timeout=30).close()  # noqa: S310


def _canon(message: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in message.items() if k != "id"}, sort_keys=True)


class Bench:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.pg = EmbeddedPostgres(work / "pg", durable=False).start()
        self.procs: list[subprocess.Popen[bytes]] = []
        self.db_index = 0

    def fresh_db(self) -> URL:
        self.db_index += 1
        name = f"e2e_{self.db_index}"
        admin = libpq_conninfo(parse_database_url(self.pg.url("postgres")))
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
        url = parse_database_url(self.pg.url(name))
        engine = create_engine(url, poolclass=pool.NullPool)
        with engine.begin() as conn:
            schema.upgrade(conn)
        engine.dispose()
        return url

    def simulator(
        self, agents: int, rate: float, truth: Path | None = None, timeout_ms: int = 2000
    ) -> str:
        port = _port()
        args = [
            AUDITOR,
            "simulate",
            "--port",
            str(port),
            "--agents",
            str(agents),
            "--rate",
            str(rate),
            "--error-rate",
            "0",
            "--timeout-ms",
            str(timeout_ms),
        ]
        if truth is not None:
            args += ["--ground-truth", str(truth)]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                _control(url, "pause")
                return url
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("simulator did not start")

    def config(self, name: str, sim_url: str, agents: int, **worker: Any) -> Path:
        path = self.work / f"{name}.toml"
        lines = [
            "[gws]",
            f'base_url = "{sim_url}"',
            "[worker]",
            f'spool = "{self.work / (name + ".spool")}"',
            "heartbeat_interval = 1.0",
        ]
        lines += [f"{k} = {json.dumps(v)}" for k, v in worker.items()]
        width = max(3, len(str(agents)))
        for i in range(1, agents + 1):
            lines += ["[[accounts]]", f'name = "agent{i:0{width}d}"', 'password_env = "GWS_PW"']
        path.write_text("\n".join(lines) + "\n")
        return path

    def worker(self, config: Path, db: URL) -> subprocess.Popen[bytes]:
        env = dict(os.environ, AUDITOR_DATABASE_URL=db.render_as_string(hide_password=False))
        env["GWS_PW"] = PASSWORD
        with (self.work / (config.stem + ".log")).open("ab") as log:
            proc = subprocess.Popen(
                [AUDITOR, "ingest", "--config", str(config)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.pg.stop()


def _scalar(db: URL, sql: str) -> int:
    with psycopg.connect(libpq_conninfo(db)) as conn:
        row = conn.execute(sql).fetchone()  # type: ignore[arg-type]
        return int(row[0]) if row and row[0] is not None else 0


def _wait_subscribed(db: URL, agents: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    sql = "SELECT count(DISTINCT account) FROM coverage_intervals WHERE ended_at IS NULL"
    while _scalar(db, sql) < agents:
        if time.monotonic() > deadline:
            raise RuntimeError("sessions did not subscribe")
        time.sleep(0.5)


def _notifications(db: URL) -> int:
    return _scalar(db, "SELECT count(*) FROM events WHERE kind = 'notification'")


def throughput(bench: Bench, rate: int, seconds: float, **settings: Any) -> dict[str, str]:
    db = bench.fresh_db()
    truth = bench.work / "truth.ndjson"
    sim = bench.simulator(100, rate, truth)
    worker = bench.worker(bench.config("tp", sim, 100, **settings), db)
    _wait_subscribed(db, 100)
    rss = _rss_mb(worker.pid)
    _control(sim, "resume")
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        time.sleep(0.5)
        rss = max(rss, _rss_mb(worker.pid))
    _control(sim, "pause")
    in_window = _notifications(db)
    last, stable = -1, 0
    while stable < 4:
        count = _notifications(db)
        stable = stable + 1 if count == last else 0
        last = count
        rss = max(rss, _rss_mb(worker.pid))
        time.sleep(0.5)
    elapsed = time.monotonic() - started - 2.0  # the stability wait
    worker.send_signal(signal.SIGTERM)
    worker.wait(60)
    bench.procs[-2].send_signal(signal.SIGTERM)
    bench.procs[-2].wait(30)
    lines = [json.loads(x) for x in truth.read_text().splitlines() if x]
    want = Counter((t["agent"], _canon(t["message"])) for t in lines if t["status"] == "delivered")
    maybe = Counter(
        (t["agent"], _canon(t["message"]))
        for t in lines
        if t["status"] == "undeliverable" and t["reason"] == "session lost before ack"
    )
    with psycopg.connect(libpq_conninfo(db)) as conn:
        rows = conn.execute(
            "SELECT account, payload FROM events WHERE kind = 'notification'"
        ).fetchall()
    have = Counter((a, _canon(p)) for a, p in rows)
    lost = sum((want - have).values())
    # The simulator may send identical messages; a duplicate is a copy beyond the truth's.
    dup = sum(n - want[k] for k, n in have.items() if k in want and n > want[k])
    unexpected = sum((have - want - maybe).values())
    generated = len({(t["seq"]) for t in lines})
    return {
        "offered (simulator, 100 agents)": f"{rate:,}/s for {seconds:.0f} s ({generated:,})",
        "stored during the window": f"{in_window / seconds:,.0f}/s",
        "sustained incl. catch-up": f"{last:,} in {elapsed:.1f} s = {last / elapsed:,.0f}/s",
        "delivered (acked) / stored": f"{sum(want.values()):,} / {sum(have.values()):,}",
        "lost (delivered, not stored)": str(lost),
        "duplicated": str(dup),
        "stored but not in truth": str(unexpected),
        "worker peak RSS, 100 sessions": f"{rss:.0f} MB",
    }


def latency(bench: Bench, seconds: float) -> dict[str, str]:
    db = bench.fresh_db()
    sim = bench.simulator(100, 1000)
    config = worker_config.load(
        str(bench.config("lat", sim, 100)),
        {"GWS_PW": PASSWORD, "AUDITOR_DATABASE_URL": db.render_as_string(hide_password=False)},
    )
    samples: list[float] = []
    recording = threading.Event()

    def on_commit(report: BatchReport) -> None:
        if recording.is_set():
            samples.extend(report.committed - at for at in report.received_at)

    async def run() -> None:
        worker = Worker(config, on_commit)
        task = asyncio.create_task(worker.run())
        await asyncio.to_thread(_wait_subscribed, db, 100)
        await asyncio.to_thread(_control, sim, "resume")
        await asyncio.sleep(2)
        recording.set()
        await asyncio.sleep(seconds)
        recording.clear()
        worker.stop.set()
        await task
        if worker.watchdog is not None:
            worker.watchdog.cancel()

    asyncio.run(run())
    samples.sort()
    q = statistics.quantiles(samples, n=100)
    value = f"p50 {q[49] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms ({len(samples):,} receipts)"
    return {"latency at 1,000/s (receipt -> committed)": value}


def many_sessions(bench: Bench, sessions: int) -> dict[str, str]:
    db = bench.fresh_db()
    sim = bench.simulator(sessions, 100)
    worker = bench.worker(bench.config("many", sim, sessions), db)
    started = time.monotonic()
    _wait_subscribed(db, sessions, timeout=600)
    took = time.monotonic() - started
    _control(sim, "resume")
    rss = 0.0
    for _ in range(10):
        rss = max(rss, _rss_mb(worker.pid))
        time.sleep(0.5)
    worker.send_signal(signal.SIGTERM)
    worker.wait(120)
    return {f"worker RSS, {sessions:,} sessions": f"{rss:.0f} MB (all subscribed in {took:.0f} s)"}


def backlog(bench: Bench, rows: int) -> dict[str, str]:
    db = bench.fresh_db()
    sim = bench.simulator(1, 0)
    config = bench.config("backlog", sim, 1, batch_size=5000)
    sample = (
        '{"channel":"/v2/me/openmedia","data":{"messageType":"OpenmediaStateChangeMessage",'
        '"notificationType":"StatusChange","referenceId":%d,"openmedia":{"id":"BACKLOG%09d",'
        '"state":"Processing","mediaType":"workitem","userData":{"k":"v"}}}}'
    )
    spool = Spool(bench.work / "backlog.spool", "NORMAL")
    now = datetime.now(UTC).isoformat(timespec="microseconds")
    for start in range(0, rows, 50_000):
        spool.put_many(
            [
                Row(
                    str(new_receipt_id()),
                    now,
                    "agent001",
                    "/v2/me/openmedia",
                    "notification",
                    sample % (i, i % 1000),
                )
                for i in range(start, min(rows, start + 50_000))
            ]
        )
    spool.close()
    worker = bench.worker(config, db)
    started = time.monotonic()
    rss = 0.0
    while _scalar(db, "SELECT count(*) FROM events") < rows:
        rss = max(rss, _rss_mb(worker.pid))
        time.sleep(0.5)
        if time.monotonic() - started > 900:
            break
    took = time.monotonic() - started
    done = _scalar(db, "SELECT count(*) FROM events")
    worker.send_signal(signal.SIGTERM)
    worker.wait(120)
    return {
        f"worker RSS draining a {rows:,}-row spool": f"{rss:.0f} MB peak",
        "backlog drain rate": f"{done:,} rows in {took:.0f} s = {done / took:,.0f}/s",
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=int, default=12000)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--backlog", type=int, default=1_000_000)
    parser.add_argument("--only", default="throughput,latency,sessions,backlog")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="auditor-e2e-"))
    bench = Bench(work)
    results: dict[str, str] = {}
    try:
        only = args.only.split(",")
        if "throughput" in only:
            results |= throughput(bench, args.rate, args.seconds)
        if "latency" in only:
            results |= latency(bench, args.seconds)
        if "sessions" in only:
            results |= many_sessions(bench, args.sessions)
        if "backlog" in only:
            results |= backlog(bench, args.backlog)
    finally:
        bench.close()
        shutil.rmtree(work, ignore_errors=True)
    width = max(len(k) for k in results)
    print(f"| {'measure':<{width}} | value |\n|{'-' * (width + 2)}|---|")
    for key, value in results.items():
        print(f"| {key:<{width}} | {value} |")


if __name__ == "__main__":
    main()
