"""Operations: what retention's dropped months contributed to the projection.

Revision ID: 2026_12_03_ops
Revises: 2026_12_02_writerload
Create Date: 2026-12-03

Written by hand. Constraint names follow auditor.db.NAMING_CONVENTION.

`interactions` is the fold of every event ever stored. When retention drops a month, the
projection rows of interactions with events left keep what the dropped events contributed
(their first event, their count, a userData only a dropped event carried), and nothing can
recompute that afterwards. `projection_baseline` keeps it: per interaction with events left,
the fold of its dropped events (the same columns and merge rules as `interactions`), written
by the purge in the transaction that drops the partition. `auditor projection check` and
`rebuild` start from it, so they report no false differences after a purge and a rebuild
gives the projection the writer kept (docs/retention.md, docs/scale.md).

Derived data like the projection, not part of the record: the retention role writes it (and
forgets an interaction's row with its projection row); the services read it.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "2026_12_03_ops"
down_revision: str | None = "2026_12_02_writerload"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RETENTION = "auditor_retention"
READERS = ("auditor_writer", "auditor_reader", "auditor_api")


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE projection_baseline (
            interaction_id text NOT NULL,
            media_type text,
            openmedia_type text,
            uri text,
            user_data jsonb,
            user_data_event_id bigint,
            account_states jsonb DEFAULT '{}'::jsonb NOT NULL,
            accounts text[] DEFAULT '{}'::text[] NOT NULL,
            first_seen_at timestamptz NOT NULL,
            last_seen_at timestamptz NOT NULL,
            first_event_id bigint NOT NULL,
            last_event_id bigint NOT NULL,
            event_count bigint NOT NULL,
            last_notification_type text,
            last_reference_id text,
            purge_id bigint NOT NULL,
            CONSTRAINT pk_projection_baseline PRIMARY KEY (interaction_id)
        )
        """
    )
    op.execute(
        "COMMENT ON TABLE projection_baseline IS 'Per interaction with events left, the fold"
        " of its events that retention dropped (docs/retention.md); purge_id: the last purge"
        " receipt that added to it'"
    )
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON projection_baseline TO {RETENTION}")
    for role in READERS:
        op.execute(f"GRANT SELECT ON projection_baseline TO {role}")


def downgrade() -> None:
    op.execute("DROP TABLE projection_baseline")
