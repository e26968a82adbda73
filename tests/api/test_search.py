from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

import pytest

from tests.api.conftest import Api
from tests.helpers import T0, om_message, receipt


def _load(api: Api, count: int = 12) -> None:
    api.store(
        [
            receipt(
                om_message(
                    f"i{n % 4}",
                    "Routing" if n % 2 else "Handling",
                    reference_id=n,
                    media_type="chat" if n % 3 == 0 else "email",
                ),
                at=n * 1000,
                account=f"agent{n % 2}",
            )
            for n in range(count)
        ]
    )


def _all_pages(api: Api, path: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        body = api.get(path, **query).json
        items.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return items


def test_filters_select_matching_events(api: Api) -> None:
    _load(api)
    body = api.get("/api/v1/events", mediaType="chat", state="Routing").json
    assert {e["referenceId"] for e in body["items"]} == {"3", "9"}
    assert api.get("/api/v1/events", referenceId="5").json["items"][0]["interaction_id"] == "i1"
    assert len(api.get("/api/v1/events", interactionId="i2").json["items"]) == 3
    assert len(api.get("/api/v1/events", account="agent1").json["items"]) == 6
    assert len(api.get("/api/v1/events", channel="/v2/me/openmedia").json["items"]) == 12
    assert len(api.get("/api/v1/events", notificationType="StatusChange").json["items"]) == 12
    assert len(api.get("/api/v1/events", messageType="nothing").json["items"]) == 0


def test_time_range_is_from_inclusive_to_exclusive(api: Api) -> None:
    _load(api)
    items = api.get(
        "/api/v1/events",
        **{"from": (T0 + timedelta(seconds=2)).isoformat(), "to": "2026-11-02T10:00:05+01:00"},
    ).json["items"]
    assert sorted(int(e["referenceId"]) for e in items) == [2, 3, 4]


@pytest.mark.parametrize("order", ["newest", "oldest"])
def test_paging_visits_every_event_once_in_order(api: Api, order: str) -> None:
    _load(api)
    items = _all_pages(api, "/api/v1/events", limit=5, order=order)
    ids = [e["event_id"] for e in items]
    assert len(ids) == 12
    assert ids == sorted(ids, reverse=order == "newest")


def test_cursor_stays_correct_while_new_events_arrive(api: Api) -> None:
    _load(api, 6)
    first = api.get("/api/v1/events", order="oldest", limit=4).json
    api.store([receipt(om_message("i9", "Routing"), at=n) for n in range(3)])
    rest = _all_pages(api, "/api/v1/events", order="oldest", limit=4, cursor=first["next_cursor"])
    ids = [e["event_id"] for e in first["items"] + rest]
    assert ids == _stored_ids(api)  # all nine, each once, oldest first


def test_newest_first_cursor_does_not_repeat_or_skip_when_events_arrive(api: Api) -> None:
    _load(api, 6)
    first = api.get("/api/v1/events", limit=3).json
    api.store([receipt(om_message("i9", "Routing"), at=99_000)])
    second = api.get("/api/v1/events", limit=3, cursor=first["next_cursor"]).json
    loaded = _stored_ids(api)[:6]  # ids come from a sequence: not 1..6 in a shared database
    assert [e["event_id"] for e in first["items"] + second["items"]] == loaded[::-1]


def _stored_ids(api: Api) -> list[int]:
    with api.db() as conn:
        return [row[0] for row in conn.execute("SELECT id FROM events ORDER BY id")]


def _tamper(cursor: str) -> str:
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw[5] ^= 1
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


@pytest.mark.parametrize("mangle", [_tamper, lambda c: "garbage!", lambda c: c[:-3]])
def test_tampered_cursor_is_a_400_naming_cursor(api: Api, mangle: Any) -> None:
    _load(api)
    cursor = api.get("/api/v1/events", limit=2).json["next_cursor"]
    response = api.get("/api/v1/events", limit=2, cursor=mangle(cursor))
    assert response.status_code == 400
    assert [p["name"] for p in response.json["invalid_params"]] == ["cursor"]


def test_cursor_reused_with_other_filters_or_order_is_refused(api: Api) -> None:
    _load(api)
    cursor = api.get("/api/v1/events", limit=2, mediaType="email").json["next_cursor"]
    assert api.get("/api/v1/events", limit=2, mediaType="email", cursor=cursor).status_code == 200
    for other in ({"mediaType": "chat"}, {"mediaType": "email", "order": "oldest"}, {}):
        response = api.get("/api/v1/events", limit=2, cursor=cursor, **other)
        assert response.status_code == 400
        assert response.json["invalid_params"][0]["name"] == "cursor"
    # nor on the other search endpoint
    assert api.get("/api/v1/interactions", cursor=cursor).status_code == 400


def test_cursor_signed_with_another_secret_is_refused(api: Api) -> None:
    from web.cursor import CursorCodec

    foreign = CursorCodec("another secret, another deployment.....").encode("x", [1])
    assert api.get("/api/v1/events", cursor=foreign).status_code == 400


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"from": "2026-11-02T09:00:00"}, "from"),
        ({"to": "2026-11-02"}, "to"),
        ({"from": "yesterday"}, "from"),
        ({"from": "2026-11-03T00:00:00Z", "to": "2026-11-02T00:00:00Z"}, "from"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"kind": "other"}, "kind"),
        ({"surprise": "1"}, "surprise"),
        ({"account": "a\x00b"}, "account"),
    ],
)
def test_bad_parameters_are_400_problems_naming_them(
    api: Api, params: dict[str, str], name: str
) -> None:
    response = api.get("/api/v1/events", **params)
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert name in [p["name"] for p in response.json["invalid_params"]]


