"""Readers over a purged range: an evidence pack says which months were purged (and still
verifies offline), the BI views answer with what is left and list what is gone."""

from __future__ import annotations

import contextlib
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg import sql

from auditor import evidence_verify
from auditor.evidence import checkpoints, keys, pack
from auditor.retention.plan import make_plan
from auditor.retention.purge import purge_partition
from auditor.retention.settings import RetentionSettings
from auditor.store import sealer
from tests.logins import LOGINS
from tests.retention.support import NOW, store_month

Conn = psycopg.Connection[Any]


def _purge_2023_01(conn: Conn) -> None:
    plan = make_plan(conn, RetentionSettings(24), NOW)
    decision = next(d for d in plan.decisions if d.partition == "events_2023_01")
    purge_partition(conn, decision, "tester")


def test_an_evidence_pack_over_a_partly_purged_range_says_so(conn: Conn, tmp_path: Path) -> None:
    store_month(conn, 2023, 1, ["E-1", "E-2"], account="ev-agent")
    store_month(conn, 2023, 2, ["E-3"], account="ev-agent")
    conn.execute(
        "INSERT INTO coverage_intervals (account, worker_id, channels, started_at, heartbeat_at,"
        " ended_at, end_reason) VALUES ('ev-agent', 'w1', '{/v2/me/openmedia}',"
        " '2022-12-01+00', '2023-03-01+00', '2023-03-01+00', 'stopped')"
    )
    sealer.seal(conn)
    _purge_2023_01(conn)
    signer = keys.Signer(Ed25519PrivateKey.generate())
    checkpoints.make(conn, signer)
    query = pack.Query(
        account="ev-agent",
        start=datetime(2023, 1, 1, tzinfo=UTC),
        end=datetime(2023, 3, 1, tzinfo=UTC),
    )
    made = pack.export(conn, query, signer, made_by="test")
    coverage = made.manifest["coverage"]
    assert coverage["status"] == "purged"
    assert coverage["gaps"] == []
    [purged] = coverage["purged"]
    assert (purged["partition"], purged["rows"]) == ("events_2023_01", 2)
    assert made.manifest["counts"]["events"] == 1  # what is left: February
    out = tmp_path / "pack"
    made.write(out)
    public = tmp_path / "public.pem"
    public.write_text(keys.public_pem(signer.public))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = evidence_verify.main([str(out), "--public-key", str(public)])
    assert code == 0, printed.getvalue()
    assert "coverage: purged" in printed.getvalue()
    assert "purged by retention: events_2023_01" in printed.getvalue()
    assert json.loads((out / "manifest.json").read_text())["coverage"]["status"] == "purged"


def test_bi_views_answer_over_a_purged_range_and_list_what_is_gone(conn: Conn) -> None:
    store_month(conn, 2023, 1, ["B-1", "B-2"])
    store_month(conn, 2023, 2, ["B-3"])
    conn.execute("SELECT auditor_bi_refresh(NULL)")
    _purge_2023_01(conn)
    conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(LOGINS["bi"])))
    for view in (
        "events",
        "interactions",
        "agent_segments",
        "user_data_changes",
        "lifecycle_findings",
        "coverage",
        "daily_volumes",
    ):
        conn.execute(sql.SQL("SELECT count(*) FROM bi.{}").format(sql.Identifier(view)))
    events = conn.execute(
        "SELECT interaction_id FROM bi.events WHERE received_at < '2023-03-01+00' ORDER BY 1"
    ).fetchall()
    assert events == [("B-3",)]
    gone = conn.execute("SELECT partition, purged_from, events FROM bi.purged_ranges").fetchall()
    assert gone == [("events_2023_01", datetime(2023, 1, 1, tzinfo=UTC), 2)]
