"""The pages' pure parts: chart geometry, where gaps fall in a timeline, the worker's metrics,
reading form values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auditor.store.coverage_queries import Gap
from auditor.store.timeline import TimelineEntry
from web.pages import charts, timeline_view, worker_status
from web.pages.forms import form_values

T = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def _entry(event_id: int, seconds: int, **kw: object) -> TimelineEntry:
    fields: dict[str, object] = {
        "event_id": event_id,
        "received_at": T + timedelta(seconds=seconds),
        "stored_at": T + timedelta(seconds=seconds),
        "account": "a1",
        "kind": "notification",
        "channel": None,
        "message_type": None,
        "notification_type": "StatusChange",
        "state": None,
        "reference_id": None,
        "capabilities": None,
        "user_data": None,
        "user_data_diff": None,
        "error_code": None,
        "error_message": None,
        "payload_text": "{}",
    }
    fields.update(kw)
    return TimelineEntry(**fields)  # type: ignore[arg-type]


def test_coverage_chart_places_spans_in_proportion_to_time() -> None:
    end = T + timedelta(hours=1)
    chart = charts.coverage_chart(
        T, end, [("a1", [(T, T + timedelta(minutes=30))], [(T + timedelta(minutes=30), end)])]
    )
    connected, gap = chart.rects
    usable = charts.WIDTH - charts.RIGHT - charts.LABEL_WIDTH
    assert connected.x == charts.LABEL_WIDTH
    assert connected.width == pytest.approx(usable / 2)
    assert gap.x == pytest.approx(charts.LABEL_WIDTH + usable / 2)
    assert gap.color == charts.GAP
    assert "gap" in gap.label
    assert [t.anchor for t in (chart.ticks[0], chart.ticks[-1])] == ["start", "end"]


def test_stacked_bars_scale_to_the_busiest_bucket_and_stack_series() -> None:
    hour = timedelta(hours=1)
    buckets = [T, T + hour]
    chart = charts.stacked_bars(
        buckets, hour, T + 2 * hour, {T: {"email": 2, "workitem": 2}, T + hour: {"email": 1}}
    )
    first = [r for r in chart.rects if r.x < chart.rects[-1].x]
    assert sum(r.height for r in first) == pytest.approx(chart.baseline - 10)
    assert chart.legend[0][1] == "email (3)"  # the most frequent series first


def test_gaps_are_drawn_before_the_first_event_after_their_start_and_only_in_their_page() -> None:
    entries = [_entry(1, 0), _entry(2, 10), _entry(3, 100)]
    gaps = [
        Gap("a1", T + timedelta(seconds=50), T + timedelta(seconds=90)),
        Gap("a1", T + timedelta(seconds=500), T + timedelta(seconds=600)),
    ]
    drawn = timeline_view.rows(entries, gaps, window_start=T, window_end=None, findings={})
    kinds = ["gap" if r.gap else r.entry.event_id for r in drawn if r.gap or r.entry]
    assert kinds == [1, 2, "gap", 3, "gap"]
    # a page that ends at event 3 (more follow) leaves the later gap to the next page
    page = timeline_view.rows(
        entries, gaps, window_start=T, window_end=T + timedelta(seconds=100), findings={}
    )
    assert sum(1 for r in page if r.gap) == 1


def test_state_changes_are_per_account_and_errors_point_at_their_operation() -> None:
    entries = [
        _entry(1, 0, state="Routing", reference_id="7"),
        _entry(2, 1, state="Routing", account="a2"),
        _entry(3, 2, state="Handling"),
        _entry(4, 3, state="Handling", reference_id="7", notification_type="Error", error_code="1"),
    ]
    drawn = timeline_view.rows(entries, [], window_start=T, window_end=None, findings={})
    assert [r.previous_state for r in drawn] == [None, None, "Routing", "Handling"]
    assert drawn[3].operation_id == 1


def test_worker_status_reads_the_workers_metrics(metrics_url: str) -> None:
    status = worker_status.read(metrics_url)
    assert status.reachable
    assert ("Spool depth (rows waiting)", 12.0) in status.values
    assert ("Subscribed sessions", 8.0) in status.values


def test_an_unreachable_worker_is_said_so() -> None:
    status = worker_status.read("http://127.0.0.1:9/metrics")
    assert not status.reachable
    assert status.error


def test_a_datetime_local_value_is_read_as_utc_and_empty_fields_are_dropped() -> None:
    found = form_values(
        {"from": "2026-11-02T09:00", "to": "", "state": " Handling "}, ("from", "to", "state")
    )
    assert found == {"from": "2026-11-02T09:00+00:00", "state": "Handling"}


@given(st.dictionaries(st.sampled_from(["from", "to", "as_of", "state"]), st.text(max_size=40)))
def test_form_values_never_raise_and_keep_only_filled_in_fields(args: dict[str, str]) -> None:
    found = form_values(args, ("from", "to", "as_of", "state"))
    assert all(v and v == v.strip() for v in found.values())
    assert set(found) <= {k for k, v in args.items() if v.strip()}
