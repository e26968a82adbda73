"""A verifier role: auditors rerun `auditor verify` without the owner's rights.

Revision ID: 2026_12_02_verifier
Revises: 2026_12_01_checkpoints
Create Date: 2026-12-02

Written by hand. Verifying recomputes every leaf from the stored rows, so a verifier reads
every table the record covers (the access log included, which readers may not) and the
record, checkpoints and tiles themselves; it writes nothing.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "2026_12_02_verifier"
down_revision: str | None = "2026_12_01_checkpoints"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VERIFIER = "auditor_verifier"
READS = (
    "events, quarantine, coverage_intervals, access_log, record, checkpoints, record_tree,"
    " drain_progress"
)


def upgrade() -> None:
    op.execute(
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{VERIFIER}') THEN
                CREATE ROLE {VERIFIER} NOLOGIN;
            END IF;
        END
        $$
        """
    )
    op.execute(f"GRANT USAGE ON SCHEMA public TO {VERIFIER}")
    op.execute(f"GRANT SELECT ON {READS} TO {VERIFIER}")


def downgrade() -> None:
    op.execute(f"REVOKE SELECT ON {READS} FROM {VERIFIER}")
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {VERIFIER}")
    # Roles belong to the whole cluster; another database may still use this one.
    op.execute(
        f"""
        DO $$
        BEGIN
            DROP ROLE IF EXISTS {VERIFIER};
        EXCEPTION WHEN dependent_objects_still_exist THEN
            RAISE NOTICE 'role {VERIFIER} is still used elsewhere; kept';
        END
        $$
        """
    )
