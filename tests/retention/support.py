"""Builders for the retention tests: events in chosen months, stored by the real writer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg

from auditor.retention.plan import make_plan
from auditor.retention.purge import RunResult, apply
from auditor.retention.settings import RetentionSettings
from auditor.store.receipts import Receipt, new_receipt_id
from auditor.store.writer import store_batch
from tests.helpers import om_message

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def store_month(
    conn: psycopg.Connection[Any],
    year: int,
    month: int,
    interactions: list[str],
    *,
    account: str = "agent001",
    media_type: str = "email",
) -> None:
    """One event per interaction, received on the 10th of the month, its userData naming it."""
    at = datetime(year, month, 10, 9, 0, tzinfo=UTC)
    store_batch(
        conn,
        [
            Receipt(
                new_receipt_id(),
                at.replace(minute=i % 60),
                account,
                "/v2/me/openmedia",
                om_message(
                    interaction, "Invited", media_type=media_type, user_data={"Case": interaction}
                ),
            )
            for i, interaction in enumerate(interactions)
        ],
    )


def run(
    conn: psycopg.Connection[Any], months: int, *, dry_run: bool = False, **by_media: int
) -> RunResult:
    plan = make_plan(conn, RetentionSettings(months, by_media), NOW)
    return apply(conn, plan, "tester", dry_run=dry_run)


def partitions(conn: psycopg.Connection[Any]) -> list[str]:
    return [
        str(r[0])
        for r in conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'events'::regclass ORDER BY 1"
        ).fetchall()
    ]
