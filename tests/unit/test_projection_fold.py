"""The projection's fold in Python (auditor/store/projection.py): the text of its times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from auditor.store.projection import _iso

offsets = st.integers(min_value=-23 * 60, max_value=23 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=offsets)
)
def test_a_time_is_written_as_utc_with_six_digits_of_microseconds(at: datetime) -> None:
    assert _iso(at) == at.astimezone(UTC).isoformat(timespec="microseconds")
    assert len(_iso(at)) == len("2026-12-02T10:00:00.000000+00:00")
