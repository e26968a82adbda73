"""100 open timelines with a live tail against `auditor serve` (gunicorn gthread, 2 workers x
8 threads, as deployed) do not starve API requests: each viewer's answers are short
(web/pages/live.py), so threads stay free. A tail that held one thread per viewer would pin
all 16 threads with 16 viewers, and the API request below would wait for the worker timeout.
"""

from __future__ import annotations

import http.client
import re
import threading
import time
from collections.abc import Iterator

import pytest

from tests.ingest.support import wait_for
from tests.logins import as_login
from tests.pages.conftest import Site
from tests.pages.support import CASE
from tests.serving import serve

VIEWERS = 100
WORKERS, THREADS = 2, 8
API_REQUESTS = 20


@pytest.fixture(scope="module")
def served(site: Site, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    log = tmp_path_factory.mktemp("live-load") / "serve.log"
    with serve(
        as_login(site.url, "api"),
        log,
        workers=WORKERS,
        threads=THREADS,
        env={"AUDITOR_API_POOL_SIZE": "8"},
    ) as server:
        yield server.port


def _get(port: int, path: str, headers: dict[str, str]) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


class Viewer(threading.Thread):
    """What EventSource does: request, read the short answer, wait `retry`, ask again with
    Last-Event-ID."""

    def __init__(self, port: int, token: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.stop = port, stop
        self.headers = {"Cookie": f"auditor_ui_token={token}", "Accept": "text/event-stream"}
        self.answers = 0
        self.failures: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                status, body = _get(self.port, f"/ui/interactions/{CASE}/live", self.headers)
            except OSError as exc:
                self.failures.append(repr(exc))
                continue
            if status != 200:
                self.failures.append(str(status))
                return
            self.answers += 1
            ids = re.findall(r"^id: ([0-9]+)$", body, flags=re.M)
            if ids:
                self.headers["Last-Event-ID"] = ids[-1]
            retry = re.search(r"^retry: ([0-9]+)$", body, flags=re.M)
            self.stop.wait(int(retry.group(1)) / 1000 if retry else 2)


def test_a_hundred_live_viewers_do_not_starve_api_requests(served: int, site: Site) -> None:
    stop = threading.Event()
    viewers = [Viewer(served, site.tokens["reader"], stop) for _ in range(VIEWERS)]
    for viewer in viewers:
        viewer.start()
    try:
        wait_for("every viewer's first answer", lambda: all(v.answers for v in viewers), 60)
        before = [v.answers for v in viewers]
        bearer = {"Authorization": f"Bearer {site.tokens['reader']}"}
        latencies = []
        for _ in range(API_REQUESTS):
            started = time.perf_counter()
            status, _ = _get(served, f"/api/v1/interactions/{CASE}", bearer)
            latencies.append(time.perf_counter() - started)
            assert status == 200
        # the viewers went on being served meanwhile
        wait_for(
            "every viewer's next answer",
            lambda: all(v.answers > b for v, b in zip(viewers, before, strict=True)),
            60,
        )
    finally:
        stop.set()
        for viewer in viewers:
            viewer.join(30)
    assert not [f for v in viewers for f in v.failures]
    latencies.sort()
    print(
        f"\n{VIEWERS} live viewers: API p50 {latencies[len(latencies) // 2] * 1000:.0f} ms,"
        f" max {latencies[-1] * 1000:.0f} ms; viewers' answers {sum(v.answers for v in viewers)}"
    )
    # Starvation would mean waiting for a thread for as long as viewers hold them (seconds to
    # the 120 s worker timeout); a free thread answers in milliseconds even on a busy machine.
    assert latencies[-1] < 5.0
