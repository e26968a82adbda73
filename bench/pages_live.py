"""Benchmark: API latency while browser timelines are open with their live tail.

Starts an embedded PostgreSQL, one interaction, `auditor serve` (2 workers x 8 threads, as
deployed), then measures GET /api/v1/interactions/ID (new connection per request) with no
viewer and with N viewers polling /ui/interactions/ID/live as EventSource does (each answer
short, then `retry`, then again with Last-Event-ID; web/pages/live.py). Prints p50/p99/max
of both, their ratio, and the viewers' request rate.

    python bench/pages_live.py [--viewers 100] [--samples 200]
"""

from __future__ import annotations

import argparse
import http.client
import re
import secrets
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from auditor import tokens
from auditor.config import libpq_conninfo, parse_database_url
from auditor.pgserver import EmbeddedPostgres
from auditor.roles import grant_login
from auditor.store.receipts import Receipt, new_receipt_id
from auditor.store.writer import store_batch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.serving
from store import fresh_database

from tests.serving import serve

INTERACTION = "BENCH-1"


def _get(port: int, path: str, headers: dict[str, str]) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def _seed(url: str) -> tuple[str, str]:
    """One interaction of 50 events; (reader token, API login password)."""
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    receipts = [
        Receipt(
            new_receipt_id(),
            t0 + timedelta(seconds=n),
            "agent001",
            "/v2/me/openmedia",
            '{"channel":"/v2/me/openmedia","data":{"messageType":"OpenmediaStateChangeMessage",'
            '"notificationType":"StatusChange","openmedia":{"id":"' + INTERACTION + '",'
            '"state":"Processing","mediaType":"email","userData":{"n":' + str(n) + "}}}}",
        )
        for n in range(50)
    ]
    password = secrets.token_urlsafe(16)
    with psycopg.connect(libpq_conninfo(parse_database_url(url))) as conn:
        store_batch(conn, receipts)
        grant_login(conn, "api", "bench_pages_api", password)
        token = tokens.create(conn, "bench-reader", "reader")
        conn.commit()
    return token, password


class Viewer(threading.Thread):
    def __init__(self, port: int, token: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.stop, self.answers = port, stop, 0
        self.headers = {"Cookie": f"auditor_ui_token={token}", "Last-Event-ID": "0"}

    def run(self) -> None:
        while not self.stop.is_set():
            status, body = _get(self.port, f"/ui/interactions/{INTERACTION}/live", self.headers)
            if status != 200:
                raise SystemExit(f"live answered {status}")
            self.answers += 1
            ids = re.findall(r"^id: ([0-9]+)$", body, flags=re.M)
            if ids:
                self.headers["Last-Event-ID"] = ids[-1]
            retry = re.search(r"^retry: ([0-9]+)$", body, flags=re.M)
            self.stop.wait(int(retry.group(1)) / 1000 if retry else 2)


def _latencies(port: int, token: str, samples: int) -> list[float]:
    headers = {"Authorization": f"Bearer {token}"}
    found = []
    for _ in range(samples):
        started = time.perf_counter()
        status, _ = _get(port, f"/api/v1/interactions/{INTERACTION}", headers)
        found.append((time.perf_counter() - started) * 1000)
        if status != 200:
            raise SystemExit(f"API answered {status}")
    return sorted(found)


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def _measure(port: int, token: str, count: int, samples: int) -> None:
    _latencies(port, token, 20)  # warm the workers' pools
    alone = _latencies(port, token, samples)
    stop = threading.Event()
    viewers = [Viewer(port, token, stop) for _ in range(count)]
    for viewer in viewers:
        viewer.start()
    while not all(v.answers for v in viewers):
        time.sleep(0.1)
    counted, started = sum(v.answers for v in viewers), time.monotonic()
    busy = _latencies(port, token, samples)
    rate = (sum(v.answers for v in viewers) - counted) / (time.monotonic() - started)
    stop.set()
    for viewer in viewers:
        viewer.join(30)
    print(f"API GET /api/v1/interactions/ID, {samples} requests, new connection each")
    for name, values in (("no viewer", alone), (f"{count} live viewers", busy)):
        print(
            f"  {name:>18}: p50 {_pct(values, 0.5):7.2f} ms  p99 {_pct(values, 0.99):7.2f} ms"
            f"  max {values[-1]:7.2f} ms"
        )
    print(
        f"  p50 ratio {_pct(busy, 0.5) / _pct(alone, 0.5):.2f}x,"
        f" p99 ratio {_pct(busy, 0.99) / _pct(alone, 0.99):.2f}x;"
        f" viewers' live requests {rate:.1f}/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--viewers", type=int, default=100)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="auditor-bench-pages-"))
    server = EmbeddedPostgres(data_dir, durable=False).start()
    try:
        url = fresh_database(server, "bench_pages")
        token, password = _seed(url)
        api_url = parse_database_url(url).set(username="bench_pages_api", password=password)
        with serve(api_url, None, workers=2, threads=8) as served:
            _measure(served.port, token, args.viewers, args.samples)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
