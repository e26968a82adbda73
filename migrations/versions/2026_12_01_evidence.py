"""Evidence: the hash-chained record, immutable closed coverage, drain progress, and the
owner's bypasses closed where PostgreSQL allows it.

Revision ID: 2026_12_01_evidence
Revises: 2026_12_01_bi
Create Date: 2026-12-01

Written by hand. Constraint names follow auditor.db.NAMING_CONVENTION. See docs/evidence.md.

- `record`: one row per covered row (event, quarantine entry, closed coverage interval, access
  log row, later checkpoints), gapless positions from 1 in commit order. The hashes are
  computed by the writer and the sealer, never by a trigger; the database only enforces that
  positions are gapless and that nothing is changed.
- Closed coverage intervals are immutable: an interval may change only while it is open.
- `drain_progress`: per worker, the receipt time before which everything it received is stored
  in PostgreSQL (its spool is drained up to it); its coverage intervals are clipped to it.
- Every append-only trigger fires in every session_replication_role (ENABLE ALWAYS), and an
  event trigger refuses DISABLE TRIGGER, DROP TRIGGER, DETACH PARTITION and DROP TABLE on the
  audited tables, except on the retention path (see auditor_retention_path()). Creating event
  triggers needs a superuser: a migrating role that is not one gets a warning and the rest.
- Existing rows get their positions from `auditor seal --backfill` (or the worker's sealer).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "2026_12_01_evidence"
down_revision: str | None = "2026_12_01_bi"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WRITER = "auditor_writer"
READER = "auditor_reader"

# (table, trigger) pairs that reject changes; all made to fire ALWAYS.
_APPEND_ONLY = [
    (table, f"{table}_{kind}")
    for table in ("events", "quarantine", "session_log", "access_log")
    for kind in ("append_only", "no_truncate")
]

_ENSURE_PARTITION = """
CREATE OR REPLACE FUNCTION auditor_ensure_event_partition(p_month date) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    lo   timestamptz := make_timestamptz(
             extract(year FROM p_month)::int, extract(month FROM p_month)::int, 1,
             0, 0, 0, 'UTC');
    hi   timestamptz := lo + interval '1 month';
    name text := 'events_' || to_char(p_month, 'YYYY_MM');
BEGIN
    IF to_regclass(name) IS NOT NULL THEN
        RETURN false;
    END IF;
    BEGIN
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)',
            name, lo, hi);
    EXCEPTION
        WHEN check_violation OR duplicate_table THEN
            RETURN false;
    END;
    EXECUTE format(
        'CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON %I'
        ' FOR EACH STATEMENT EXECUTE FUNCTION auditor_reject_change()', name);
    EXECUTE format('ALTER TABLE %I ENABLE ALWAYS TRIGGER events_no_truncate', name);
    RETURN true;
END
$$
"""

_ENSURE_PARTITION_BEFORE = _ENSURE_PARTITION.replace(
    "    EXECUTE format('ALTER TABLE %I ENABLE ALWAYS TRIGGER events_no_truncate', name);\n", ""
)

# Statement-level: one check per batch, not per row. With the rows of earlier statements
# gapless (induction: nothing is ever deleted), the new rows must start right after the
# highest position stored before them and be contiguous. The writer's advisory lock is taken
# here too (re-entrant, so free for the writer) so that an inserter that skipped it waits for
# the writer's commit instead of racing it.
_GAPLESS = """
CREATE FUNCTION auditor_record_gapless() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    lo bigint; hi bigint; n bigint; before bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(418581342580);
    SELECT min(position), max(position), count(*) INTO lo, hi, n FROM new_rows;
    IF n = 0 THEN
        RETURN NULL;
    END IF;
    SELECT max(position) INTO before FROM record WHERE position < lo;
    IF hi - lo + 1 <> n OR lo <> coalesce(before, 0) + 1
       OR EXISTS (SELECT FROM record WHERE position > hi) THEN
        RAISE EXCEPTION 'record positions must follow % without a gap (got % to %)',
            coalesce(before, 0), lo, hi
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END
$$
"""

# A coverage interval may change only while it is open; closing it is its last change.
_COVERAGE_CLOSED = """
CREATE FUNCTION auditor_coverage_closed_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR OLD.ended_at IS NOT NULL THEN
        RAISE EXCEPTION '% on a closed coverage interval is not allowed: it is in the record',
            TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$
