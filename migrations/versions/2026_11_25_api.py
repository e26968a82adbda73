"""Query API: a covering index for searching one account's events over a time range.

Revision ID: 2026_11_25_api
Revises: 2026_11_25_coverage_access
Create Date: 2026-11-25

Written by hand. EXPLAIN of `account = X AND received_at in [from, to) ORDER BY id DESC
LIMIT n` on 1,000,000 events showed a bitmap heap scan reading one heap page per matching
row (the events of one account are spread over the whole table) before the top-N sort.
With id in the index, the page's ids come from an index-only scan and only the rows returned
are read from the heap.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "2026_11_25_api"
down_revision: str | None = "2026_11_25_coverage_access"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE INDEX ix_events_account_received_at_id ON events (account, received_at, id)")


def downgrade() -> None:
    op.execute("DROP INDEX ix_events_account_received_at_id")
