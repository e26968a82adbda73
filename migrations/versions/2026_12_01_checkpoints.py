"""Evidence: signed checkpoints and the Merkle tree's stored tiles.

Revision ID: 2026_12_01_checkpoints
Revises: 2026_12_01_evidence
Create Date: 2026-12-01

Written by hand. Constraint names follow auditor.db.NAMING_CONVENTION. See docs/evidence.md
("Merkle tree", "Checkpoints").

- `checkpoints`: each one signs (tree_size, Merkle root over the leaf hashes of positions
  1..tree_size, chain hash at tree_size, row counts per source, time, key id) with Ed25519.
  Each is also entered into the record (source 'checkpoint'), so it is append-only.
- `record_tree`: hashes of full aligned subtrees at levels 4, 8, 12... (16, 256, 4096...
  leaves), written when a checkpoint is made, so an inclusion proof is a bounded number of
  reads. Derived data (a changed node only makes proofs fail), kept append-only all the same.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "2026_12_01_checkpoints"
down_revision: str | None = "2026_12_01_evidence"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WRITER = "auditor_writer"
API = "auditor_api"
API_READS = "record, drain_progress, checkpoints, record_tree, quarantine"
READER = "auditor_reader"
_BASE_AUDITED = ("quarantine", "coverage_intervals", "session_log", "access_log", "record")


def _audited(extra: tuple[str, ...]) -> str:
    """auditor_audited_tables() (migration 2026_12_01_evidence) with extra tables: the event
    trigger then refuses to disable their triggers or drop them."""
    names = ", ".join(f"'{name}'" for name in (*_BASE_AUDITED, *extra))
    return f"""
CREATE OR REPLACE FUNCTION auditor_audited_tables() RETURNS SETOF regclass
LANGUAGE sql STABLE AS $$
    SELECT relid::regclass FROM pg_partition_tree('events'::regclass)
    UNION ALL
    SELECT to_regclass(name) FROM unnest(ARRAY[
        {names}
    ]) AS name WHERE to_regclass(name) IS NOT NULL
$$
"""


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE checkpoints (
            id bigint GENERATED ALWAYS AS IDENTITY NOT NULL,
            tree_size bigint NOT NULL,
            root bytea NOT NULL,
            chain_head bytea NOT NULL,
            counts jsonb NOT NULL,
            made_at timestamptz NOT NULL,
            key_id text NOT NULL,
            signature bytea NOT NULL,
            CONSTRAINT pk_checkpoints PRIMARY KEY (id),
            CONSTRAINT uq_checkpoints_tree_size UNIQUE (tree_size),
            CONSTRAINT ck_checkpoints_tree_size_positive CHECK (tree_size >= 1),
            CONSTRAINT ck_checkpoints_root_sha256 CHECK (octet_length(root) = 32),
            CONSTRAINT ck_checkpoints_chain_head_sha256 CHECK (octet_length(chain_head) = 32),
            CONSTRAINT ck_checkpoints_signature_ed25519 CHECK (octet_length(signature) = 64)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE record_tree (
            level smallint NOT NULL,
            index bigint NOT NULL,
            hash bytea NOT NULL,
            CONSTRAINT pk_record_tree PRIMARY KEY (level, index),
            CONSTRAINT ck_record_tree_stored_level CHECK (level > 0 AND level % 4 = 0),
            CONSTRAINT ck_record_tree_hash_sha256 CHECK (octet_length(hash) = 32)
        )
        """
    )
    for table in ("checkpoints", "record_tree"):
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}"
            " FOR EACH ROW EXECUTE FUNCTION auditor_reject_change()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}"
            " FOR EACH STATEMENT EXECUTE FUNCTION auditor_reject_change()"
        )
        op.execute(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_append_only")
        op.execute(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_no_truncate")
    op.execute(_audited(("checkpoints", "record_tree")))
    # The worker makes checkpoints; readers (and so the API) list them and read proofs.
    op.execute(f"GRANT SELECT, INSERT ON checkpoints, record_tree TO {WRITER}")
    op.execute(f"GRANT SELECT ON checkpoints, record_tree TO {READER}")
    # The API is no member of auditor_reader (migration 2026_12_01_privileges): it reads the
    # record for /integrity, checkpoints and tiles for /checkpoints and evidence packs, and
    # drain_progress because coverage is clipped to what is stored, quarantine because
    # /integrity recomputes its rows' leaves.
    op.execute(f"GRANT SELECT ON {API_READS} TO {API}")


def downgrade() -> None:
    op.execute(f"REVOKE SELECT ON {API_READS} FROM {API}")
    op.execute(_audited(()))
    op.execute("DROP TABLE record_tree")
    op.execute("DROP TABLE checkpoints")
