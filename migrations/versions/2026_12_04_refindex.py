"""event_references: one B-tree that finds a referenceId's events across all partitions.

Revision ID: 2026_12_04_refindex
Revises: 2026_12_03_chainv2
Create Date: 2026-12-04

Written by hand. Constraint names follow auditor.db.NAMING_CONVENTION.

- `event_references (event_id, received_at, reference_id)`: per event with a referenceId, its
  id and partition key. `events` is partitioned by received_at and PostgreSQL has no global
  index, so a referenceId lookup without a time range probed the partial reference_id index
  of every monthly partition: at a year of data (24 partitions, a database larger than RAM)
  its p99 grew 4.1x from 5,000,000 to 20,000,000 events (docs/scale.md). The lookup now
  reads one B-tree (reference_id, event_id) INCLUDE (received_at) and joins events on
  (id, received_at): run-time pruning touches only the partition holding each event.
- A BRIN index on received_at lets a retention purge delete a dropped month's rows without
  reading the whole table (rows arrive in received order, as the events' own BRIN assumes).
- Derived data, like user_data_values: not in the record, no append-only trigger.
- ix_events_reference_id_id stays: BI users filter bi.events by reference_id, the retention
  plan's hold check and evidence packs by referenceId read events per partition through it.
- Grants: writer INSERT (it inserts from the events it just stored, no read of this table),
  reader and api SELECT, retention SELECT, DELETE (a purge deletes the dropped month's rows).
- The upgrade fills it from the stored events in one statement, before its indexes exist
  (one bulk build); partitions are read in order, so the rows lie in received order.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "2026_12_04_refindex"
down_revision: str | None = "2026_12_03_chainv2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WRITER = "auditor_writer"
READER = "auditor_reader"
API = "auditor_api"
RETENTION = "auditor_retention"

# The table comment as auditor.db declares it (the drift check compares it).
COMMENT = (
    "Where each referenceId's events are (event id and partition key): derived from"
    " events by the writer, not part of the record (docs/scale.md)"
)


def upgrade() -> None:
    op.execute(
        """CREATE TABLE event_references (
            event_id     bigint      NOT NULL,
            received_at  timestamptz NOT NULL,
            reference_id text        NOT NULL
        )"""
    )
    op.execute("COMMENT ON TABLE event_references IS '" + COMMENT.replace("'", "''") + "'")
    op.execute(
        "INSERT INTO event_references (event_id, received_at, reference_id)"
        " SELECT id, received_at, reference_id FROM events WHERE reference_id IS NOT NULL"
    )
    op.execute(
        "CREATE INDEX ix_event_references_reference_id_event_id ON event_references"
        " (reference_id, event_id) INCLUDE (received_at)"
    )
    op.execute(
        "CREATE INDEX ix_event_references_received_at ON event_references USING brin (received_at)"
    )
    op.execute("ANALYZE event_references")
    op.execute(f"GRANT INSERT ON event_references TO {WRITER}")
    op.execute(f"GRANT SELECT ON event_references TO {READER}, {API}")
    op.execute(f"GRANT SELECT, DELETE ON event_references TO {RETENTION}")


def downgrade() -> None:
    op.execute("DROP TABLE event_references")