def test_search_reports_coverage_gaps_for_its_range(api: Api) -> None:
    _load(api)
    api.cover("agent0", T0 - timedelta(minutes=1), T0 + timedelta(seconds=5))
    api.cover("agent1", T0 - timedelta(minutes=1), T0 + timedelta(minutes=1))
    body = api.get("/api/v1/events", **{"from": T0.isoformat(), "to": "2026-11-02T09:00:10Z"}).json
    assert body["coverage"] == {
        "complete": False,
        "status": "gaps",
        "purged": [],
        "from": "2026-11-02T09:00:00+00:00",
        "to": "2026-11-02T09:00:10+00:00",
        "gaps": [
            {
                "account": "agent0",
                "from": "2026-11-02T09:00:05+00:00",
                "to": "2026-11-02T09:00:10+00:00",
            }
        ],
    }
    covered = api.get("/api/v1/events", account="agent1", to="2026-11-02T09:00:30Z").json
    assert covered["coverage"]["complete"] is True
    assert covered["coverage"]["from"] == "2026-11-02T09:00:01+00:00"  # earliest row


def test_search_without_range_or_rows_has_unknown_coverage(api: Api) -> None:
    body = api.get("/api/v1/events", account="nobody").json
    assert body["items"] == []
    assert body["coverage"] == {
        "complete": None,
        "status": None,
        "from": None,
        "to": None,
        "gaps": [],
        "purged": [],
    }


def test_events_of_an_account_never_covered_are_reported_incomplete(api: Api) -> None:
    _load(api, 2)
    body = api.get("/api/v1/events", to="2026-11-02T09:00:05Z").json
    assert body["coverage"]["complete"] is False
    assert {g["account"] for g in body["coverage"]["gaps"]} == {"agent0", "agent1"}


def test_interaction_search_filters_and_pages(api: Api) -> None:
    _load(api)
    api.store([receipt(om_message("x1", "Routing", media_type="sms"), at=500_000, account="z")])
    assert [
        i["interaction_id"] for i in api.get("/api/v1/interactions", mediaType="sms").json["items"]
    ] == ["x1"]
    assert [
        i["interaction_id"] for i in api.get("/api/v1/interactions", account="z").json["items"]
    ] == ["x1"]
    newest = _all_pages(api, "/api/v1/interactions", limit=2)
    assert [i["interaction_id"] for i in newest] == ["x1", "i3", "i2", "i1", "i0"]
    oldest = _all_pages(api, "/api/v1/interactions", limit=2, order="oldest")
    assert [i["interaction_id"] for i in oldest] == ["i0", "i1", "i2", "i3", "x1"]
    ranged = api.get(
        "/api/v1/interactions", **{"from": "2026-11-02T09:00:09Z", "to": "2026-11-02T09:01:00Z"}
    ).json
    assert sorted(i["interaction_id"] for i in ranged["items"]) == ["i1", "i2", "i3"]
    assert ranged["coverage"]["complete"] is False
