"""The server as shipped (`auditor serve`: gunicorn, web.server.HardenedWorker) under hostile
clients: half-sent requests and a client that stops reading an export."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import URL

from auditor import tokens
from auditor.config import libpq_conninfo
from auditor.store.writer import store_batch
from tests.conftest import _admin, _create_from
from tests.helpers import om_message, receipt
from tests.logins import as_login
from tests.serving import free_port, serve

IDLE_CONNECTIONS = 50
WORKERS, THREADS = 2, 4  # 8 threads: far fewer than the idle connections
IO_TIMEOUT = 3
ANSWER_WITHIN = 1.0  # seconds: a generous bound on an answer that takes milliseconds
BULK = 1000
STATES = (
    "Routing",
    "Queued",
    "Routing",
    "Completed",
)  # seconds: a generous bound on an answer that takes milliseconds


def _wait_until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _get(url: str, token: str | None = None) -> tuple[int, float]:
    request = urllib.request.Request(url)  # noqa: S310 (http://127.0.0.1 only)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        response.read()
        return response.status, time.monotonic() - started


@pytest.fixture(scope="module")
def served_db(server_url: URL, template_db: str) -> Iterator[URL]:
    """One database for the module: both tests share one server (its start is the slow part)."""
    url = _create_from(server_url, template_db)
    yield url
    _admin(server_url, f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')


@pytest.fixture(scope="module")
def served(
    served_db: URL, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, dict[str, str], Path]]:
    fresh_db, tmp_path = served_db, tmp_path_factory.mktemp("served")
    with psycopg.connect(libpq_conninfo(fresh_db)) as conn:
        made = {role: tokens.create(conn, f"abuse-{role}", role) for role in tokens.ROLES}
        # ~6 MB of export: more than the socket buffers between a stalled client and us
        store_batch(
            conn,
            [
                receipt(om_message(f"bulk{n}", "Routing", user_data={"pad": "x" * 6000}), at=n)
                for n in range(BULK)
            ]
            + [receipt(om_message("t1", state), at=40_000 + n) for n, state in enumerate(STATES)],
        )
        conn.commit()
    metrics_port = free_port()
    with serve(
        as_login(fresh_db, "api"),  # never the owner (auditor serve refuses the owner)
        tmp_path / "error.log",
        access_log=tmp_path / "access.log",  # gunicorn's
        workers=WORKERS,
        threads=THREADS,
        env={
            "AUDITOR_API_IO_TIMEOUT": str(IO_TIMEOUT),
            "AUDITOR_API_HEADER_TIMEOUT": "30",
            "AUDITOR_API_METRICS_ADDRESS": f"127.0.0.1:{metrics_port}",
        },
    ) as server:
        (tmp_path / "metrics_port").write_text(str(metrics_port))
        yield server.base, made, tmp_path


def _half_request(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no blank line: never ends
    return sock


def _stalled_export(port: int, token: str) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        b"GET /api/v1/events/export HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: Bearer " + token.encode() + b"\r\n\r\n"
    )
    return sock  # and never read


def _exports(url: URL, which: str) -> list[tuple[str, int]]:
    """The export's rows in the access log: its `started` row, or the one saying how it ended."""
    started = which == "started"
    with psycopg.connect(libpq_conninfo(url)) as conn:
        return conn.execute(
            "SELECT outcome, rows_returned FROM access_log"
            " WHERE endpoint = '/api/v1/events/export' AND (outcome = 'started') = %s",
            (started,),
        ).fetchall()


@pytest.mark.slow
def test_idle_half_requests_and_a_stalled_export_do_not_starve_the_api(
    served: tuple[str, dict[str, str], Path], served_db: URL
) -> None:
    base, made, _ = served
    fresh_db = served_db
    port = int(base.rsplit(":", 1)[1])
    idle = [_half_request(port) for _ in range(IDLE_CONNECTIONS)]
    stalled = _stalled_export(port, made["exporter"])
    try:
        # The export was sent after the idle connections: once it has begun, they are in.
        _wait_until(lambda: _exports(fresh_db, "started"), 20, "the export to begin")
        for _ in range(3):
            status, took = _get(base + "/healthz")
            assert (status, took < ANSWER_WITHIN) == (200, True), took
            status, took = _get(base + "/api/v1/interactions/t1/timeline", made["reader"])
            assert (status, took < ANSWER_WITHIN) == (200, True), took
        # The stalled reader's thread is freed after the I/O timeout, and the log says so.
        _wait_until(lambda: _exports(fresh_db, "ended"), IO_TIMEOUT + 20, "the export's end")
        [(outcome, rows)] = _exports(fresh_db, "ended")
        assert outcome == "cut"
        assert 0 <= rows < BULK
    finally:
        for sock in [*idle, stalled]:
            sock.close()


@pytest.mark.slow
def test_gunicorns_logs_never_see_a_credential_and_answers_carry_no_banner(
    served: tuple[str, dict[str, str], Path],
) -> None:
    base, made, tmp_path = served
    secret = made["reader"]
    for query in (f"access_token={secret}", f"limit=5&password=hunter2&x={secret}"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            _get(f"{base}/api/v1/events?{query}")
        assert refused.value.code in (400, 401)
        assert "Server" not in refused.value.headers
        assert "Server-Timing" not in refused.value.headers
        refused.value.close()
    with urllib.request.urlopen(base + "/healthz", timeout=10) as ok:  # noqa: S310
        assert "Server" not in ok.headers
        assert ok.headers["Cache-Control"] == "no-store"

    def logged() -> bool:
        return (tmp_path / "access.log").read_text().count("/api/v1/events?") >= 2

    _wait_until(logged, 10, "gunicorn to write its access log")
    logs = (tmp_path / "access.log").read_text() + (tmp_path / "error.log").read_text()
    assert "/api/v1/events?access_token=[redacted]" in logs
    assert secret not in logs
    assert "hunter2" not in logs


@pytest.mark.slow
def test_metrics_can_live_on_their_own_address_only(
    served: tuple[str, dict[str, str], Path],
) -> None:
    base, made, tmp_path = served
    _get(base + "/api/v1/interactions/t1/timeline", made["reader"])
    with pytest.raises(urllib.error.HTTPError) as hidden:
        _get(base + "/metrics")
    assert hidden.value.code == 404
    hidden.value.close()
    metrics_url = f"http://127.0.0.1:{(tmp_path / 'metrics_port').read_text()}/metrics"
    with urllib.request.urlopen(metrics_url, timeout=10) as scraped:
        text = scraped.read().decode()
    assert 'auditor_api_requests_total{endpoint="/api/v1/interactions/<interaction_id>' in text