"""

# The audited relations: what the event trigger protects. Partitions of events included.
_AUDITED = """
CREATE FUNCTION auditor_audited_tables() RETURNS SETOF regclass
LANGUAGE sql STABLE AS $$
    SELECT relid::regclass FROM pg_partition_tree('events'::regclass)
    UNION ALL
    SELECT to_regclass(name) FROM unnest(ARRAY[
        'quarantine', 'coverage_intervals', 'session_log', 'access_log', 'record'
    ]) AS name WHERE to_regclass(name) IS NOT NULL
$$
"""

# The functions whose triggers protect the record: they must stay enabled ALWAYS.
_GUARD_FUNCTIONS = (
    "'auditor_reject_change'::regproc, 'auditor_coverage_closed_immutable'::regproc,"
    " 'auditor_record_gapless'::regproc"
)

# The retention command (issue 17) drops whole partitions through a SECURITY DEFINER function
# owned by the migrating superuser that sets auditor.retention_path locally; a session that is
# not a superuser cannot make current_user one, so setting the flag by hand gets it nowhere.
_RETENTION_PATH = """
CREATE FUNCTION auditor_retention_path() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coalesce(current_setting('auditor.retention_path', true), '') = 'on'
           AND (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
$$
"""

_GUARD_ALTER = f"""
CREATE FUNCTION auditor_guard_alter() RETURNS event_trigger LANGUAGE plpgsql AS $$
DECLARE
    culprit text;
BEGIN
    IF auditor_retention_path() THEN
        RETURN;
    END IF;
    SELECT format('trigger %s on %s', t.tgname, t.tgrelid::regclass) INTO culprit
    FROM pg_trigger AS t
    WHERE t.tgrelid IN (SELECT auditor_audited_tables())
      AND t.tgfoid IN ({_GUARD_FUNCTIONS}) AND t.tgenabled <> 'A'
    LIMIT 1;
    IF culprit IS NULL THEN
        SELECT format('table %s (detached from events)', c.oid::regclass) INTO culprit
        FROM pg_class AS c
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
          AND c.relname ~ '^events_(default|[0-9]{{4}}_[0-9]{{2}})$' AND NOT c.relispartition
        LIMIT 1;
    END IF;
    IF culprit IS NOT NULL THEN
        RAISE EXCEPTION 'refused: % would stop protecting the audit record', culprit
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'the audited tables are append-only; retention has its own command';
    END IF;
END
$$
"""

_GUARD_DROP = """
CREATE FUNCTION auditor_guard_drop() RETURNS event_trigger LANGUAGE plpgsql AS $$
DECLARE
    culprit text;
BEGIN
    IF auditor_retention_path() THEN
        RETURN;
    END IF;
    SELECT format('%s %s', d.object_type, d.object_identity) INTO culprit
    FROM pg_event_trigger_dropped_objects() AS d
    WHERE d.schema_name = 'public' AND (
        (d.object_type = 'table' AND (
            d.object_name IN ('events', 'quarantine', 'coverage_intervals', 'session_log',
                              'access_log', 'record')
            OR d.object_name ~ '^events_(default|[0-9]{4}_[0-9]{2})$'))
        OR (d.object_type = 'trigger' AND (
            split_part(d.object_identity, ' on ', 1) IN (
                'events_append_only', 'events_no_truncate', 'quarantine_append_only',
                'quarantine_no_truncate', 'session_log_append_only', 'session_log_no_truncate',
                'access_log_append_only', 'access_log_no_truncate', 'coverage_closed_immutable',
                'coverage_no_truncate', 'record_append_only', 'record_no_truncate',
                'record_gapless'))))
    LIMIT 1;
    IF culprit IS NOT NULL THEN
        RAISE EXCEPTION 'refused: dropping % would remove part of the audit record', culprit
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'the audited tables are append-only; retention has its own command';
    END IF;
END
$$
"""


def _is_superuser() -> bool:
    row = (
        op.get_bind()
        .exec_driver_sql("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        .scalar()
    )
    return bool(row)


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE record (
            position   bigint      NOT NULL,
            source     text        NOT NULL,
            source_id  bigint      NOT NULL,
            leaf_hash  bytea       NOT NULL,
            chain_hash bytea       NOT NULL,
            sealed_at  timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_record PRIMARY KEY (position),
            CONSTRAINT uq_record_source_source_id UNIQUE (source, source_id),
            CONSTRAINT ck_record_position_from_one CHECK (position >= 1),
            CONSTRAINT ck_record_source CHECK (source IN
                ('event', 'quarantine', 'coverage', 'access', 'checkpoint', 'hold', 'purge')),
            CONSTRAINT ck_record_leaf_hash_sha256 CHECK (octet_length(leaf_hash) = 32),
            CONSTRAINT ck_record_chain_hash_sha256 CHECK (octet_length(chain_hash) = 32)
        )
        """
    )
    op.execute(_GAPLESS)
    op.execute(
        "CREATE TRIGGER record_gapless AFTER INSERT ON record REFERENCING NEW TABLE AS new_rows"
        " FOR EACH STATEMENT EXECUTE FUNCTION auditor_record_gapless()"
    )
    op.execute(
        "CREATE TRIGGER record_append_only BEFORE UPDATE OR DELETE ON record"
        " FOR EACH ROW EXECUTE FUNCTION auditor_reject_change()"
    )
    op.execute(
        "CREATE TRIGGER record_no_truncate BEFORE TRUNCATE ON record"
        " FOR EACH STATEMENT EXECUTE FUNCTION auditor_reject_change()"
    )

    op.execute(_COVERAGE_CLOSED)
    op.execute(
        "CREATE TRIGGER coverage_closed_immutable BEFORE UPDATE OR DELETE ON coverage_intervals"
        " FOR EACH ROW EXECUTE FUNCTION auditor_coverage_closed_immutable()"
    )
    op.execute(
        "CREATE TRIGGER coverage_no_truncate BEFORE TRUNCATE ON coverage_intervals"
        " FOR EACH STATEMENT EXECUTE FUNCTION auditor_reject_change()"
    )

    op.execute(
        """
        CREATE TABLE drain_progress (
            worker_id      text        NOT NULL,
            stored_through timestamptz NOT NULL,
            updated_at     timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_drain_progress PRIMARY KEY (worker_id)
        )
        """
    )

    # Every trigger that protects the record fires in every replication role.
    for table, trigger in [
        *_APPEND_ONLY,
        ("record", "record_gapless"),
        ("record", "record_append_only"),
        ("record", "record_no_truncate"),
        ("coverage_intervals", "coverage_closed_immutable"),
        ("coverage_intervals", "coverage_no_truncate"),
    ]:
        op.execute(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {trigger}")
    # TRUNCATE triggers are per partition (statement triggers are not inherited).
    op.execute(
        """
        DO $$
        DECLARE part regclass;
        BEGIN
            FOR part IN SELECT relid FROM pg_partition_tree('events'::regclass)
                        WHERE relid <> 'events'::regclass LOOP
                EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER events_no_truncate', part);
            END LOOP;
        END
        $$
        """
    )
    op.execute(_ENSURE_PARTITION)

    op.execute(_AUDITED)
    op.execute(_RETENTION_PATH)
    if _is_superuser():
        op.execute(_GUARD_ALTER)
        op.execute(_GUARD_DROP)
        op.execute(
            "CREATE EVENT TRIGGER auditor_guard_alter ON ddl_command_end"
            " WHEN TAG IN ('ALTER TABLE') EXECUTE FUNCTION auditor_guard_alter()"
        )
        op.execute(
            "CREATE EVENT TRIGGER auditor_guard_drop ON sql_drop"
            " EXECUTE FUNCTION auditor_guard_drop()"
        )
        op.execute("ALTER EVENT TRIGGER auditor_guard_alter ENABLE ALWAYS")
        op.execute("ALTER EVENT TRIGGER auditor_guard_drop ENABLE ALWAYS")
    else:
        print(
            "warning: the migrating role is not a superuser, so the event triggers that refuse"
            " DISABLE TRIGGER / DETACH PARTITION / DROP on the audited tables were not created;"
            " run `auditor db upgrade` once as a superuser to add them (docs/evidence.md)"
        )

    # The writer appends to the record and no longer picks event ids: they come from the
    # identity, read (not taken) from the sequence to hash rows while they are copied.
    op.execute(f"GRANT SELECT, INSERT ON record TO {WRITER}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE ON drain_progress TO {WRITER}")
    op.execute(f"GRANT SELECT ON access_log TO {WRITER}")
    # The writer learns the ids of the quarantine rows it stores (RETURNING) and counts the
    # unsealed ones; the raw bytes stay unreadable to it (migration 2026_12_01_privileges).
    op.execute(f"GRANT SELECT (id) ON quarantine TO {WRITER}")
    op.execute(f"REVOKE USAGE ON SEQUENCE events_id_seq FROM {WRITER}")
    op.execute(f"GRANT SELECT ON SEQUENCE events_id_seq TO {WRITER}")
    op.execute(f"GRANT SELECT ON record, drain_progress TO {READER}")


def downgrade() -> None:
    op.execute("DROP EVENT TRIGGER IF EXISTS auditor_guard_drop")
    op.execute("DROP EVENT TRIGGER IF EXISTS auditor_guard_alter")
    op.execute("DROP FUNCTION IF EXISTS auditor_guard_drop()")
    op.execute("DROP FUNCTION IF EXISTS auditor_guard_alter()")
    op.execute("DROP FUNCTION auditor_retention_path()")
    op.execute("DROP FUNCTION auditor_audited_tables()")
    op.execute(_ENSURE_PARTITION_BEFORE)
    op.execute(
        """
        DO $$
        DECLARE part regclass;
        BEGIN
            FOR part IN SELECT relid FROM pg_partition_tree('events'::regclass)
                        WHERE relid <> 'events'::regclass LOOP
                EXECUTE format('ALTER TABLE %s ENABLE TRIGGER events_no_truncate', part);
            END LOOP;
        END
        $$
        """
    )
    for table, trigger in _APPEND_ONLY:
        op.execute(f"ALTER TABLE {table} ENABLE TRIGGER {trigger}")
    op.execute(f"REVOKE SELECT ON SEQUENCE events_id_seq FROM {WRITER}")
    op.execute(f"GRANT USAGE ON SEQUENCE events_id_seq TO {WRITER}")
    op.execute(f"REVOKE SELECT ON access_log FROM {WRITER}")
    op.execute(f"REVOKE SELECT (id) ON quarantine FROM {WRITER}")
    op.execute("DROP TABLE drain_progress")
    op.execute("DROP TRIGGER coverage_no_truncate ON coverage_intervals")
    op.execute("DROP TRIGGER coverage_closed_immutable ON coverage_intervals")
    op.execute("DROP FUNCTION auditor_coverage_closed_immutable()")
    op.execute("DROP TABLE record")
    op.execute("DROP FUNCTION auditor_record_gapless()")
