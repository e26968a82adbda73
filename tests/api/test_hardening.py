"""Strict input, safe outputs and abuse limits, in-process (issue 9, items 4-6)."""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import URL

from tests.api.conftest import Api, committed, in_transaction
from tests.helpers import om_message, receipt
from web.cursor import CursorCodec, query_digest
from web.docs_page import STYLE_HASH

METRICS_TOKEN = "metrics-" + "m" * 24


STRICT = {"auth_failures_per_minute": 3, "exports_per_token": 1, "metrics_token": METRICS_TOKEN}


@pytest.fixture
def strict_api(conn: psycopg.Connection[Any], session_db: URL) -> Api:
    return in_transaction(conn, session_db, "h", **STRICT)


def _raw(api: Api, query: str, role: str = "admin", path: str = "/api/v1/events") -> Any:
    return api.client.get(
        f"{path}?{query}", headers={"Authorization": f"Bearer {api.tokens[role]}"}
    )


def _bad(response: Any) -> set[str]:
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    return {p["name"] for p in response.json["invalid_params"]}


# --- strict input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("from=2026-11-02T09:00:00%2B00:00%00", "from"),
        ("account=agent%0A1", "account"),
        ("referenceId=%7F", "referenceId"),
        ("state=Rout%C2%85ing", "state"),  # U+0085, a C1 control
        ("order=newest%00", "order"),
    ],
)
def test_control_characters_in_any_parameter_are_a_400(api: Api, query: str, name: str) -> None:
    assert _bad(_raw(api, query)) == {name}


def test_control_characters_in_a_path_parameter_are_a_400(api: Api) -> None:
    assert _bad(_raw(api, "", path="/api/v1/interactions/abc%00/timeline")) == {"interaction_id"}
    assert _bad(_raw(api, "", path="/api/v1/interactions/" + "x" * 257)) == {"interaction_id"}


@pytest.mark.parametrize(
    "value", ["+5", "5_0", "\u0665", "\uff15", " 5", "5 ", "-1", "0x10", "1e2"]
)
def test_integers_are_ascii_digits_only(api: Api, value: str) -> None:
    response = api.get("/api/v1/events", limit=value)
    assert _bad(response) == {"limit"}
    assert "ASCII digits" in response.json["invalid_params"][0]["reason"]


def test_ascii_digits_are_still_accepted(api: Api) -> None:
    assert api.get("/api/v1/events", limit="007").status_code == 200
    assert api.get("/api/v1/access-log", status="200").status_code == 200


def test_a_single_valued_parameter_given_twice_is_a_400_naming_it(api: Api) -> None:
    response = _raw(api, "limit=5&limit=6&account=a")
    assert _bad(response) == {"limit"}
    assert "2 times" in response.json["invalid_params"][0]["reason"]
    assert _bad(_raw(api, "account=a&account=a", path="/api/v1/coverage")) == {"account"}


def _signed(api: Api, body: bytes) -> str:
    codec: CursorCodec = api.app.extensions["auditor_cursor"]
    raw = body + codec._mac(body)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'{"q": 5}',
        b"[" * 5000,
        b'{"q": "%s", "k": ["x"]}',
        b'{"q": "%s", "k": [true]}',
        b'{"q": "%s", "k": [99999999999999999999999]}',
        b'{"q": "%s", "k": [-1]}',
        b'{"q": "%s", "k": "7"}',
    ],
)
def test_a_validly_signed_cursor_with_a_malformed_body_is_a_400(api: Api, body: bytes) -> None:
    # The digest the events listing binds its cursor to (no filters, newest first).
    filled = body.replace(b"%s", query_digest("events", {}, "newest").encode())
    response = api.get("/api/v1/events", cursor=_signed(api, filled))
    assert _bad(response) == {"cursor"}


@pytest.mark.parametrize(
    "key",
    [
        '["not a time", "i1"]',
        '["2026-11-02T09:00:00", "i1"]',
        '["2026-11-02T09:00:00+00:00", "i\\u0000"]',
        '["2026-11-02T09:00:00+00:00"]',
        "[1, 2]",
    ],
)
def test_a_signed_interactions_cursor_with_a_bad_key_is_a_400(api: Api, key: str) -> None:
    body = f'{{"q": "{query_digest("interactions", {}, "newest")}", "k": {key}}}'.encode()
    response = api.get("/api/v1/interactions", cursor=_signed(api, body))
    assert _bad(response) == {"cursor"}


def test_the_openapi_document_states_the_limits(api: Api) -> None:
    spec = api.client.get("/openapi.json").json
    params = {p["name"]: p for p in spec["paths"]["/api/v1/events"]["get"]["parameters"]}
    assert params["limit"]["schema"]["minimum"] == 1
    assert params["limit"]["schema"]["maximum"] == 1000
    assert params["account"]["schema"]["maxLength"] == 256
    assert params["account"]["schema"]["pattern"].startswith("^[^\\u0000")
    assert params["cursor"]["schema"]["maxLength"] == 512
    assert "1900..9000" in params["from"]["description"]
    assert params["from"]["schema"]["pattern"].startswith("^(19")
    path = spec["paths"]["/api/v1/interactions/{interaction_id}"]["get"]["parameters"][0]
    assert path["schema"]["maxLength"] == 256


