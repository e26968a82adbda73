"""GET /api/v1/findings: lifecycle findings with filters, keyset paging and coverage."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from auditor.store.findings_queries import FINDING_CODES
from tests.api.conftest import Api
from tests.bi import fixture


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


@pytest.fixture
def found(api: Api) -> Api:
    api.store(fixture.receipts())
    for account, _worker, start, end in fixture.COVERAGE:
        api.cover(account, start, end)
    return api


def _keys(items: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(i["interaction_id"], i["account"], i["code"]) for i in items]


def test_reader_lists_every_finding_newest_first(found: Api) -> None:
    response = found.get("/api/v1/findings", role="reader")
    assert response.status_code == 200
    body = response.json
    items = body["items"]
    assert set(_keys(items)) == {
        *fixture.EXPECTED_BAD_FINDINGS,
        ("OM-REJECT", "agent001", "OPERATION_FAILED"),
    }
    assert len(items) == len(fixture.EXPECTED_BAD_FINDINGS) + 1
    ids = [(i["event_id"], i["code"]) for i in items]
    assert ids == sorted(ids, reverse=True)
    error = next(i for i in items if i["interaction_id"] == "OM-REJECT")
    assert error["referenceId"] == "5"
    assert error["error_code"] == "1203"
    assert error["explanation"].startswith("An Error notification")
    assert body["next_cursor"] is None
    assert body["coverage"]["complete"] is False  # agent004..006 were never covered


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (
            {"interactionId": "BAD-AFTER"},
            {
                ("BAD-AFTER", "agent004", "EVENT_AFTER_COMPLETED"),
                ("BAD-AFTER", "agent004", "STATE_OUT_OF_ORDER"),
            },
        ),
        (
            {"code": "SEEN_WITHOUT_INVITE"},
            {
                ("BAD-NOINVITE", "agent004", "SEEN_WITHOUT_INVITE"),
                ("BAD-ACCEPT", "agent005", "SEEN_WITHOUT_INVITE"),
                ("BAD-SEEN", "agent005", "SEEN_WITHOUT_INVITE"),
            },
        ),
        (
            {"account": "agent005"},
            {k for k in fixture.EXPECTED_BAD_FINDINGS if k[1] == "agent005"},
        ),
        (
            {"from": _iso(fixture.T0), "to": _iso(fixture.BAD_DAY)},
            {("OM-REJECT", "agent001", "OPERATION_FAILED")},
        ),
        ({"from": _iso(fixture.BAD_DAY)}, fixture.EXPECTED_BAD_FINDINGS),
    ],
)
def test_filters(found: Api, params: dict[str, str], expected: set[tuple[Any, ...]]) -> None:
    items = found.get("/api/v1/findings", role="reader", **params).json["items"]
    assert set(_keys(items)) == expected
    assert len(items) == len(expected)


def test_pages_walk_every_finding_once_in_both_orders(found: Api) -> None:
    everything = _keys(found.get("/api/v1/findings", order="oldest").json["items"])
    for order, want in (("oldest", everything), ("newest", everything[::-1])):
        seen: list[tuple[Any, ...]] = []
        params: dict[str, Any] = {"limit": 3, "order": order}
        while True:
            body = found.get("/api/v1/findings", **params).json
            seen += _keys(body["items"])
            if body["next_cursor"] is None:
                break
            params["cursor"] = body["next_cursor"]
        assert seen == want


def test_a_cursor_is_bound_to_its_filters(found: Api) -> None:
    cursor = found.get("/api/v1/findings", limit=1).json["next_cursor"]
    refused = found.get("/api/v1/findings", limit=1, code="STATE_OUT_OF_ORDER", cursor=cursor)
    assert refused.status_code == 400
    assert refused.mimetype == "application/problem+json"


@pytest.mark.parametrize(
    "params",
    [{"code": "NOT_A_CODE"}, {"limit": 0}, {"unknown": "x"}, {"from": "yesterday"}],
)
def test_bad_parameters_are_a_problem_not_a_crash(found: Api, params: dict[str, Any]) -> None:
    response = found.get("/api/v1/findings", role="reader", **params)
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"


def test_coverage_of_the_range_asked_for(found: Api) -> None:
    gap_range = {"from": _iso(fixture.T0), "to": _iso(fixture.at(3600))}
    covered = found.get("/api/v1/findings", account="agent001", **gap_range).json["coverage"]
    assert covered["complete"] is True
    gapped = found.get("/api/v1/findings", account="agent003", **gap_range).json["coverage"]
    assert gapped["complete"] is False
    assert gapped["gaps"] == [
        {"account": "agent003", "from": _iso(fixture.at(50)), "to": _iso(fixture.at(55))}
    ]


def test_needs_a_token_and_is_logged(found: Api) -> None:
    assert found.get("/api/v1/findings", role=None).status_code == 401
    found.get("/api/v1/findings", role="reader", code="OPERATION_FAILED")
    last = found.access_log()[-1]
    assert last[:4] == ("test-reader", "reader", "GET", "/api/v1/findings")
    assert last[4] == {"code": "OPERATION_FAILED"}
    assert (last[5], last[6]) == (200, 2)


def test_in_the_openapi_document_with_the_codes(found: Api) -> None:
    spec = found.client.get("/openapi.json").json
    operation = spec["paths"]["/api/v1/findings"]["get"]
    params = {p["name"]: p for p in operation["parameters"]}
    assert {"interactionId", "account", "code", "from", "to", "limit", "cursor"} <= set(params)
    assert sorted(params["code"]["schema"]["enum"]) == sorted(FINDING_CODES)


def test_the_api_codes_are_the_views_codes(found: Api) -> None:
    with found.db() as conn:
        rows = conn.execute("SELECT code FROM bi_v1.finding_codes ORDER BY code").fetchall()
    assert tuple(r[0] for r in rows) == FINDING_CODES
