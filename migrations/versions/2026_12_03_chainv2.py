"""Record format 2: one record row per committed writer batch of events.

Revision ID: 2026_12_03_chainv2
Revises: 2026_12_02_writerload
Create Date: 2026-12-03

Written by hand. Constraint names follow auditor.db.NAMING_CONVENTION.

- `record.format` (smallint, default 1): every row sealed before stays format 1 unchanged.
  A format-2 row (source `batch`) stands for the events with ids `source_id` ..
  `source_id + leaf_count - 1` (contiguous: the writer takes them from the identity under
  its lock); `leaves` holds their leaf hashes concatenated in id order (32 bytes each) and
  its `leaf_hash` is SHA-256(0x02 || RFC 6962 root over those leaf hashes)
  (docs/evidence.md, "Record format 2"). A CHECK ties the columns to the format.
- `leaves` is stored EXTERNAL (hashes do not compress): a reader that wants one event's slot
  (`substring`) fetches only the TOAST chunk that holds it.
- auditor_purge_event_partition() counts a partition's events sealed in batch rows too (a
  batch never spans two months: the writer starts a new one at a month boundary).
- No grant changes: the writer, the sealer and retention already INSERT whole record rows.
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = "2026_12_03_chainv2"
down_revision: str | None = "2026_12_03_ops"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SOURCES_BEFORE = (
    "'event', 'quarantine', 'coverage', 'access', 'checkpoint', 'hold', 'purge', 'release'"
)
_SOURCES = _SOURCES_BEFORE + ", 'batch'"

_SEALED_BEFORE = (
    "'SELECT count(*), coalesce(range_agg(int8range(c.position, c.position + 1))::text, ''{}'')'\n"
    "        ' FROM record AS c WHERE c.source = ''event'' AND c.source_id IN (SELECT id FROM %s)',"
)
# A batch row counts its events; its first id lies in the partition. A batch reaching into
# another month would make the sum differ from the partition's row count: refused.
_SEALED = (
    "'SELECT coalesce(sum(coalesce(c.leaf_count, 1)), 0),'\n"
    "        ' coalesce(range_agg(int8range(c.position, c.position + 1))::text, ''{}'')'\n"
    "        ' FROM record AS c WHERE c.source IN (''event'', ''batch'')'\n"
    "        ' AND c.source_id IN (SELECT id FROM %s)',"
)


def _purge_function() -> str:
    """auditor_purge_event_partition as migration 2026_12_02_retention created it."""
    path = Path(__file__).with_name("2026_12_02_retention.py")
    spec = importlib.util.spec_from_file_location("_retention_migration", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = str(module._PURGE)
    if _SEALED_BEFORE not in text:
        raise RuntimeError("auditor_purge_event_partition is not the one this migration edits")
    return text.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)


def upgrade() -> None:
    op.execute("ALTER TABLE record ADD COLUMN format smallint NOT NULL DEFAULT 1")
    op.execute("ALTER TABLE record ADD COLUMN leaf_count integer")
    op.execute("ALTER TABLE record ADD COLUMN leaves bytea")
    op.execute("ALTER TABLE record ALTER COLUMN leaves SET STORAGE EXTERNAL")
    op.execute("ALTER TABLE record DROP CONSTRAINT ck_record_source")
    op.execute(f"ALTER TABLE record ADD CONSTRAINT ck_record_source CHECK (source IN ({_SOURCES}))")
    op.execute(
        "ALTER TABLE record ADD CONSTRAINT ck_record_format CHECK ("
        "(format = 1 AND source <> 'batch' AND leaf_count IS NULL AND leaves IS NULL)"
        " OR (format = 2 AND source = 'batch' AND leaf_count >= 1"
        " AND octet_length(leaves) = 32 * leaf_count))"
    )
    op.execute(_purge_function().replace(_SEALED_BEFORE, _SEALED))


def downgrade() -> None:
    # The record is append-only: format-2 rows cannot be turned back into format 1.
    op.execute(
        """
        DO $$
        BEGIN
            IF EXISTS (SELECT FROM record WHERE format <> 1) THEN
                RAISE EXCEPTION
                    'the record holds format-2 rows: cannot downgrade past 2026_12_03_chainv2';
            END IF;
        END
        $$
        """
    )
    op.execute(_purge_function())
    op.execute("ALTER TABLE record DROP CONSTRAINT ck_record_format")
    op.execute("ALTER TABLE record DROP CONSTRAINT ck_record_source")
    op.execute(
        f"ALTER TABLE record ADD CONSTRAINT ck_record_source CHECK (source IN ({_SOURCES_BEFORE}))"
    )
    op.execute("ALTER TABLE record DROP COLUMN leaves")
    op.execute("ALTER TABLE record DROP COLUMN leaf_count")
    op.execute("ALTER TABLE record DROP COLUMN format")
