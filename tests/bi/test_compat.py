"""Released views never change: bi_v1 is pinned by tests/bi/bi_v1.json. A change belongs in
a new schema bi_v2 beside it (docs/bi.md), with its own spec."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors

from auditor.bi import catalog
from auditor.bi.docs import render

SPEC = Path(__file__).with_name("bi_v1.json")
DOCS = Path(__file__).resolve().parents[2] / "docs" / "bi.md"
Conn = psycopg.Connection[Any]


def test_bi_v1_views_columns_and_types_match_the_released_spec(conn: Conn) -> None:
    released = json.loads(SPEC.read_text(encoding="utf-8"))
    assert released["version"] == "bi_v1"
    assert catalog.spec(conn, "bi_v1") == released["views"]


def test_bi_names_the_current_version_column_for_column(conn: Conn) -> None:
    assert catalog.spec(conn, "bi") == catalog.spec(conn, catalog.CURRENT_VERSION)


def test_a_changed_view_fails_the_pin(conn: Conn) -> None:
    conn.execute("DROP VIEW bi.daily_volumes")
    conn.execute("DROP VIEW bi_v1.daily_volumes")
    conn.execute("CREATE VIEW bi_v1.daily_volumes AS SELECT current_date AS day, 1 AS events")
    released = json.loads(SPEC.read_text(encoding="utf-8"))
    assert catalog.spec(conn, "bi_v1") != released["views"]


@pytest.mark.parametrize("schema", ["bi", "bi_v1"])
def test_every_view_and_column_has_a_comment(conn: Conn, schema: str) -> None:
    views = catalog.views(conn, schema)
    assert views
    for view in views:
        assert view.comment, view.name
        for column in view.columns:
            assert column.comment, f"{schema}.{view.name}.{column.name}"


def test_docs_bi_md_is_rendered_from_the_current_catalog(conn: Conn) -> None:
    assert DOCS.read_text(encoding="utf-8") == render(conn), (
        "docs/bi.md is stale: run `auditor bi docs` against a freshly migrated database"
    )


def test_changing_the_user_data_setting_rebuilds_events_and_keeps_the_fixed_columns(
    conn: Conn,
) -> None:
    before = catalog.spec(conn, "bi")["events"]
    conn.execute("DELETE FROM bi_user_data_columns WHERE column_name = 'priority'")
    conn.execute("INSERT INTO bi_user_data_columns VALUES ('order_id', 'OrderId', 9)")
    after = catalog.spec(conn, "bi")["events"]
    fixed = [c for c in before if not c[0].startswith("ud_")]
    assert [c for c in after if not c[0].startswith("ud_")] == fixed
    assert ["ud_priority", "text"] not in after
    assert after[-1] == ["ud_order_id", "text"]
    assert catalog.spec(conn, "bi_v1")["events"] == after
    comment = {v.name: v for v in catalog.views(conn, "bi")}["events"].columns[-1].comment
    assert comment is not None
    assert "OrderId" in comment


def test_a_bad_column_name_in_the_setting_is_refused(conn: Conn) -> None:
    with pytest.raises(errors.CheckViolation), conn.transaction():
        conn.execute("INSERT INTO bi_user_data_columns VALUES ('Bad Name', 'X', 1)")
