"""`auditor bi docs` as a user runs it: real process, real database, one-line errors."""

from __future__ import annotations

from pathlib import Path

import psycopg
from sqlalchemy.engine import URL

from auditor.config import libpq_conninfo
from auditor.store.writer import store_batch
from tests.bi import fixture
from tests.integration.test_cli import assert_one_line_error, run

DOCS = Path(__file__).resolve().parents[2] / "docs" / "bi.md"


def test_docs_written_from_the_database_equal_the_checked_in_file(
    session_db: URL, tmp_path: Path
) -> None:
    out = tmp_path / "bi.md"
    result = run("bi", "docs", "--output", str(out), url=session_db)
    assert result.returncode == 0, result.stderr
    assert out.read_text(encoding="utf-8") == DOCS.read_text(encoding="utf-8")
    assert run("bi", "docs", "--output", str(out), "--check", url=session_db).returncode == 0


def test_check_fails_on_a_stale_file(session_db: URL, tmp_path: Path) -> None:
    stale = tmp_path / "bi.md"
    stale.write_text("# BI views\n", encoding="utf-8")
    result = run("bi", "docs", "--output", str(stale), "--check", url=session_db)
    assert result.returncode == 1
    assert "stale" in result.stderr


def test_bad_settings_and_paths_are_one_line(session_db: URL, tmp_path: Path) -> None:
    assert_one_line_error(run("bi", "docs"), "AUDITOR_DATABASE_URL")
    missing = tmp_path / "nowhere" / "bi.md"
    assert_one_line_error(
        run("bi", "docs", "--output", str(missing), url=session_db), "cannot write"
    )


def test_refresh_brings_the_summaries_up_to_date(fresh_db: URL) -> None:
    with psycopg.connect(libpq_conninfo(fresh_db)) as conn:
        store_batch(conn, fixture.receipts())
    first = run("bi", "refresh", "--batch", "10", url=fresh_db)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith(f"refreshed {len(fixture.receipts())} events")
    again = run("bi", "refresh", url=fresh_db)
    assert again.stdout.startswith("refreshed 0 events")
