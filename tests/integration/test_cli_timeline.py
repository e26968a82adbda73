"""`auditor timeline` pages: the first page and how to get the next when not on a terminal,
`--after` to continue, `--all` for every page, numbered on across pages."""

from __future__ import annotations

import psycopg
from sqlalchemy.engine import URL

from auditor.config import libpq_conninfo
from auditor.store.writer import store_batch
from tests.helpers import om_message, receipt
from tests.integration.test_cli import assert_one_line_error, run


def _seed(url: URL) -> list[int]:
    with psycopg.connect(libpq_conninfo(url)) as conn:
        store_batch(
            conn,
            [receipt(om_message("t", "Handling", user_data={"Step": n}), at=n) for n in range(5)],
        )
        conn.commit()
        return [int(r[0]) for r in conn.execute("SELECT id FROM events ORDER BY id").fetchall()]


def test_without_a_terminal_the_first_page_says_how_to_get_the_next(fresh_db: URL) -> None:
    ids = _seed(fresh_db)
    first = run("timeline", "t", "--limit", "2", url=fresh_db)
    assert first.returncode == 0, first.stderr
    assert f"--after {ids[1]}" in first.stdout
    assert "~Step: 0 → 1" in first.stdout
    assert "~Step: 1 → 2" not in first.stdout
    rest = run("timeline", "t", "--limit", "2", "--after", str(ids[1]), url=fresh_db)
    assert "~Step: 1 → 2" in rest.stdout  # the diff crosses the page boundary
    assert "coverage gaps" in first.stdout  # agent001 was never covered


def test_all_prints_every_page_numbered_on(fresh_db: URL) -> None:
    _seed(fresh_db)
    every = run("timeline", "t", "--limit", "2", "--all", url=fresh_db)
    assert every.returncode == 0, every.stderr
    assert "--after" not in every.stdout
    assert "continued from #5" in every.stdout
    assert every.stdout.count("Step") == 5


def test_a_bad_limit_is_one_line_naming_it(fresh_db: URL) -> None:
    result = run("timeline", "t", "--limit", "0", url=fresh_db)
    assert result.returncode == 2
    assert "--limit" in result.stderr
    assert_one_line_error(run("timeline", "nope", url=fresh_db), "nope")
