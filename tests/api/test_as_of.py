"""as_of: answers as known at T. Rows a worker received during a PostgreSQL outage sit in its
spool and are stored when it drains: they were received before T but stored after it, so an
answer as of T leaves them out, shows the projection the earlier rows imply, and says the
record of that account was incomplete from the first of them on."""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest

from auditor.config import libpq_conninfo
from auditor.ingest.drain import Drainer
from auditor.ingest.spool import Row, Spool
from tests.api.conftest import Api
from tests.helpers import T0, om_message, receipt
from tests.integration.test_cli import assert_one_line_error, run


def _dead_conninfo() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"host=127.0.0.1 port={port} dbname=auditor user=nobody"


def _spooled(tmp_path: Path, rows: list[Row]) -> Spool:
    spool = Spool(tmp_path / "spool.db")
    number = spool.put_many(rows)
    deadline = datetime.now(UTC) + timedelta(seconds=10)
    while spool.committed_count < number and datetime.now(UTC) < deadline:
        time.sleep(0.01)  # the spool's writer thread commits on its own
    assert spool.committed_count >= number
    return spool


def _row(raw: str, at_ms: int) -> Row:
    made = receipt(raw, at=at_ms)
    return Row(
        str(made.receipt_id), made.received_at.isoformat(), made.account, made.channel,
        "notification", raw,
    )  # fmt: skip


@pytest.fixture
def stored_late(committed_api: Api, tmp_path: Path) -> datetime:
    """Interaction `late`: Routing stored at once; Handling (+10 s, userData Case=4711) and
    Completed (+20 s) spooled during an outage, stored after the returned time (by a
    connection of its own, committed: so on a database of its own)."""
    api = committed_api
    api.store([receipt(om_message("late", "Routing", user_data={"Case": "1"}))])
    api.cover("agent001", T0 - timedelta(hours=1), T0 + timedelta(hours=1))
    spool = _spooled(
        tmp_path,
        [
            _row(om_message("late", "Handling", user_data={"Case": "4711"}), 10_000),
            _row(om_message("late", "Completed", user_data={"Case": "4711"}), 20_000),
        ],
    )
    try:
        outage = Drainer(_dead_conninfo(), spool.reader, batch_size=100)
        with pytest.raises(psycopg.Error):
            outage.drain_once()  # PostgreSQL unreachable: the rows stay in the spool
        assert spool.depth() == 2
        with api.db() as conn:
            row = conn.execute("SELECT clock_timestamp()").fetchone()
        assert row is not None
        known_at: datetime = row[0]
        drainer = Drainer(libpq_conninfo(api.url), spool.reader, batch_size=100)
        report = drainer.drain_once()
        drainer.close()
        assert report is not None
        assert report.stored == 2
    finally:
        spool.close()
    return known_at


def _get(api: Api, path: str, **params: Any) -> Any:
    response = api.get(path, **params)
    assert response.status_code == 200, response.json
    return response.json


def test_the_timeline_as_of_t_leaves_out_rows_received_before_t_but_stored_after_it(
    committed_api: Api, stored_late: datetime
) -> None:
    api = committed_api
    now = _get(api, "/api/v1/interactions/late/timeline")
    assert [e["state"] for e in now["events"]] == ["Routing", "Handling", "Completed"]
    late = now["events"][1]
    received = datetime.fromisoformat(late["received_at"])
    stored = datetime.fromisoformat(late["stored_at"])
    assert received < stored_late < stored  # received before T, stored after it
    then = _get(api, "/api/v1/interactions/late/timeline", as_of=stored_late.isoformat())
    assert [e["state"] for e in then["events"]] == ["Routing"]
    assert then["as_of"] == stored_late.astimezone(UTC).isoformat()
    assert then["interaction"]["state"] == "Routing"
    assert then["interaction"]["event_count"] == 1
    assert then["interaction"]["completed_at"] is None
    assert now["interaction"]["state"] == "Completed"


def test_coverage_as_known_then_has_a_gap_where_rows_were_still_in_the_spool(
    committed_api: Api, stored_late: datetime
) -> None:
    api = committed_api
    now = _get(api, "/api/v1/interactions/late/timeline")
    assert now["coverage_gaps"] == []  # covered throughout its 20 s lifetime
    then = _get(api, "/api/v1/interactions/late/timeline", as_of=stored_late.isoformat())
    (gap,) = then["coverage_gaps"]
    assert gap["account"] == "agent001"
    assert datetime.fromisoformat(gap["from"]) == T0 + timedelta(seconds=10)
    assert datetime.fromisoformat(gap["to"]) == stored_late  # still open then


