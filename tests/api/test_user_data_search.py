"""Search by business keys in userData over HTTP: `userData.KEY=VALUE` on events and
interactions, ANDed, exact and prefix, `ever=true`, keyset paging, coverage, 400s naming the
parameter, the access log, and the OpenAPI document."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Api
from tests.helpers import om_message, receipt


@pytest.fixture
def cases(api: Api) -> Api:
    made = [
        receipt(
            om_message(
                f"i{n}", "Routing", user_data={"Case": f"47{n % 3}", "Email": f"u{n}@x.org"}
            ),
            at=n,
        )
        for n in range(9)
    ]
    later = {"Case": "999", "Email": "u0@x.org"}
    api.store([*made, receipt(om_message("i0", "Handling", user_data=later), at=20)])
    return api


def _ids(api: Api, path: str, **params: Any) -> list[str]:
    response = api.get(path, order="oldest", **params)
    assert response.status_code == 200, response.json
    return [item["interaction_id"] for item in response.json["items"]]


def test_interactions_by_current_value_anded_and_by_prefix(cases: Api) -> None:
    assert _ids(cases, "/api/v1/interactions", **{"userData.Case": "470"}) == ["i3", "i6"]
    assert _ids(cases, "/api/v1/interactions", ever="true", **{"userData.Case": "470"}) == [
        "i3",
        "i6",
        "i0",
    ]
    both = {"userData.Case": "471", "userData.Email": "u4@x.org"}
    assert _ids(cases, "/api/v1/interactions", **both) == ["i4"]
    assert _ids(cases, "/api/v1/interactions", **{"userData.Email": "^u1"}) == ["i1"]
    assert _ids(cases, "/api/v1/interactions", **{"userData.Email": "u1"}) == []


def test_events_by_the_value_at_that_event(cases: Api) -> None:
    items = cases.get("/api/v1/events", **{"userData.Case": "470"}).json["items"]
    assert sorted(i["interaction_id"] for i in items) == ["i0", "i3", "i6"]
    items = cases.get("/api/v1/events", **{"userData.Case": "999"}).json["items"]
    assert [(i["interaction_id"], i["state"]) for i in items] == [("i0", "Handling")]


def test_user_data_searches_page_by_keyset_with_cursors_bound_to_the_filters(
    cases: Api,
) -> None:
    first = cases.get("/api/v1/events", limit=2, order="oldest", **{"userData.Email": "^u"})
    body = first.json
    assert len(body["items"]) == 2
    assert body["coverage"]["complete"] is not None or body["coverage"]["from"] is None
    seen = [i["event_id"] for i in body["items"]]
    cursor = body["next_cursor"]
    while cursor:
        body = cases.get(
            "/api/v1/events", limit=2, order="oldest", cursor=cursor, **{"userData.Email": "^u"}
        ).json
        seen += [i["event_id"] for i in body["items"]]
        cursor = body["next_cursor"]
    assert len(seen) == 10
    assert seen == sorted(seen)
    other = cases.get(
        "/api/v1/events", limit=2, cursor=first.json["next_cursor"], **{"userData.Email": "^v"}
    )
    assert other.status_code == 400
    assert other.json["invalid_params"][0]["name"] == "cursor"


@pytest.mark.parametrize(
    ("name", "value"),
    [("userData.a b", "x"), ("userData.", "x"), ("userData.k", "^"), ("userData.-k", "1")],
)
def test_a_malformed_filter_is_a_400_naming_the_parameter(
    cases: Api, name: str, value: str
) -> None:
    for path in ("/api/v1/events", "/api/v1/interactions"):
        response = cases.get(path, **{name: value})
        assert response.status_code == 400
        assert response.content_type == "application/problem+json"
        assert [p["name"] for p in response.json["invalid_params"]] == [name]


def test_the_access_log_records_user_data_filters(cases: Api) -> None:
    cases.get("/api/v1/interactions", ever="true", **{"userData.Case": "470"})
    logged = cases.access_log()[-1]
    assert logged[3] == "/api/v1/interactions"
    assert logged[4] == {"ever": "true", "userData.Case": "470"}
    assert logged[6] == 3


def test_the_openapi_document_describes_user_data_filters_and_as_of(cases: Api) -> None:
    spec = cases.client.get("/openapi.json").json
    for path in ("/api/v1/events", "/api/v1/interactions"):
        operation = spec["paths"][path]["get"]
        assert "userData.KEY=VALUE" in operation["description"]
        names = {p["name"] for p in operation["parameters"]}
        assert "as_of" in names
    assert "ever" in {p["name"] for p in spec["paths"]["/api/v1/interactions"]["get"]["parameters"]}
    timeline = spec["paths"]["/api/v1/interactions/{interaction_id}/timeline"]["get"]
    assert {"limit", "cursor", "as_of"} <= {p["name"] for p in timeline["parameters"]}
