"""The receive loop's received_at text is exactly what datetime.isoformat wrote before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from auditor.ingest.source import stamp, stamp_at

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@given(st.integers(min_value=0, max_value=(2**31) * 10**6 * 2))
def test_stamp_at_writes_what_isoformat_with_microseconds_writes(micros: int) -> None:
    at = EPOCH + timedelta(microseconds=micros)
    assert stamp_at(micros) == at.isoformat(timespec="microseconds")


def test_a_whole_second_keeps_its_six_zeros_and_the_next_second_is_formatted_anew() -> None:
    assert stamp_at(1_700_000_000_000_000) == "2023-11-14T22:13:20.000000+00:00"
    assert stamp_at(1_700_000_000_999_999) == "2023-11-14T22:13:20.999999+00:00"
    assert stamp_at(1_700_000_001_000_000) == "2023-11-14T22:13:21.000000+00:00"
    assert stamp_at(1_700_000_000_000_001) == "2023-11-14T22:13:20.000001+00:00"


def test_stamp_is_now() -> None:
    before = datetime.now(UTC)
    stamped = datetime.fromisoformat(stamp())
    after = datetime.now(UTC)
    assert before - timedelta(milliseconds=1) <= stamped <= after + timedelta(milliseconds=1)
