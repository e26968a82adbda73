"""simulator → worker → PostgreSQL on loopback, 100 agents: sustained notifications/s,
lost and duplicated counts against the ground truth, worker peak RSS.

Partial (see docs/worker.md): receipt→committed latency at 1,000/s, RSS with 1,000 sessions
and with a 1,000,000-row spool backlog are not measured yet.

    python bench/e2e.py [--agents 100] [--rate 12000] [--seconds 15]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

import psycopg
from sqlalchemy import create_engine, pool

from auditor.config import libpq_conninfo, parse_database_url
from auditor.pgserver import EmbeddedPostgres
from auditor.store import schema

AUDITOR = str(Path(sys.executable).parent / "auditor")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _control(url: str, action: str) -> None:
    request = urllib.request.Request(f"{url}/sim/{action}", data=b"{}", method="POST")  # noqa: S310
    urllib.request.urlopen(request, timeout=10).close()  # noqa: S310


def _canon(message: dict[str, object]) -> str:
    return json.dumps({k: v for k, v in message.items() if k != "id"}, sort_keys=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--rate", type=int, default=12000)
    parser.add_argument("--seconds", type=float, default=15)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="auditor-e2e-"))
    pg = EmbeddedPostgres(work / "pg", durable=False).start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        url = parse_database_url(pg.url("postgres"))
        engine = create_engine(url, poolclass=pool.NullPool)
        with engine.begin() as conn:
            schema.upgrade(conn)
        engine.dispose()
        port = _port()
        sim_url = f"http://127.0.0.1:{port}"
        truth = work / "truth.ndjson"
        procs.append(
            subprocess.Popen(
                [
                    AUDITOR,
                    "simulate",
                    "--port",
                    str(port),
                    "--agents",
                    str(args.agents),
                    "--rate",
                    str(args.rate),
                    "--error-rate",
                    "0",
                    "--timeout-ms",
                    "2000",
                    "--ground-truth",
                    str(truth),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        time.sleep(1.5)
        _control(sim_url, "pause")
        config = work / "worker.toml"
        lines = [
            "[gws]",
            f'base_url = "{sim_url}"',
            "[worker]",
            f'spool = "{work / "spool"}"',
            "heartbeat_interval = 1.0",
        ]
        for i in range(1, args.agents + 1):
            lines += ["[[accounts]]", f'name = "agent{i:03d}"', 'password_env = "GWS_PASSWORD"']
        config.write_text("\n".join(lines) + "\n")
        env = dict(os.environ, AUDITOR_DATABASE_URL=url.render_as_string(hide_password=False))
        env["GWS_PASSWORD"] = "secret"  # noqa: S105  (the simulator's documented default)
        with (work / "w.log").open("wb") as log:
            worker = subprocess.Popen(
                [AUDITOR, "ingest", "--config", str(config)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        procs.append(worker)
        conninfo = libpq_conninfo(url)

        def scalar(sql: str) -> int:
            with psycopg.connect(conninfo) as conn:
                row = conn.execute(sql).fetchone()  # type: ignore[arg-type]
                return int(row[0]) if row else 0

        deadline = time.monotonic() + 120
        while (
            scalar("SELECT count(DISTINCT account) FROM coverage_intervals WHERE ended_at IS NULL")
            < args.agents
            and time.monotonic() < deadline
        ):
            time.sleep(0.5)
        time.sleep(1)
        base = scalar("SELECT count(*) FROM events WHERE kind = 'notification'")
        rss = _rss_mb(worker.pid)
        _control(sim_url, "resume")
        started = time.monotonic()
        while time.monotonic() - started < args.seconds:
            time.sleep(0.5)
            rss = max(rss, _rss_mb(worker.pid))
        _control(sim_url, "pause")
        stored_at_end = scalar("SELECT count(*) FROM events WHERE kind = 'notification'") - base
        time.sleep(3)
        last, stable = -1, 0
        while stable < 3:
            now_count = scalar("SELECT count(*) FROM events WHERE kind = 'notification'")
            stable = stable + 1 if now_count == last else 0
            last = now_count
            rss = max(rss, _rss_mb(worker.pid))
            time.sleep(1)
        total_elapsed = time.monotonic() - started
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
        procs[0].send_signal(signal.SIGTERM)
        procs[0].wait(30)
        gt = [json.loads(x) for x in truth.read_text().splitlines() if x]
        want = Counter((t["agent"], _canon(t["message"])) for t in gt if t["status"] == "delivered")
        with psycopg.connect(conninfo) as conn:
            rows = conn.execute(
                "SELECT account, payload FROM events WHERE kind = 'notification'"
            ).fetchall()
        have = Counter((a, _canon(p)) for a, p in rows)
        lost = sum((want - have).values())
        dup = sum(n - 1 for n in have.values() if n > 1)
        stored = sum(have.values()) - base
        print("| metric | value |\n|---|---|")
        print(f"| agents | {args.agents} |")
        print(f"| offered rate (simulator) | {args.rate}/s for {args.seconds:.0f} s |")
        print(f"| stored during the run window | {stored_at_end / args.seconds:,.0f}/s |")
        print(
            f"| stored incl. catch-up | {stored:,} in {total_elapsed:.1f} s "
            f"({stored / total_elapsed:,.0f}/s) |"
        )
        print(f"| delivered (ground truth) | {sum(want.values()):,} |")
        print(f"| lost | {lost} |")
        print(f"| duplicated | {dup} |")
        print(f"| worker peak RSS ({args.agents} sessions) | {rss:.0f} MB |")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