# --- safe outputs ------------------------------------------------------------------------


FORMULAS = ["=1+1", "+1", "-2", "@SUM(A1)", "\tx", "\rx", '=HYPERLINK("http://x")']


def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(committed_api: Api) -> None:
    api = committed_api  # exports hold a slot (an advisory lock) and stream past the request
    api.store(
        [
            receipt(om_message(f"f{n}", value, user_data={"n": n}), account=value, at=n)
            for n, value in enumerate(FORMULAS)
        ]
    )
    text = api.get("/api/v1/events/export", format="csv").get_data(as_text=True)
    header, *rows, _ = list(csv.reader(io.StringIO(text, newline="")))
    cells = [dict(zip(header, row, strict=True)) for row in rows]
    assert [c["account"] for c in cells] == ["'" + v for v in FORMULAS]
    assert [c["state"] for c in cells] == ["'" + v for v in FORMULAS]
    assert cells[0]["interaction_id"] == "f0"  # ordinary cells are untouched
    raw = api.get("/api/v1/events/export").get_data(as_text=True).splitlines()[:-1]
    assert [json.loads(line)["account"] for line in raw] == FORMULAS  # NDJSON keeps the raw


@pytest.mark.parametrize(
    ("path", "role"),
    [
        ("/api/v1/events", "reader"),
        ("/api/v1/events", None),
        ("/api/v1/nowhere", "reader"),
        ("/healthz", None),
        ("/docs", None),
        ("/openapi.json", None),
    ],
)
def test_every_answer_is_not_stored_and_not_sniffed(api: Api, path: str, role: str | None) -> None:
    response = api.get(path, role=role)
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Server" not in response.headers
    assert ("Server-Timing" in response.headers) == (response.status_code < 400)


def test_the_docs_page_has_a_content_security_policy_that_allows_its_style(api: Api) -> None:
    response = api.get("/docs", role=None)
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert f"style-src '{STYLE_HASH}'" in policy
    assert "<script" not in response.get_data(as_text=True)


def test_metrics_need_their_token_when_one_is_set(strict_api: Api) -> None:
    assert strict_api.get("/metrics", role=None).status_code == 401
    response = strict_api.client.get(
        "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    assert response.status_code == 200
    assert b"auditor_api_requests_total" in response.get_data()


def test_metric_labels_do_not_grow_from_client_input(api: Api) -> None:
    for n in range(5):
        api.client.open(f"/api/v1/probe{n}", method=f"BREW{n}")
        api.get(f"/random/{n}", role=None)
    metrics = api.get("/metrics", role=None).get_data(as_text=True)
    assert "BREW" not in metrics
    assert "probe" not in metrics
    assert "random" not in metrics
    assert 'endpoint="unmatched",method="other"' in metrics
    assert 'endpoint="unmatched",method="GET"' in metrics


# --- abuse limits ------------------------------------------------------------------------


def test_failed_authentication_is_rate_limited_per_address(strict_api: Api) -> None:
    bad = {"Authorization": "Bearer aud_wrong"}
    for _ in range(3):
        assert strict_api.client.get("/api/v1/events", headers=bad).status_code == 401
    refused = strict_api.client.get("/api/v1/events", headers=bad)
    assert refused.status_code == 429
    assert refused.mimetype == "application/problem+json"
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    # even the right token waits: the address is blocked, not the secret
    assert strict_api.get("/api/v1/events", role="reader").status_code == 429
    other = strict_api.client.get(
        "/api/v1/events",
        headers={"Authorization": f"Bearer {strict_api.tokens['reader']}"},
        environ_base={"REMOTE_ADDR": "192.0.2.7"},
    )
    assert other.status_code == 200


@pytest.fixture
def committed_strict_api(fresh_db: URL) -> Iterator[Api]:
    """Committed: an export's slot is an advisory lock, which the one session of a test's
    transaction would take again and again."""
    api = committed(fresh_db, "h", **STRICT)
    yield api
    api.app.extensions["auditor_db"].dispose()


def test_concurrent_exports_per_token_are_limited(committed_strict_api: Api) -> None:
    strict_api = committed_strict_api
    strict_api.store([receipt(om_message("e1", "Routing"))])
    first = strict_api.get("/api/v1/events/export", role="exporter")
    assert first.status_code == 200  # its stream holds the token's one slot until it ends
    second = strict_api.get("/api/v1/events/export", role="exporter")
    assert second.status_code == 429
    assert second.headers["Retry-After"]
    assert strict_api.get("/api/v1/events/export", role="admin").status_code == 200  # own slot
    first.get_data()
    first.close()
    third = strict_api.get("/api/v1/events/export", role="exporter")
    assert third.status_code == 200
    assert b"_summary" in third.get_data()
