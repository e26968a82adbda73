"""Schema management: migrations to head, the drift check, partitions ahead of time."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from auditor.db import metadata

# In a checkout auditor/migrations is a symlink to the top-level migrations/ folder; in an
# installed wheel it is a copy (package data), so `auditor db upgrade` works outside a checkout.
MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"
_PARTITION = re.compile(r"^events_(default|\d{4}_\d{2})$")
# Expression indexes whose expression PostgreSQL prints back differently from how it was
# written (casts, parentheses): alembic cannot compare them, so their mirror in auditor.db is
# for the reader, and tests/integration/test_user_data_filters.py proves the index is used.
_EXPRESSION_INDEXES = frozenset({"ix_events_user_data"})


def include_in_drift_check(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Partitions are made at run time, not by migrations: they are not drift."""
    if type_ == "index" and name in _EXPRESSION_INDEXES:
        return False
    return not (type_ == "table" and name is not None and _PARTITION.match(name))


def alembic_config(connection: Connection | None = None) -> Config:
    # Built here rather than read from alembic.ini, which a wheel does not ship; the ini stays
    # for developers running `alembic revision` in a checkout.
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(connection: Connection, revision: str = "head") -> None:
    command.upgrade(alembic_config(connection), revision)


def downgrade(connection: Connection, revision: str) -> None:
    command.downgrade(alembic_config(connection), revision)


@dataclass(frozen=True)
class SchemaReport:
    heads: tuple[str, ...]
    current: tuple[str, ...]
    drift: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return len(self.heads) == 1 and self.current == self.heads and not self.drift


def check(connection: Connection) -> SchemaReport:
    """One head, the database at it, and no difference between metadata and database."""
    heads = tuple(ScriptDirectory.from_config(alembic_config()).get_heads())
    context = MigrationContext.configure(
        connection,
        opts={
            "include_object": include_in_drift_check,
            "compare_type": True,
            "compare_server_default": True,
        },
    )
    current = tuple(context.get_current_heads())
    drift = tuple(str(diff) for diff in compare_metadata(context, metadata))
    return SchemaReport(heads=heads, current=current, drift=drift)


def ensure_partitions_ahead(connection: Connection, months_ahead: int = 3) -> list[str]:
    """Create this month's partition and the next ones; returns those created."""
    today = datetime.now(UTC).date()
    created = []
    for offset in range(months_ahead + 1):
        year, month = divmod(today.month - 1 + offset, 12)
        first = date(today.year + year, month + 1, 1)
        made = connection.exec_driver_sql(
            "SELECT auditor_ensure_event_partition(%(m)s)", {"m": first}
        ).scalar()
        if made:
            created.append(f"events_{first:%Y_%m}")
    return created


def current_revisions(conn: psycopg.Connection[Any]) -> tuple[str, ...]:
    """The migration revision(s) the database is at, sorted (raises when not migrated)."""
    with conn.cursor() as cur:
        cur.execute("SELECT version_num FROM alembic_version")
        return tuple(sorted(str(row[0]) for row in cur.fetchall()))
