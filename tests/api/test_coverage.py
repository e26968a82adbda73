from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.api.conftest import Api
from tests.helpers import T0


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def test_coverage_lists_intervals_and_gaps_per_account(api: Api) -> None:
    api.cover("a", T0, T0 + timedelta(minutes=10))
    api.cover("a", T0 + timedelta(minutes=20), T0 + timedelta(minutes=30))
    api.cover("b", T0 - timedelta(hours=1), T0 + timedelta(hours=1))
    body = api.get(
        "/api/v1/coverage", **{"from": _iso(T0), "to": _iso(T0 + timedelta(minutes=30))}
    ).json
    assert body["complete"] is False
    by_account = {a["account"]: a for a in body["accounts"]}
    assert len(by_account["a"]["intervals"]) == 2
    assert by_account["a"]["gaps"] == [
        {
            "account": "a",
            "from": _iso(T0 + timedelta(minutes=10)),
            "to": _iso(T0 + timedelta(minutes=20)),
        }
    ]
    assert by_account["b"]["gaps"] == []
    assert body["gaps"] == by_account["a"]["gaps"]
    only_b = api.get(
        "/api/v1/coverage",
        account="b",
        **{"from": _iso(T0), "to": _iso(T0 + timedelta(minutes=30))},
    ).json
    assert only_b["complete"] is True
    assert [a["account"] for a in only_b["accounts"]] == ["b"]


def test_a_dead_workers_open_interval_ends_at_its_last_heartbeat(committed_api: Api) -> None:
    api = (
        committed_api  # a dead worker's interval is judged against now(), fixed in one transaction
    )
    now = datetime.now(UTC)
    api.cover("dead", now - timedelta(minutes=10), None, heartbeat=now - timedelta(minutes=5))
    api.cover("live", now - timedelta(minutes=10), None, heartbeat=now - timedelta(seconds=2))
    body = api.get(
        "/api/v1/coverage", **{"from": _iso(now - timedelta(minutes=10)), "to": _iso(now)}
    ).json
    by_account = {a["account"]: a for a in body["accounts"]}
    dead, live = by_account["dead"], by_account["live"]
    assert dead["intervals"][0]["live"] is False
    assert dead["intervals"][0]["to"] == _iso(now - timedelta(minutes=5))
    assert [g["from"] for g in dead["gaps"]] == [_iso(now - timedelta(minutes=5))]
    assert live["intervals"][0]["live"] is True
    assert live["gaps"] == []


def test_coverage_defaults_to_the_last_day(api: Api) -> None:
    body = api.get("/api/v1/coverage").json
    span = datetime.fromisoformat(body["to"]) - datetime.fromisoformat(body["from"])
    assert span == timedelta(hours=24)
    assert body["accounts"] == []
