"""Leaf encodings: derived from the table declarations, and the fast path byte-identical to
the reference (RFC 8785 via auditor.evidence.canonical)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auditor import db
from auditor.evidence.canonical import canonical_bytes
from auditor.evidence.leaves import (
    SOURCES,
    LeafEncoder,
    Parsed,
    canonical_json,
    leaf_bytes,
    load_json,
    timestamp,
)

# Each exclusion is written down once: here and in docs/evidence.md.
EXCLUDED: dict[str, set[str]] = {
    "event": {"stored_at"},
    "quarantine": {"stored_at"},
    "coverage": set(),
    "access": set(),
    "checkpoint": set(),
    "hold": set(),
    "release": set(),
    "purge": set(),
}


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_each_leaf_covers_every_column_but_the_documented_exclusions(source: str) -> None:
    spec = SOURCES[source]
    columns = {c.name for c in spec.table.columns}
    assert set(spec.excluded) == EXCLUDED[source]
    assert set(spec.fields) == columns - EXCLUDED[source]
    assert list(spec.fields) == sorted(spec.fields)


def test_the_audited_tables_are_the_ones_declared_in_db() -> None:
    assert {s.table.name for s in SOURCES.values()} == {
        db.events.name,
        db.quarantine.name,
        db.coverage_intervals.name,
        db.access_log.name,
        db.checkpoints.name,
        db.legal_holds.name,
        db.hold_releases.name,
        db.purges.name,
    }


def test_timestamps_are_utc_with_six_fraction_digits() -> None:
    paris = timezone(timedelta(hours=1))
    assert timestamp(datetime(2026, 11, 2, 10, 0, tzinfo=paris)) == "2026-11-02T09:00:00.000000Z"
    assert timestamp(datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)) == "2026-01-02T03:04:05.000006Z"
    with pytest.raises(ValueError, match="time zone"):
        timestamp(datetime(2026, 1, 2))


def test_a_leaf_is_the_canonical_object_without_nulls() -> None:
    row = {
        "id": 7,
        "receipt_id": uuid.UUID("0189ABCD-0000-7000-8000-000000000001"),
        "received_at": datetime(2026, 11, 2, 9, 0, 0, 272000, tzinfo=UTC),
        "account": "agent001",
        "channel": None,
        "reason": "not JSON",
        "raw": b"\x00\xff",
    }
    assert leaf_bytes("quarantine", row) == (
        b'{"account":"agent001","id":7,"raw":"AP8=","reason":"not JSON",'
        b'"receipt_id":"0189abcd-0000-7000-8000-000000000001",'
        b'"received_at":"2026-11-02T09:00:00.272000Z","source":"quarantine"}'
    )


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=6), json_values, max_size=5))
def test_canonical_json_of_a_text_equals_the_reference(value: dict[str, Any]) -> None:
    text = json.dumps(value, ensure_ascii=False)
    assert canonical_json(text) == canonical_bytes(load_json(text))
    assert canonical_json(Parsed(text, json.loads(text))) == canonical_bytes(load_json(text))


@pytest.mark.parametrize(
    ("written", "as_postgres_gives_it_back"),
    [
        ('{"n": 1.5e300}', '{"n": 15' + "0" * 299 + "}"),
        ('{"n": 1e2}', '{"n": 100}'),
        ('{"n": 1.0}', '{"n": 1.0}'),
        ('{"n": 123456789012345678901234567890}', '{"n": 123456789012345678901234567890}'),
        ('{"n": 1E-7}', '{"n": 0.0000001}'),
        ('{"b": 1, "a": [2, {"d": 3, "c": 4}]}', '{"a": [2, {"c": 4, "d": 3}], "b": 1}'),
    ],
)
def test_the_writer_text_and_postgres_text_give_the_same_leaf(
    written: str, as_postgres_gives_it_back: str
) -> None:
    assert canonical_json(written) == canonical_json(as_postgres_gives_it_back)


settings_rows = settings(max_examples=100, deadline=None)


@settings_rows
@given(
    st.integers(min_value=1, max_value=2**62),
    st.text(min_size=1, max_size=8),
    st.one_of(st.none(), st.text(max_size=8)),
    st.dictionaries(st.text(max_size=6), json_values, max_size=4),
    st.datetimes(
        min_value=datetime(1970, 1, 1),
        max_value=datetime(2200, 1, 1),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5))]),
    ),
)
def test_the_fast_encoder_equals_the_reference(
    row_id: int, account: str, channel: str | None, payload: dict[str, Any], at: datetime
) -> None:
    text = json.dumps(payload, ensure_ascii=False)
    row = dict.fromkeys(SOURCES["event"].fields)
    row.update(
        id=row_id,
        receipt_id=uuid.uuid4(),
        received_at=at,
        kind="notification",
        account=account,
        channel=channel,
        payload=text,
    )
    reference = leaf_bytes("event", {**row, "payload": load_json(text)})
    encoder = LeafEncoder("event")
    assert encoder.encode([row[f] for f in SOURCES["event"].fields]) == reference
    # The writer's way: a row mapping, the payload with the value its parser already made.
    # orjson reads an integer beyond 64 bits as a float: the encoder must notice.
    for parsed in (json.loads(text), orjson.loads(text)):
        assert encoder.encode_row({**row, "payload": Parsed(text, parsed)}) == reference
    assert encoder.encode_careful(row) == reference
