"""User-data search and "as known at" answers: GIN indexes on userData, BRIN on stored_at.

Revision ID: 2026_12_02_userdata_index
Revises: 2026_12_02_ops
Create Date: 2026-12-02

Written by hand. Exact user-data filters are containment queries (`@>`): jsonb_path_ops GIN
indexes hold one entry per key/value path and answer them; on events the index is on the
openmedia resource's userData expression (auditor.store.userdata.EVENT_USER_DATA_SQL, which a
query must repeat verbatim for PostgreSQL to use it), on interactions on the current
user_data. as_of answers find the rows stored after T through a BRIN index on stored_at
(stored in commit order, so block ranges are tight and the index stays tiny).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "2026_12_02_userdata_index"
down_revision: str | None = "2026_12_02_ops"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of auditor.store.userdata.EVENT_USER_DATA_SQL as of this revision.
EVENT_USER_DATA = (
    "((CASE WHEN jsonb_typeof(payload->'data') = 'object' THEN payload->'data'"
    " WHEN NOT payload ? 'data'"
    " AND payload ?| ARRAY['messageType', 'notificationType', 'openmedia', 'referenceId']"
    " THEN payload END)->'openmedia'->'userData')"
)


def upgrade() -> None:
    op.execute(
        f"CREATE INDEX ix_events_user_data ON events USING gin (({EVENT_USER_DATA}) jsonb_path_ops)"
    )
    op.execute(
        "CREATE INDEX ix_interactions_user_data ON interactions"
        " USING gin (user_data jsonb_path_ops)"
    )
    op.execute("CREATE INDEX ix_events_stored_at ON events USING brin (stored_at)")


def downgrade() -> None:
    op.execute("DROP INDEX ix_events_stored_at")
    op.execute("DROP INDEX ix_interactions_user_data")
    op.execute("DROP INDEX ix_events_user_data")
