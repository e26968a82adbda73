from __future__ import annotations

import pytest

from auditor import tokens
from tests.api.conftest import Api


def test_no_token_is_401_problem_with_bearer_challenge(api: Api) -> None:
    response = api.get("/api/v1/events", role=None)
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.json["status"] == 401


@pytest.mark.parametrize("header", ["Bearer aud_not-a-token", "Basic dXNlcjpwYXNz", "Bearer "])
def test_unknown_or_malformed_token_is_401(api: Api, header: str) -> None:
    response = api.client.get("/api/v1/events", headers={"Authorization": header})
    assert response.status_code == 401
    assert "WWW-Authenticate" in response.headers


def test_revoked_token_is_refused(api: Api) -> None:
    assert api.get("/api/v1/events", role="reader").status_code == 200
    with api.db() as conn:
        assert tokens.revoke(conn, "test-reader")
    assert api.get("/api/v1/events", role="reader").status_code == 401


def test_reader_may_not_export_but_exporter_and_admin_may(committed_api: Api) -> None:
    api = committed_api  # exports hold a slot (an advisory lock) and stream past the request
    refused = api.get("/api/v1/events/export", role="reader")
    assert refused.status_code == 403
    assert refused.mimetype == "application/problem+json"
    assert "exporter" in refused.json["detail"]
    assert api.get("/api/v1/events/export", role="exporter").status_code == 200
    assert api.get("/api/v1/events/export", role="admin").status_code == 200


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"])
def test_operational_endpoints_need_no_token(api: Api, path: str) -> None:
    assert api.get(path, role=None).status_code == 200


def test_a_used_token_records_when_it_was_last_used(api: Api) -> None:
    def last_used() -> dict[str, object]:
        with api.db() as conn:
            return {t.name: t.last_used_at for t in tokens.list_tokens(conn)}

    assert last_used()["test-reader"] is None
    assert api.get("/api/v1/events", role="reader").status_code == 200
    first = last_used()["test-reader"]
    assert first is not None
    assert last_used()["test-exporter"] is None  # only the token that was used
    api.get("/api/v1/events", role="reader")
    assert last_used()["test-reader"] == first  # written at most once a minute


def test_tokens_are_stored_as_sha256_only(api: Api) -> None:
    with api.db() as conn:
        hashes = {row[0] for row in conn.execute("SELECT token_hash FROM api_tokens")}
    assert tokens.token_hash(api.tokens["reader"]) in hashes
    assert api.tokens["reader"] not in hashes


def test_every_read_and_refusal_is_in_the_access_log(api: Api) -> None:
    api.get("/api/v1/events", role="reader", account="agent001", limit=5)
    api.get("/api/v1/events", role=None)
    api.get("/api/v1/events/export", role="reader")
    api.get("/api/v1/events", role="reader", limit=0)
    api.get("/healthz", role=None)
    log = api.access_log()
    assert log == [
        (
            "test-reader",
            "reader",
            "GET",
            "/api/v1/events",
            {"account": "agent001", "limit": "5"},
            200,
            0,
        ),
        (None, None, "GET", "/api/v1/events", {}, 401, None),
        ("test-reader", "reader", "GET", "/api/v1/events/export", {}, 403, None),
        ("test-reader", "reader", "GET", "/api/v1/events", {"limit": "0"}, 400, None),
    ]


def test_the_access_log_is_append_only(api: Api) -> None:
    api.get("/api/v1/events", role="reader")
    with api.db() as conn, pytest.raises(Exception, match="append-only"):
        conn.execute("DELETE FROM access_log")
