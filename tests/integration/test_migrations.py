"""Migrations: up, down and up again; one head; no drift between models and database."""

from __future__ import annotations

from sqlalchemy import create_engine, inspect, pool
from sqlalchemy.engine import URL

from auditor.store import schema


def test_upgrade_downgrade_upgrade_leaves_one_head_and_no_drift(fresh_db: URL) -> None:
    engine = create_engine(fresh_db, poolclass=pool.NullPool)
    try:
        with engine.begin() as conn:
            schema.downgrade(conn, "base")
        with engine.connect() as conn:
            assert not {"events", "interactions", "quarantine"} & set(
                inspect(conn).get_table_names()
            )
        with engine.begin() as conn:
            schema.upgrade(conn)
        with engine.connect() as conn:
            report = schema.check(conn)
        assert len(report.heads) == 1
        assert report.current == report.heads
        assert report.drift == ()
        assert report.ok
    finally:
        engine.dispose()


def test_drift_check_notices_a_column_added_behind_the_migrations_back(fresh_db: URL) -> None:
    engine = create_engine(fresh_db, poolclass=pool.NullPool)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE interactions ADD COLUMN sneaky text")
        with engine.connect() as conn:
            report = schema.check(conn)
        assert not report.ok
        assert any("sneaky" in line for line in report.drift)
    finally:
        engine.dispose()


def test_partitions_are_created_ahead_and_not_twice(fresh_db: URL) -> None:
    engine = create_engine(fresh_db, poolclass=pool.NullPool)
    try:
        with engine.begin() as conn:
            first = schema.ensure_partitions_ahead(conn, months_ahead=2)
            again = schema.ensure_partitions_ahead(conn, months_ahead=2)
        assert len(first) == 3
        assert again == []
        with engine.connect() as conn:
            report = schema.check(conn)
        assert report.ok, report.drift
    finally:
        engine.dispose()
