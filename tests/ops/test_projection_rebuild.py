"""`auditor projection check/rebuild`: the projection recomputed from the events in SQL agrees
with the writer's fold, finds what was changed by hand, and puts it right."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from sqlalchemy.engine import URL

from auditor.cli import cli
from auditor.config import libpq_conninfo
from auditor.sample import generate
from auditor.store import projection_rebuild
from auditor.store.writer import store_batch
from tests.api.conftest import Api
from tests.cli_runner import run_auditor
from tests.helpers import from_sample, om_message, receipt

AUDITOR = str(Path(sys.executable).with_name("auditor"))


def _store_sample(url: URL, batches: int = 7) -> None:
    lines = [from_sample(line) for line in generate(interactions=60, extra_updates=2)]
    # Odd cases the SQL must fold as the writer does: empty strings, no capabilities list,
    # no interaction id, an event without userData after one with it.
    odd = [
        receipt(om_message("odd-1", "Invited", user_data={"a": 1}), at=1),
        receipt(
            json.dumps({"data": {"openmedia": {"id": "odd-1", "mediaType": "", "uri": ""}}}),
            account="agent002",
            at=2,
        ),
        receipt(json.dumps({"openmedia": {"id": "odd-2", "state": "", "capabilities": "x"}}), at=3),
        receipt(json.dumps({"data": {"messageType": "Ping"}}), at=4),
    ]
    everything = lines + odd
    size = len(everything) // batches + 1
    with psycopg.connect(libpq_conninfo(url)) as conn:
        for n in range(0, len(everything), size):
            store_batch(conn, everything[n : n + size])
            conn.commit()


def test_check_by_partition_and_by_id_range_agree_over_months_and_the_default_partition(
    fresh_db: URL,
) -> None:
    """Interactions whose events lie in three monthly partitions and in the default one (a
    month without a partition): folded partition by partition, in pieces, and in id ranges
    over the whole table, both give the writer's projection."""
    lines = [from_sample(line) for line in generate(interactions=40, extra_updates=2)]
    months = [datetime(2026, m, 3, tzinfo=UTC) for m in (8, 9, 10)]
    default = datetime(2020, 5, 3, tzinfo=UTC)  # no partition: stored in events_default
    spread = [
        dataclasses.replace(
            r,
            received_at=(default if n % 7 == 0 else months[n % 3]) + timedelta(seconds=n),
        )
        for n, r in enumerate(lines)
    ]
    with psycopg.connect(libpq_conninfo(fresh_db)) as conn:
        for month in months:
            conn.execute("SELECT auditor_ensure_event_partition(%s)", (month.date(),))
        # As the writer of a month nobody made a partition for (a fresh database of its own).
        conn.execute(
            "CREATE OR REPLACE FUNCTION auditor_ensure_event_partition(p_month date)"
            " RETURNS boolean LANGUAGE sql AS 'SELECT false'"
        )
        for n in range(0, len(spread), 50):
            store_batch(conn, spread[n : n + 50])
        conn.commit()
        in_default = conn.execute("SELECT count(*) FROM events_default").fetchone()
        assert in_default is not None
        assert in_default[0] > 10
        found = projection_rebuild.slices(conn)
        conn.rollback()
    assert [p.name for p in found] == [
        "events_2026_08",
        "events_2026_09",
        "events_2026_10",
        "outside the monthly partitions",
    ]
    assert found[-1].rows == in_default[0]
    assert sum(p.rows for p in found) == len(spread)
    with psycopg.connect(libpq_conninfo(fresh_db)) as conn:
        for by_partition in (True, False):
            report = projection_rebuild.check(conn, chunk=37, by_partition=by_partition)
            conn.rollback()
            assert report.events == len(spread), by_partition
            assert report.interactions >= 40
            assert report.differences == [], by_partition


def _check(url: URL) -> projection_rebuild.Report:
    with psycopg.connect(libpq_conninfo(url)) as conn:
        report = projection_rebuild.check(conn, chunk=97)
        conn.rollback()
    return report


def test_the_projection_rebuilt_in_sql_equals_the_writers_fold(
    fresh_db: URL, login_url: Callable[[URL, str], URL]
) -> None:
    _store_sample(fresh_db)
    report = _check(login_url(fresh_db, "reader"))
    assert report.interactions > 60
    assert report.events > 300
    assert report.differences == []


def _corrupt(url: URL, sql: str, *params: Any) -> None:
    with psycopg.connect(libpq_conninfo(url), autocommit=True) as conn:
        conn.execute(sql, params)


