"""The projection's fold in Python (auditor/store/projection.py), without a database."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from auditor.notifications import Record, parse
from auditor.store.projection import Fold, _iso
from auditor.store.receipts import Receipt

offsets = st.integers(min_value=-23 * 60, max_value=23 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=offsets)
)
def test_a_time_is_written_as_utc_with_six_digits_of_microseconds(at: datetime) -> None:
    assert _iso(at) == at.astimezone(UTC).isoformat(timespec="microseconds")
    assert len(_iso(at)) == len("2026-12-02T10:00:00.000000+00:00")


def _event(event_id: int, at: datetime, account: str, **openmedia: Any) -> tuple[Any, ...]:
    message = {"data": {"notificationType": "StatusChange", "openmedia": {"id": "I1", **openmedia}}}
    record = parse(json.dumps(message))
    assert isinstance(record, Record)
    receipt = Receipt(uuid.uuid4(), at, account, "/v2/me/openmedia", json.dumps(message))
    return event_id, receipt, record


def test_the_fold_keeps_the_earliest_and_latest_time_whatever_order_they_arrive_in() -> None:
    t = datetime(2026, 12, 2, 10, 0, 0, 250_000, tzinfo=UTC)
    events = [
        _event(1, t, "a", state="Invited", mediaType="email"),
        _event(2, t - timedelta(seconds=5), "b", state="Processing", mediaType=""),
        _event(3, t + timedelta(seconds=5), "a", uri="http://x/I1"),
        _event(4, t - timedelta(seconds=9), "b"),
    ]
    (row,) = Fold(events).rows()
    assert row["first_seen_at"] == t - timedelta(seconds=9)
    assert row["last_seen_at"] == t + timedelta(seconds=5)
    # an empty or absent field keeps the value before it; states per account, their times as text
    assert (row["media_type"], row["uri"], row["event_count"]) == ("email", "http://x/I1", 4)
    assert row["accounts"] == ["a", "b"]
    assert row["account_states"]["a"]["at"] == "2026-12-02T10:00:00.250000+00:00"
    assert row["account_states"]["b"]["state"] == "Processing"
    assert (row["first_event_id"], row["last_event_id"]) == (1, 4)
