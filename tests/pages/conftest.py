"""Pages fixtures: one seeded database and one app per test process (module-shared), the
Flask test client for HTTP-level tests, one headless chromium per session for browser tests.
"""

from __future__ import annotations

import secrets
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.engine import URL

from auditor import tokens
from auditor.config import ApiSettings, Settings, libpq_conninfo
from tests.logins import as_login
from tests.pages.support import Seeded, seed
from web import create_app

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Site:
    app: Flask
    url: URL  # the database, as its owner
    tokens: dict[str, str]  # role -> secret
    seeded: Seeded

    def client(self) -> FlaskClient:
        return self.app.test_client()

    def db(self) -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(libpq_conninfo(self.url), autocommit=True)

    def signed_in(self, role: str = "reader") -> FlaskClient:
        client = self.client()
        page = client.get("/ui/login")
        csrf = csrf_of(page.get_data(as_text=True))
        answer = client.post(
            "/ui/login", data={"token": self.tokens[role], "csrf_token": csrf, "next": "/ui/"}
        )
        assert answer.status_code == 303, answer.get_data(as_text=True)
        return client


def csrf_of(html: str) -> str:
    marker = 'name="csrf_token" value="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


def _admin(server_url: URL, sql: str) -> None:
    with psycopg.connect(libpq_conninfo(server_url), autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def site(server_url: URL, template_db: str) -> Iterator[Site]:
    name = f"auditor_test_{uuid.uuid4().hex[:12]}"
    _admin(server_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}" STRATEGY FILE_COPY')
    url = server_url.set(database=name)
    seeded = seed(url)
    made = {}
    with psycopg.connect(libpq_conninfo(url)) as conn:
        for role in tokens.ROLES:
            made[role] = tokens.create(conn, f"pages-{role}", role)
        conn.commit()
    settings = Settings(
        database_url=as_login(url, "api"),
        api=ApiSettings(secret=secrets.token_urlsafe(32), pool_size=4),
    )
    app = create_app(settings)
    app.config["TESTING"] = True
    yield Site(app, url, made, seeded)
    app.extensions["auditor_db"].dispose()
    _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Module-scoped on purpose: sync Playwright keeps an asyncio loop running in this thread
    while it is open, and tests of other files in the same process call asyncio.run()."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


METRICS = """# TYPE auditor_spool_depth gauge
auditor_spool_depth 12.0
# TYPE auditor_sessions_connected gauge
auditor_sessions_connected 8.0
# TYPE auditor_received counter
auditor_received_total{account="agent001"} 5.0
"""


@pytest.fixture
def metrics_url() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(METRICS.encode())

        def log_message(self, *_: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/metrics"
    server.shutdown()
    server.server_close()