def test_check_finds_a_corrupted_row_and_rebuild_fixes_it_for_the_api(
    committed_api: Api, login_url: Callable[[URL, str], URL]
) -> None:
    # A database of its own: the sample is committed (the rebuild reads it from other
    # connections), and the session's database must stay empty for the tests after this one.
    api = committed_api
    _store_sample(api.url)
    victim = api.get("/api/v1/interactions", limit=1).get_json()["items"][0]["interaction_id"]
    before = api.get(f"/api/v1/interactions/{victim}").get_json()
    # As the superuser that owns the tables: what a bad hand edit or a bug would leave.
    _corrupt(
        api.url,
        'UPDATE interactions SET account_states = \'{"x": {"state": "Bogus",'
        ' "event_id": 1, "at": "2026-01-01T00:00:00+00:00"}}\', event_count = 1'
        " WHERE interaction_id = %s",
        victim,
    )
    _corrupt(
        api.url,
        "INSERT INTO interactions (interaction_id, first_seen_at, last_seen_at,"
        " first_event_id, last_event_id, event_count) VALUES ('ghost', now(), now(), 1, 1, 1)",
    )
    _corrupt(api.url, "DELETE FROM interactions WHERE interaction_id = 'odd-2'")
    assert api.get(f"/api/v1/interactions/{victim}").get_json()["state"] == "Bogus"

    found = {d.interaction_id: d for d in _check(login_url(api.url, "reader")).differences}
    assert set(found) == {victim, "ghost", "odd-2"}
    assert found[victim].kind == "differs"
    assert {"account_states", "event_count", "state"} <= set(found[victim].columns)
    assert found["ghost"].kind == "unbacked"
    assert found["odd-2"].kind == "missing"

    result = CliRunner().invoke(
        cli,
        ["projection", "rebuild"],
        env={"AUDITOR_DATABASE_URL": login_url(api.url, "writer").render_as_string(False)},
    )
    assert result.exit_code == 0, result.output
    assert "3 differences" in result.output
    assert "corrected 2, removed 1" in result.output

    assert _check(api.url).differences == []
    after = api.get(f"/api/v1/interactions/{victim}").get_json()
    assert after == before
    assert api.get("/api/v1/interactions/ghost").status_code == 404


def test_rebuild_folds_events_stored_after_its_snapshot(fresh_db: URL) -> None:
    _store_sample(fresh_db, batches=2)
    _corrupt(fresh_db, "UPDATE interactions SET uri = 'wrong' WHERE interaction_id = 'odd-1'")
    with psycopg.connect(libpq_conninfo(fresh_db)) as conn:
        report = projection_rebuild.check(conn)
        assert [d.interaction_id for d in report.differences] == ["odd-1"]
        conn.rollback()

    # The writer stores more events between the build and the apply: the apply folds them.
    done: list[int] = []

    def store_more(_done: int, _total: int) -> None:
        if done:
            return
        done.append(1)
        with psycopg.connect(libpq_conninfo(fresh_db)) as other:
            store_batch(other, [receipt(om_message("odd-1", "Processing"), at=50)])
            store_batch(other, [receipt(om_message("late-1", "Invited"), at=51)])
            other.commit()

    with psycopg.connect(libpq_conninfo(fresh_db)) as conn:
        report = projection_rebuild.rebuild(conn, store_more)
    assert report.fixed == 1
    assert _check(fresh_db).differences == []
    with psycopg.connect(libpq_conninfo(fresh_db)) as conn:
        row = conn.execute(
            "SELECT state, uri FROM interactions WHERE interaction_id = 'odd-1'"
        ).fetchone()
    assert row == ("Processing", None)


@pytest.mark.parametrize(("role", "command"), [("bi", "check"), ("reader", "rebuild")])
def test_a_login_without_the_rights_gets_one_line_and_exit_2(
    fresh_db: URL, login_url: Callable[[URL, str], URL], role: str, command: str
) -> None:
    _store_sample(fresh_db, batches=1)
    _corrupt(fresh_db, "UPDATE interactions SET uri = 'wrong' WHERE interaction_id = 'odd-1'")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITOR_")}
    env["AUDITOR_DATABASE_URL"] = login_url(fresh_db, role).render_as_string(False)
    result = run_auditor(["projection", command], env=env, timeout=60)
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "AUDITOR_DATABASE_URL" in last
    assert "Traceback" not in result.stderr
