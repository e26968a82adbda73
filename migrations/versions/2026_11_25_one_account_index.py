"""Drop ix_events_account_received_at: ix_events_account_received_at_id serves every query it did.

Revision ID: 2026_11_25_one_account_index
Revises: 2026_11_25_api
Create Date: 2026-11-25

Written by hand. The API's (account, received_at, id) has (account, received_at) as its
prefix, so the storage core's index only cost a second index write per event:
bench/store.py measured it (see docs/storage.md).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "2026_11_25_one_account_index"
down_revision: str | None = "2026_11_25_api"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("DROP INDEX ix_events_account_received_at")


def downgrade() -> None:
    op.execute("CREATE INDEX ix_events_account_received_at ON events (account, received_at)")
