from __future__ import annotations

import json
from datetime import timedelta

from auditor.store.receipts import SNAPSHOT, Receipt, new_receipt_id
from tests.api.conftest import Api
from tests.helpers import T0, om_message, receipt


def _snapshot(interaction_id: str, state: str, at: int, account: str) -> Receipt:
    raw = json.dumps(
        {
            "data": {
                "messageType": "OpenmediaSnapshot",
                "notificationType": "Snapshot",
                "openmedia": {"id": interaction_id, "state": state, "mediaType": "email"},
            },
            "snapshot": {"request": "GET /api/v2/me/openmedia/email?fields=*", "items": 1},
        }
    )
    return Receipt(
        new_receipt_id(), T0 + timedelta(milliseconds=at), account, None, raw, kind=SNAPSHOT
    )


def test_timeline_orders_events_across_sessions_with_user_data_diffs(api: Api) -> None:
    api.store(
        [
            receipt(om_message("i1", "Routing", reference_id=7, user_data={"a": 1, "b": 2})),
            receipt(om_message("i1", "Handling", capabilities=["Complete"]), at=10),
            receipt(
                om_message("i1", "Handling", user_data={"a": 1, "b": 3, "c": 4}),
                at=20,
                account="agent002",
            ),
            receipt(om_message("i1", "Completed", user_data={"a": 1}), at=30),
        ]
    )
    body = api.get("/api/v1/interactions/i1/timeline").json
    events = body["events"]
    assert [e["event_id"] for e in events] == sorted(e["event_id"] for e in events)
    assert [e["account"] for e in events] == ["agent001", "agent001", "agent002", "agent001"]
    assert events[0]["referenceId"] == "7"
    assert events[0]["user_data_diff"] == {"added": {"a": 1, "b": 2}, "changed": {}, "removed": []}
    assert events[1]["user_data_diff"] is None  # carried no userData
    assert events[1]["capabilities"] == ["Complete"]
    assert events[2]["user_data_diff"] == {
        "added": {"c": 4},
        "changed": {"b": {"from": 2, "to": 3}},
        "removed": [],
    }
    assert events[3]["user_data_diff"] == {"added": {}, "changed": {}, "removed": ["b", "c"]}
    # agent002's session still handles it (the projection's transfer rule)
    assert body["interaction"]["state"] == "Handling"
    assert body["interaction"]["event_count"] == 4


def test_snapshot_events_are_marked(api: Api) -> None:
    api.store([receipt(om_message("i2", "Routing")), _snapshot("i2", "Handling", 50, "agent001")])
    events = api.get("/api/v1/interactions/i2/timeline").json["events"]
    assert [(e["kind"], e["snapshot"]) for e in events] == [
        ("notification", False),
        ("snapshot", True),
    ]
    assert events[1]["notificationType"] == "Snapshot"


def test_timeline_lists_coverage_gaps_of_involved_accounts_within_the_lifetime(api: Api) -> None:
    api.store(
        [
            receipt(om_message("i3", "Routing")),
            receipt(om_message("i3", "Completed"), at=50_000, account="agent002"),
            receipt(om_message("i3", "Completed"), at=60_000),
        ]
    )
    # agent001 covered throughout; agent002 from +10 s to +40 s only; agent003 not involved.
    api.cover("agent001", T0 - timedelta(hours=1), T0 + timedelta(hours=1))
    api.cover("agent002", T0 + timedelta(seconds=10), T0 + timedelta(seconds=40))
    api.cover("agent003", T0 + timedelta(hours=5), T0 + timedelta(hours=6))
    gaps = api.get("/api/v1/interactions/i3/timeline").json["coverage_gaps"]
    assert gaps == [
        {
            "account": "agent002",
            "from": "2026-11-02T09:00:00+00:00",
            "to": "2026-11-02T09:00:10+00:00",
        },
        {
            "account": "agent002",
            "from": "2026-11-02T09:00:40+00:00",
            "to": "2026-11-02T09:01:00+00:00",
        },
    ]


