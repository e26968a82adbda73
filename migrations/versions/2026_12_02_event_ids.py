"""Event ids only from the identity: the writer may insert every column of events but `id`
(and `stored_at`, which PostgreSQL stamps), so neither COPY with an id column nor INSERT ...
OVERRIDING SYSTEM VALUE can choose one.

Revision ID: 2026_12_02_event_ids
Revises: 2026_12_02_fencing
Create Date: 2026-12-02

Written by hand. See docs/evidence.md ("Event ids").

Why: COPY acts as OVERRIDING SYSTEM VALUE, so GENERATED ALWAYS alone lets any role with
INSERT on events choose ids, and events' primary key is (id, received_at) because of the
monthly partitions, so a chosen id could repeat one in another month. PostgreSQL checks
column privileges on exactly the columns a COPY or INSERT names, and an identity default
needs none: so a column-level grant without `id` refuses every chosen id at no cost per
row (a trigger would have cost the writer a few microseconds per event). A column added to
events later that the writer stores needs its own `GRANT INSERT (column)`.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "2026_12_02_event_ids"
down_revision: str | None = "2026_12_02_fencing"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WRITER = "auditor_writer"
# Every column of events the writer stores (auditor.store.writer._COPY_COLUMNS).
WRITER_COLUMNS = (
    "receipt_id, received_at, kind, account, channel, message_type, notification_type,"
    " interaction_id, reference_id, media_type, openmedia_type, state, error_code,"
    " error_message, payload"
)


def upgrade() -> None:
    op.execute(f"REVOKE INSERT ON events FROM {WRITER}")
    op.execute(f"GRANT INSERT ({WRITER_COLUMNS}) ON events TO {WRITER}")


def downgrade() -> None:
    op.execute(f"REVOKE INSERT ({WRITER_COLUMNS}) ON events FROM {WRITER}")
    op.execute(f"GRANT INSERT ON events TO {WRITER}")
