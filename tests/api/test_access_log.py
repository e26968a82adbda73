"""GET /api/v1/access-log: the admin's view of who asked the API what."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.api.conftest import Api


def _requests(api: Api) -> None:
    api.get("/api/v1/events", role="reader", account="agent001", limit=5)
    api.get("/api/v1/events/export", role="reader")  # 403
    api.get("/api/v1/events", role="exporter", limit=0)  # 400
    api.get("/api/v1/events", role=None)  # 401: no token


@pytest.mark.parametrize("role", ["reader", "exporter"])
def test_only_admin_may_read_the_access_log(api: Api, role: str) -> None:
    refused = api.get("/api/v1/access-log", role=role)
    assert refused.status_code == 403
    assert refused.mimetype == "application/problem+json"
    assert "admin" in refused.json["detail"]


def test_admin_sees_every_request_newest_first_and_its_own_reads_too(api: Api) -> None:
    _requests(api)
    first = api.get("/api/v1/access-log")
    assert first.status_code == 200
    items = first.json["items"]
    assert [(i["token"], i["endpoint"], i["status"]) for i in items] == [
        (None, "/api/v1/events", 401),
        ("test-exporter", "/api/v1/events", 400),
        ("test-reader", "/api/v1/events/export", 403),
        ("test-reader", "/api/v1/events", 200),
    ]
    assert items[-1]["filters"] == {"account": "agent001", "limit": "5"}
    assert items[-1]["rows_returned"] == 0
    assert items[-1]["role"] == "reader"
    assert items[-1]["method"] == "GET"
    assert first.json["next_cursor"] is None
    again = api.get("/api/v1/access-log", limit=1).json["items"]
    assert [(i["token"], i["endpoint"], i["rows_returned"]) for i in again] == [
        ("test-admin", "/api/v1/access-log", 4)  # the first read, with what it returned
    ]


def test_filters_by_token_status_endpoint_and_time(api: Api) -> None:
    _requests(api)
    by_token = api.get("/api/v1/access-log", token="test-reader", order="oldest").json
    assert [i["status"] for i in by_token["items"]] == [200, 403]
    refused = api.get("/api/v1/access-log", status=403).json["items"]
    assert [i["endpoint"] for i in refused] == ["/api/v1/events/export"]
    exports = api.get("/api/v1/access-log", endpoint="/api/v1/events/export").json["items"]
    assert len(exports) == 1
    later = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    assert api.get("/api/v1/access-log", **{"from": later}).json["items"] == []


def test_pages_follow_each_other_and_the_cursor_is_bound_to_the_filters(api: Api) -> None:
    for _ in range(5):
        api.get("/api/v1/events", role="reader")
    seen: list[int] = []
    params: dict[str, object] = {"token": "test-reader", "limit": 2}
    while True:
        body = api.get("/api/v1/access-log", **params).json
        seen += [i["id"] for i in body["items"]]
        if body["next_cursor"] is None:
            break
        params["cursor"] = body["next_cursor"]
    assert len(seen) == 5
    assert seen == sorted(seen, reverse=True)
    first = api.get("/api/v1/access-log", token="test-reader", limit=2).json
    other = api.get("/api/v1/access-log", token="test-admin", cursor=first["next_cursor"])
    assert other.status_code == 400
    assert other.mimetype == "application/problem+json"


@pytest.mark.parametrize(
    "params",
    [{"status": "99"}, {"status": "ok"}, {"role": "root"}, {"limit": "0"}, {"tokn": "x"}],
)
def test_bad_parameters_are_a_400_problem(api: Api, params: dict[str, str]) -> None:
    admin = {"Authorization": f"Bearer {api.tokens['admin']}"}
    response = api.client.get("/api/v1/access-log", query_string=params, headers=admin)
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
