"""The bundled sample is what the generator makes, and covers the documented lifecycles."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from auditor.demo import sample_path
from auditor.sample import generate, main


def _lines() -> list[dict[str, Any]]:
    return [json.loads(line) for line in sample_path().read_text().splitlines()]


def test_bundled_sample_is_the_generator_output(capsys: Any) -> None:
    main()
    assert capsys.readouterr().out == sample_path().read_text()


def test_same_seed_gives_the_same_lifecycles() -> None:
    first = [line.to_json() for line in generate(interactions=30, seed=3)]
    again = [line.to_json() for line in generate(interactions=30, seed=3)]
    other = [line.to_json() for line in generate(interactions=30, seed=4)]
    assert first == again
    assert first != other


def test_sample_covers_every_documented_lifecycle() -> None:
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in _lines():
        data = line["message"]["data"]
        by_id[data["openmedia"]["id"]].append({**data, "account": line["account"]})
    flows = {
        i: [(e["notificationType"], e["openmedia"]["state"]) for e in events]
        for i, events in by_id.items()
    }
    assert any(
        f[:2] == [("StatusChange", "Invited"), ("StatusChange", "Processing")]
        for f in flows.values()
    )
    assert any(
        f == [("StatusChange", "Invited"), ("StatusChange", "Completed")] for f in flows.values()
    ), "a Reject"
    assert any(sum(1 for t, _ in f if t == "PropertiesUpdated") >= 3 for f in flows.values())
    transfers = [events for events in by_id.values() if len({e["account"] for e in events}) == 2]
    assert transfers, "a Transfer seen by two agents' sessions"
    errors = [e for events in by_id.values() for e in events if e["notificationType"] == "Error"]
    assert errors
    assert all(isinstance(e["referenceId"], int) for e in errors)
    outbound = [
        events for events in by_id.values() if events[0]["openmedia"]["openmediaType"] == "Outbound"
    ]
    assert outbound
    assert "userData" not in outbound[0][0]["openmedia"]
    assert len({line["account"] for line in _lines()}) >= 4
    assert len({events[0]["openmedia"]["mediaType"] for events in by_id.values()}) >= 3
