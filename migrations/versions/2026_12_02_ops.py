"""Operations: the projection's rebuild may remove rows that no stored event supports.

Revision ID: 2026_12_02_ops
Revises: 2026_12_02_verifier
Create Date: 2026-12-02

Written by hand. `auditor projection rebuild` runs as the writer's login, which may insert and
update the projection but not delete from it. A row of the projection that no event supports
(only a hand edit makes one) is removed through this SECURITY DEFINER function, which checks
that no stored event has that interaction id: it cannot remove anything the record backs.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "2026_12_02_ops"
down_revision: str | None = "2026_12_02_verifier"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WRITER = "auditor_writer"


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION auditor_projection_remove_unbacked(p_ids text[]) RETURNS integer
        LANGUAGE sql SECURITY DEFINER SET search_path FROM CURRENT AS $$
            WITH gone AS (
                DELETE FROM interactions AS i
                WHERE i.interaction_id = ANY(p_ids)
                  AND NOT EXISTS (SELECT 1 FROM events AS e
                                  WHERE e.interaction_id = i.interaction_id)
                RETURNING 1)
            SELECT count(*)::integer FROM gone
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION auditor_projection_remove_unbacked(text[]) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION auditor_projection_remove_unbacked(text[]) TO {WRITER}")


def downgrade() -> None:
    op.execute("DROP FUNCTION auditor_projection_remove_unbacked(text[])")
