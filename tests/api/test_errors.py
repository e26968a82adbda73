from __future__ import annotations

import psycopg

from tests.api.conftest import Api


def test_unknown_route_is_a_404_problem(api: Api) -> None:
    response = api.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert set(response.json) >= {"type", "title", "status", "detail"}


def test_wrong_method_is_a_405_problem(api: Api) -> None:
    response = api.client.post(
        "/api/v1/events", headers={"Authorization": f"Bearer {api.tokens['admin']}"}
    )
    assert response.status_code == 405
    assert response.mimetype == "application/problem+json"
    assert "GET" in response.headers["Allow"]


def test_an_unexpected_exception_is_a_500_problem_without_internals(api: Api) -> None:
    def explode() -> str:
        raise RuntimeError("secret internals: password=hunter2")

    api.app.add_url_rule("/api/v1/explode", "explode", explode)
    response = api.get("/api/v1/explode")
    assert response.status_code == 500
    assert response.mimetype == "application/problem+json"
    assert "hunter2" not in response.get_data(as_text=True)
    assert "RuntimeError" not in response.get_data(as_text=True)


def test_unknown_interaction_is_a_404_problem(api: Api) -> None:
    for path in ("/api/v1/interactions/nope", "/api/v1/interactions/nope/timeline"):
        response = api.get(path)
        assert response.status_code == 404
        assert "nope" in response.json["detail"]


def test_a_bad_parameter_names_it_and_what_is_accepted(api: Api) -> None:
    response = api.get("/api/v1/events", limit=5000, order="sideways")
    assert response.status_code == 400
    reasons = {p["name"]: p["reason"] for p in response.json["invalid_params"]}
    assert set(reasons) == {"limit", "order"}
    assert "1000" in reasons["limit"]
    assert "newest" in reasons["order"]


def test_server_timing_header_and_metrics_by_endpoint(api: Api) -> None:
    response = api.get("/api/v1/events")
    assert response.headers["Server-Timing"].startswith("app;dur=")
    metrics = api.get("/metrics", role=None).get_data(as_text=True)
    assert 'auditor_api_requests_total{endpoint="/api/v1/events",method="GET",status="200"}' in (
        metrics
    )


def test_a_statement_timeout_is_a_503_asking_to_narrow_the_query(api: Api) -> None:
    def too_long() -> str:
        raise psycopg.errors.QueryCanceled("canceling statement due to statement timeout")

    api.app.add_url_rule("/too-long", "too_long", too_long)
    response = api.client.get("/too-long")
    assert response.status_code == 503
    assert response.content_type == "application/problem+json"
    assert "narrow" in response.json["detail"]
    assert response.headers["Retry-After"] == "60"
