"""The generator: deterministic per seed, payloads shaped as PROTOCOL.md section 3."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from auditor.simulator.config import SimConfig
from auditor.simulator.lifecycle import CAPS_PROCESSING, Engine, pluralise

FIXED = SimConfig(agents=5, rate=100, seed=7, clock_start=datetime(2024, 3, 1, tzinfo=UTC))


def _run(config: SimConfig, steps: int = 500) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    engine = Engine(config, lambda agent, msg: out.append((agent, msg)), "http://gws:8080")
    for _ in range(steps):
        engine.step()
    return out


def test_same_seed_gives_the_same_notifications_and_another_seed_does_not() -> None:
    assert _run(FIXED) == _run(FIXED)
    assert _run(FIXED) != _run(replace(FIXED, seed=8))


def test_lifecycles_cover_every_notification_kind_and_operation() -> None:
    out = _run(replace(FIXED, error_rate=0.05), 3000)
    kinds = {m["data"]["notificationType"] for _, m in out}
    assert kinds == {"StatusChange", "PropertiesUpdated", "Error"}
    states = {m["data"]["openmedia"]["state"] for _, m in out if "openmedia" in m["data"]}
    assert states == {"Invited", "Processing", "Completed"}
    assert {m["data"]["openmedia"]["openmediaType"] for _, m in out} == {"Inbound", "Outbound"}


def test_payloads_follow_the_documented_shape() -> None:
    received = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}[+-]\d{4}$")
    for _, msg in _run(FIXED, 1000):
        assert msg["channel"] == "/v2/me/openmedia"
        data = msg["data"]
        assert data["messageType"] == "OpenmediaStateChangeMessage"
        om = data["openmedia"]
        assert re.fullmatch(r"[0-9A-Z]{16}", om["id"])
        assert om["uri"] == f"http://gws:8080/api/v2/openmedia/workitems/{om['id']}"
        if data["notificationType"] == "Error":
            assert isinstance(data["errorCode"], int)
            assert data["errorMessage"]
            assert isinstance(data["referenceId"], int)
        elif om["state"] == "Invited":
            assert "referenceId" not in data
            assert om["capabilities"] == ["Accept", "Reject"]
        elif om["state"] == "Processing":
            assert om["capabilities"] == list(CAPS_PROCESSING)
            assert isinstance(data["referenceId"], int)
        else:
            assert om["capabilities"] == []
        if om["openmediaType"] == "Inbound":
            assert received.match(om["receivedDate"])
            assert om["receivedDate"].startswith("2024-03-01")


def test_reference_ids_increase_per_agent() -> None:
    seen: dict[str, int] = {}
    for agent, msg in _run(FIXED, 1000):
        ref = msg["data"].get("referenceId")
        if ref is not None:
            assert ref > seen.get(agent, 0)
            seen[agent] = ref


def test_invited_reference_id_can_be_null_and_errors_can_omit_openmedia() -> None:
    config = replace(
        FIXED, invite_reference_id="null", error_includes_openmedia=False, error_rate=0.2
    )
    out = _run(config, 500)
    invited = [m for _, m in out if m["data"].get("openmedia", {}).get("state") == "Invited"]
    assert invited
    assert all(m["data"]["referenceId"] is None for m in invited)
    errors = [m for _, m in out if m["data"]["notificationType"] == "Error"]
    assert errors
    assert all("openmedia" not in m["data"] for m in errors)


def test_properties_updated_carries_the_full_merged_user_data() -> None:
    out = _run(FIXED, 2000)
    last: dict[str, dict[str, Any]] = {}
    for _, msg in out:
        data = msg["data"]
        om = data.get("openmedia")
        if om is None or data["notificationType"] == "Error":
            continue
        if data["notificationType"] == "PropertiesUpdated" and om["id"] in last:
            before = last[om["id"]]
            # routing keys survive every attach/update: the payload is not a delta
            for key in ("RTenant", "RStrategyName"):
                if key in before:
                    assert om["userData"][key] == before[key]
        last[om["id"]] = om.get("userData", {})


def test_pluralise_media_type_names() -> None:
    assert pluralise("promotion") == "promotions"
    assert pluralise("workitem") == "workitems"
    assert pluralise("inbox") == "inboxes"
    assert pluralise("delivery") == "deliveries"
