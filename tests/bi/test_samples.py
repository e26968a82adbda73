"""The sample queries of docs/bi.md, run the way BI tools connect (psycopg; SQLAlchemy with
pandas.read_sql) as a member of auditor_bi, against values computed by hand."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import pandas as pd
import psycopg
import pytest
from sqlalchemy import create_engine, pool, text
from sqlalchemy.engine import URL, Engine

from auditor.bi.samples import SAMPLE_QUERIES, by_name, for_psycopg
from tests.bi.fixture import T0, at

PARAMS = {"start": T0, "end": at(3600)}
DAY = date(2026, 11, 2)

EXPECTED: dict[str, list[tuple[Any, ...]]] = {
    # completed in the first hour: A (email, 88.25 s), C (email, 15 s), B (chat, 30 s),
    # D (chat, 10 s).
    "handle_time_by_day_and_media_type": [
        (DAY, "chat", 2, Decimal("20.000"), Decimal("30")),
        (DAY, "email", 2, Decimal("51.625"), Decimal("88.25")),
    ],
    # B is the only one with an Error.
    "error_rate_by_media_type": [
        ("chat", 2, 1, Decimal("0.5000")),
        ("email", 2, 0, Decimal("0.0000")),
    ],
    # agent001: transferred A, completed B; agent002: completed A and C; agent003: rejected B,
    # completed D.
    "transfers_per_agent": [
        ("agent001", 1, 1, 0, 2),
        ("agent002", 0, 2, 0, 2),
        ("agent003", 0, 1, 1, 2),
    ],
    "interactions_with_findings": [
        ("OM-REJECT", "chat", "Completed", False, "OPERATION_FAILED", 1),
    ],
    # A: CaseId and Priority added by agent001, Priority changed and ServiceType removed by
    # agent002; the first userData of each interaction does not count.
    "user_data_keys_changed_most_often": [
        ("Priority", 1, 1, 0, 2),
        ("CaseId", 1, 0, 0, 1),
        ("ServiceType", 0, 0, 1, 1),
    ],
}


def test_every_sample_query_has_an_expectation() -> None:
    assert {q.name for q in SAMPLE_QUERIES} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_query_over_psycopg(bi_conn: psycopg.Connection[Any], name: str) -> None:
    rows = bi_conn.execute(for_psycopg(by_name(name).sql), PARAMS).fetchall()  # type: ignore[arg-type]
    assert rows == EXPECTED[name]


@pytest.fixture(scope="module")
def bi_engine(bi_login: URL) -> Iterator[Engine]:
    engine = create_engine(bi_login, poolclass=pool.NullPool)
    yield engine
    engine.dispose()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_query_over_sqlalchemy_and_pandas(bi_engine: Engine, name: str) -> None:
    frame = pd.read_sql(text(by_name(name).sql), bi_engine, params=PARAMS)
    expected = EXPECTED[name]
    assert len(frame) == len(expected)
    for got, want in zip(frame.itertuples(index=False), expected, strict=True):
        for value, wanted in zip(got, want, strict=True):
            if isinstance(wanted, Decimal):
                assert float(value) == pytest.approx(float(wanted), abs=1e-9)
            elif isinstance(wanted, date):
                assert pd.Timestamp(value).date() == wanted
            else:
                assert value == wanted


def test_a_notebook_reads_interaction_durations_as_numbers(bi_engine: Engine) -> None:
    frame = pd.read_sql(
        text("SELECT interaction_id, handle_time_seconds, completed_at FROM bi.interactions"),
        bi_engine,
    ).set_index("interaction_id")
    assert float(frame.loc["OM-TRANSFER", "handle_time_seconds"]) == 88.25
    assert frame.loc["OM-TRANSFER", "completed_at"] == pd.Timestamp(at(100.75))