def test_projection_lookup_shows_current_state_and_accounts(api: Api) -> None:
    api.store(
        [
            receipt(om_message("i4", "Routing", user_data={"k": "v"})),
            receipt(om_message("i4", "Handling"), at=5, account="agent009"),
        ]
    )
    body = api.get("/api/v1/interactions/i4", role="reader").json
    assert body["state"] == "Handling"
    assert body["mediaType"] == "email"
    assert body["openmediaType"] == "Inbound"
    assert body["user_data"] == {"k": "v"}
    assert body["accounts"] == ["agent001", "agent009"]
    assert body["event_count"] == 2
    assert body["first_seen_at"] == "2026-11-02T09:00:00+00:00"


def _five_events(api: Api) -> None:
    api.store(
        [
            receipt(om_message("p", "Routing", user_data={"a": 1})),
            receipt(om_message("p", "Handling"), at=1),
            receipt(om_message("p", "Handling", user_data={"a": 2}), at=2, account="agent002"),
            receipt(om_message("p", "Handling", user_data={"a": 2, "b": 1}), at=3),
            receipt(om_message("p", "Completed", user_data={"b": 1}), at=4),
        ]
    )


def test_timeline_pages_follow_next_cursor_with_diffs_continuing_across_pages(api: Api) -> None:
    _five_events(api)
    whole = api.get("/api/v1/interactions/p/timeline").json
    assert whole["next_cursor"] is None
    assert len(whole["events"]) == 5
    events: list[dict[str, object]] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        body = api.get("/api/v1/interactions/p/timeline", **params).json
        assert len(body["events"]) <= 2
        assert body["interaction"] == whole["interaction"]
        # the same gaps (open ones end at the time of each request: it is still open)
        assert [(g["account"], g["from"]) for g in body["coverage_gaps"]] == [
            (g["account"], g["from"]) for g in whole["coverage_gaps"]
        ]
        events.extend(body["events"])
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert events == whole["events"]
    # page 2 starts with agent002's change of `a` from 1 (set on page 1) to 2
    assert events[2]["user_data_diff"] == {
        "added": {},
        "changed": {"a": {"from": 1, "to": 2}},
        "removed": [],
    }


def test_timeline_page_size_has_a_default_and_a_maximum(api: Api) -> None:
    api.store([receipt(om_message("big", "Handling"), at=n) for n in range(205)])
    body = api.get("/api/v1/interactions/big/timeline").json
    assert len(body["events"]) == 200
    assert body["next_cursor"] is not None
    rest = api.get("/api/v1/interactions/big/timeline", cursor=body["next_cursor"]).json
    assert len(rest["events"]) == 5
    assert rest["next_cursor"] is None
    too_big = api.get("/api/v1/interactions/big/timeline", limit=1001)
    assert too_big.status_code == 400
    assert too_big.json["invalid_params"][0]["name"] == "limit"


def test_a_timeline_cursor_is_bound_to_its_interaction_and_as_of(api: Api) -> None:
    _five_events(api)
    api.store([receipt(om_message("q", "Routing"), at=n) for n in range(3)])
    cursor = api.get("/api/v1/interactions/p/timeline", limit=2).json["next_cursor"]
    other = api.get("/api/v1/interactions/q/timeline", cursor=cursor)
    assert other.status_code == 400
    assert other.json["invalid_params"][0]["name"] == "cursor"
    as_of = api.get("/api/v1/interactions/p/timeline", cursor=cursor, as_of=T0.isoformat())
    assert as_of.status_code == 400
    assert api.get("/api/v1/interactions/p/timeline", cursor="garbage").status_code == 400


def test_the_access_log_records_the_timeline_parameters(api: Api) -> None:
    _five_events(api)
    cursor = api.get("/api/v1/interactions/p/timeline", limit=2).json["next_cursor"]
    api.get("/api/v1/interactions/p/timeline", limit=2, cursor=cursor)
    *_, first, second = api.access_log()
    assert first[3] == "/api/v1/interactions/p/timeline"
    assert first[4] == {"limit": "2"}
    assert second[4] == {"limit": "2", "cursor": cursor}
    assert (first[6], second[6]) == (2, 2)