def test_the_projection_as_of_t_is_the_one_its_rows_stored_by_then_imply(
    committed_api: Api, stored_late: datetime
) -> None:
    api = committed_api
    as_of = stored_late.isoformat()
    then = _get(api, "/api/v1/interactions/late", as_of=as_of)
    now = _get(api, "/api/v1/interactions/late")
    assert (then["state"], then["event_count"], then["user_data"]) == ("Routing", 1, {"Case": "1"})
    assert (now["state"], now["event_count"], now["user_data"]) == (
        "Completed",
        3,
        {"Case": "4711"},
    )
    # as of a time after every row, the recomputed projection is the stored one
    assert _get(api, "/api/v1/interactions/late", as_of=datetime.now(UTC).isoformat()) == now
    too_early = api.get("/api/v1/interactions/late", as_of=(T0 - timedelta(days=1)).isoformat())
    # nothing of it was stored a day before it was received (the store did not exist yet)
    assert too_early.status_code == 404


def test_searches_as_of_t_filter_on_the_projection_and_events_of_then(
    committed_api: Api, stored_late: datetime
) -> None:
    api = committed_api
    as_of = stored_late.isoformat()

    def ids(path: str, **params: Any) -> list[str]:
        return [i["interaction_id"] for i in _get(api, path, **params)["items"]]

    assert ids("/api/v1/interactions", state="Completed") == ["late"]
    assert ids("/api/v1/interactions", state="Completed", as_of=as_of) == []
    assert ids("/api/v1/interactions", state="Routing", as_of=as_of) == ["late"]
    assert ids("/api/v1/interactions", **{"userData.Case": "4711"}) == ["late"]
    assert ids("/api/v1/interactions", as_of=as_of, **{"userData.Case": "4711"}) == []
    assert ids("/api/v1/interactions", as_of=as_of, **{"userData.Case": "1"}) == ["late"]
    assert ids("/api/v1/interactions", ever="true", **{"userData.Case": "1"}) == ["late"]
    # ever held by T: 4711 came with the rows stored late
    ever_then = {"ever": "true", "as_of": as_of}
    assert ids("/api/v1/interactions", **ever_then, **{"userData.Case": "4711"}) == []
    assert ids("/api/v1/interactions", **ever_then, **{"userData.Case": "1"}) == ["late"]
    assert len(ids("/api/v1/events", interactionId="late")) == 3
    assert len(ids("/api/v1/events", interactionId="late", as_of=as_of)) == 1
    page = _get(api, "/api/v1/events", interactionId="late", as_of=as_of, account="agent001")
    assert page["coverage"]["to"] == stored_late.astimezone(UTC).isoformat()
    assert page["coverage"]["complete"] is False  # the spool still held +10 s on


def test_the_cli_timeline_as_of_shows_what_was_stored_then(
    committed_api: Api, stored_late: datetime
) -> None:
    api = committed_api
    result = run("timeline", "late", "--as-of", stored_late.isoformat(), url=api.url)
    assert result.returncode == 0, result.stderr
    assert "as known at" in result.stdout
    assert "Routing" in result.stdout
    assert "Completed" not in result.stdout
    assert "agent001" in result.stdout.split("coverage gaps")[1]
    assert "Completed" in run("timeline", "late", url=api.url).stdout


def test_an_as_of_with_an_offset_postgresql_cannot_write_answers_every_endpoint(
    api: Api,
) -> None:
    # -20:39 is valid ISO 8601 but beyond PostgreSQL's offsets, and T goes into the statement
    # as a constant: schemathesis found /interactions answering 500
    api.store([receipt(om_message("x", "Routing"))])
    beyond = timezone(-timedelta(hours=20, minutes=39))
    as_of = datetime.now(UTC).astimezone(beyond).isoformat()
    assert as_of.endswith("-20:39")
    for path in (
        "/api/v1/interactions/x/timeline",
        "/api/v1/interactions/x",
        "/api/v1/interactions",
        "/api/v1/events",
    ):
        _get(api, path, as_of=as_of)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("yesterday", "expected"),
        ("2026-11-02T09:00:00", "offset"),
        ("tomorrow", "future"),  # made in the test: parameters must not depend on the clock
        ("0001-01-01T00:00:00+00:00", "year"),
    ],
)
def test_a_bad_as_of_is_a_400_naming_it(api: Api, value: str, reason: str) -> None:
    if value == "tomorrow":
        value = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    api.store([receipt(om_message("x", "Routing"))])
    for path in (
        "/api/v1/interactions/x/timeline",
        "/api/v1/interactions/x",
        "/api/v1/interactions",
        "/api/v1/events",
    ):
        response = api.get(path, as_of=value)
        assert response.status_code == 400, (path, response.json)
        assert response.content_type == "application/problem+json"
        (param,) = response.json["invalid_params"]
        assert param["name"] == "as_of"
        assert reason in param["reason"]
    logged = api.access_log()[-1]
    assert logged[4] == {"as_of": value}
    assert logged[5] == 400


def test_the_cli_refuses_a_future_or_malformed_as_of_in_one_line(api: Api) -> None:
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert_one_line_error(run("timeline", "x", "--as-of", future, url=api.url), "--as-of", "future")
    assert_one_line_error(run("timeline", "x", "--as-of", "noon", url=api.url), "--as-of")
