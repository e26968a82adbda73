"""Retention with legal hold: holds, releases, purge receipts, retention runs, and the one
function through which a monthly events partition may be dropped.

Revision ID: 2026_12_02_retention
Revises: 2026_12_02_userdata_index
Create Date: 2026-12-02

Written by hand. Constraint names follow auditor.db.NAMING_CONVENTION. See docs/retention.md.

- `legal_holds`: a predicate over events (interaction ids, referenceIds, account, mediaType,
  received time range; the parts given must all match) with who placed it and why.
  `hold_releases`: one row per released hold (no foreign key: it would make TRUNCATE of
  legal_holds fail on the key before the append-only trigger says why; `release` checks).
  Both append-only and entered into the record (sources `hold` and `release`), by the
  sealer or by the CLI that wrote them.
- `purges`: one receipt per dropped partition (partition, time range, row count, the event
  ids and record positions it held as multirange text, SHA-256 over their leaf hashes, the
  record's head at the boundary, who, when). Append-only, entered into the record (`purge`)
  before the partition goes; `verify` skips exactly the positions a receipt names.
- `retention_runs`: every `auditor retention apply` (dry run or not): what it dropped, what
  it kept and why. Append-only.
- `auditor_holds_in_range(from, to)`: active holds matching events received in [from, to).
- `auditor_purge_event_partition(receipt)`: SECURITY DEFINER, owned by the migrating
  superuser, EXECUTE for auditor_retention only. It re-checks everything under an ACCESS
  EXCLUSIVE lock on the partition (receipt sealed in the record, rows, ids and positions as
  the receipt says, every row sealed, no active hold, the month over) and only then takes the
  retention path the event triggers of migration 2026_12_01_evidence leave open
  (auditor.retention_path on, current_user a superuser) to DETACH and DROP the partition.
- The group role `auditor_retention` runs `auditor retention` and `auditor hold`.
- The new tables are protected like the audited ones: append-only triggers ENABLE ALWAYS, in
  auditor_audited_tables(), and a sql_drop event trigger of their own
  (auditor_guard_drop_retention) when the migrating role is a superuser.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "2026_12_02_retention"
down_revision: str | None = "2026_12_02_userdata_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RETENTION = "auditor_retention"
WRITER = "auditor_writer"
API = "auditor_api"
READER = "auditor_reader"
VERIFIER = "auditor_verifier"
NEW_TABLES = ("legal_holds", "hold_releases", "purges", "retention_runs")
_BASE_AUDITED = (
    "quarantine",
    "coverage_intervals",
    "session_log",
    "access_log",
    "record",
    "checkpoints",
    "record_tree",
)
_SOURCES_BEFORE = "'event', 'quarantine', 'coverage', 'access', 'checkpoint', 'hold', 'purge'"
_SOURCES = _SOURCES_BEFORE + ", 'release'"


def _audited(extra: tuple[str, ...]) -> str:
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


# A hold matches an event when every part it gives matches (a part left NULL matches all).
_HOLD_MATCHES = """
    (h.interaction_ids IS NULL OR e.interaction_id = ANY (h.interaction_ids))
    AND (h.reference_ids IS NULL OR e.reference_id = ANY (h.reference_ids))
    AND (h.account IS NULL OR e.account = h.account)
    AND (h.media_type IS NULL OR e.media_type = h.media_type)
    AND (h.received_from IS NULL OR e.received_at >= h.received_from)
    AND (h.received_to IS NULL OR e.received_at < h.received_to)
"""

# Active holds with rows received in [from, to): read through the parent table, so any role
# that may read events may ask (a partition's own privileges are not the parent's).
_HOLDS_IN_RANGE = f"""
CREATE FUNCTION auditor_holds_in_range(p_from timestamptz, p_to timestamptz)
RETURNS TABLE (hold_id bigint, rows bigint)
LANGUAGE sql STABLE AS $$
    SELECT h.id, count(*)
    FROM events AS e JOIN legal_holds AS h ON {_HOLD_MATCHES.strip()}
    WHERE e.received_at >= p_from AND e.received_at < p_to
      AND NOT EXISTS (SELECT FROM hold_releases AS r WHERE r.hold_id = h.id)
    GROUP BY h.id ORDER BY h.id
$$
"""

# Every check is repeated here, under the partition's ACCESS EXCLUSIVE lock: the caller may
# compute the receipt, but only this function decides that the partition goes.
_PURGE = """
CREATE FUNCTION auditor_purge_event_partition(p_receipt bigint) RETURNS bigint
LANGUAGE plpgsql STRICT SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    r       purges%ROWTYPE;
    part    regclass;
    lo      timestamptz;
    n       bigint;
    ids     text;
    sealed  bigint;
    poss    text;
    held    bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(418581342580);
    SELECT * INTO r FROM purges WHERE id = p_receipt;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no purge receipt %', p_receipt USING ERRCODE = 'no_data_found';
    END IF;
    IF NOT EXISTS (SELECT FROM record WHERE source = 'purge' AND source_id = p_receipt) THEN
        RAISE EXCEPTION 'purge receipt % is not in the record', p_receipt
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF r.partition !~ '^events_[0-9]{4}_[0-9]{2}$' THEN
        RAISE EXCEPTION '% is not a monthly events partition', r.partition
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    part := to_regclass(r.partition);
    IF part IS NULL OR NOT EXISTS (
        SELECT FROM pg_inherits WHERE inhrelid = part AND inhparent = 'events'::regclass
    ) THEN
        RAISE EXCEPTION '% is not a partition of events', r.partition
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    lo := make_timestamptz(substr(r.partition, 8, 4)::int, substr(r.partition, 13, 2)::int, 1,
                           0, 0, 0, 'UTC');
    IF r.range_from <> lo OR r.range_to <> lo + interval '1 month' THEN
        RAISE EXCEPTION 'receipt % names the wrong time range for %', p_receipt, r.partition
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF r.range_to > now() THEN
        RAISE EXCEPTION '% is not over yet', r.partition USING ERRCODE = 'invalid_parameter_value';
    END IF;
    EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', part);
    EXECUTE format(
        'SELECT count(*), coalesce(range_agg(int8range(id, id + 1))::text, ''{}'')'
        ' FROM %s', part) INTO n, ids;
    EXECUTE format(
        'SELECT count(*), coalesce(range_agg(int8range(c.position, c.position + 1))::text, ''{}'')'
        ' FROM record AS c WHERE c.source = ''event'' AND c.source_id IN (SELECT id FROM %s)',
        part) INTO sealed, poss;
    IF n <> r.row_count OR ids <> r.event_ids OR sealed <> n OR poss <> r.positions THEN
        RAISE EXCEPTION 'receipt % no longer matches %: % rows (% sealed), receipt says %',
            p_receipt, r.partition, n, sealed, r.row_count
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    SELECT count(*) INTO held FROM auditor_holds_in_range(r.range_from, r.range_to);
    IF held > 0 THEN
        RAISE EXCEPTION '% holds rows under % legal hold(s)', r.partition, held
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    PERFORM set_config('auditor.retention_path', 'on', true);
    EXECUTE format('ALTER TABLE events DETACH PARTITION %s', part);
    EXECUTE format('DROP TABLE %s', part);
    PERFORM set_config('auditor.retention_path', 'off', true);
    RETURN n;
END
$$
"""


# BI (docs/bi.md): what retention dropped, so a dashboard can say what is gone. Added to the
# current version (allowed: a new view; pinned from now on in tests/bi/bi_v1.json).
_BI_PURGED = """
CREATE VIEW bi_v1.purged_ranges AS
SELECT partition, range_from AS purged_from, range_to AS purged_to, row_count AS events,
       purged_at, purged_by, reason
FROM purges
"""
_BI_COMMENTS = {
    "": "Months of events dropped by retention (docs/retention.md): their rows are gone from"
    " every view; the summaries may still count them. One row per purge receipt.",
    "partition": "The dropped partition, events_YYYY_MM.",
    "purged_from": "Start of the purged month (UTC), inclusive.",
    "purged_to": "End of the purged month (UTC), exclusive.",
    "events": "How many events the partition held when it was dropped.",
    "purged_at": "When retention dropped it.",
    "purged_by": "Who ran the retention command (OS user and database login).",
    "reason": "Why it went (the retention setting that applied).",
}


# A second sql_drop guard for this migration's tables (the first, auditor_guard_drop of
# migration 2026_12_01_evidence, names its tables in its body): dropping a hold table, the
# receipts or the run log, or one of their append-only triggers, is refused like dropping an
# events partition. Same retention path, which never drops these.
_TRIGGERS = ", ".join(
    f"'{table}_{kind}'" for table in NEW_TABLES for kind in ("append_only", "no_truncate")
)
_GUARD_DROP_RETENTION = f"""
CREATE FUNCTION auditor_guard_drop_retention() RETURNS event_trigger LANGUAGE plpgsql AS $$
DECLARE
    culprit text;
BEGIN
    IF auditor_retention_path() THEN
        RETURN;
    END IF;
    SELECT format('%s %s', d.object_type, d.object_identity) INTO culprit
    FROM pg_event_trigger_dropped_objects() AS d
    WHERE d.schema_name = 'public' AND (
        (d.object_type = 'table' AND d.object_name IN ({", ".join(f"'{t}'" for t in NEW_TABLES)}))
        OR (d.object_type = 'trigger'
            AND split_part(d.object_identity, ' on ', 1) IN ({_TRIGGERS})))
    LIMIT 1;
    IF culprit IS NOT NULL THEN
        RAISE EXCEPTION 'refused: dropping % would remove part of the audit record', culprit
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'legal holds, purge receipts and retention runs are append-only';
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


def _append_only(table: str) -> None:
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


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE legal_holds (
            id              bigint GENERATED ALWAYS AS IDENTITY NOT NULL,
            placed_at       timestamptz NOT NULL DEFAULT now(),
            placed_by       text        NOT NULL,
            reason          text        NOT NULL,
            interaction_ids text[],
            reference_ids   text[],
            account         text,
            media_type      text,
            received_from   timestamptz,
            received_to     timestamptz,
            CONSTRAINT pk_legal_holds PRIMARY KEY (id),
            CONSTRAINT ck_legal_holds_predicate CHECK (
                interaction_ids IS NOT NULL OR reference_ids IS NOT NULL OR account IS NOT NULL
                OR media_type IS NOT NULL OR received_from IS NOT NULL
                OR received_to IS NOT NULL),
            CONSTRAINT ck_legal_holds_time_range CHECK (received_to > received_from),
            CONSTRAINT ck_legal_holds_reason_given CHECK (btrim(reason) <> ''),
            CONSTRAINT ck_legal_holds_placed_by_given CHECK (btrim(placed_by) <> '')
        )
        """
    )
    op.execute(
        """
        CREATE TABLE hold_releases (
            id          bigint GENERATED ALWAYS AS IDENTITY NOT NULL,
            hold_id     bigint      NOT NULL,
            released_at timestamptz NOT NULL DEFAULT now(),
            released_by text        NOT NULL,
            reason      text        NOT NULL,
            CONSTRAINT pk_hold_releases PRIMARY KEY (id),
            CONSTRAINT uq_hold_releases_hold_id UNIQUE (hold_id),
            CONSTRAINT ck_hold_releases_reason_given CHECK (btrim(reason) <> ''),
            CONSTRAINT ck_hold_releases_released_by_given CHECK (btrim(released_by) <> '')
        )
        """
    )
    op.execute(
        """
        CREATE TABLE purges (
            id            bigint GENERATED ALWAYS AS IDENTITY NOT NULL,
            partition     text        NOT NULL,
            range_from    timestamptz NOT NULL,
            range_to      timestamptz NOT NULL,
            row_count     bigint      NOT NULL,
            event_ids     text        NOT NULL,
            positions     text        NOT NULL,
            leaves_sha256 bytea       NOT NULL,
            head_position bigint      NOT NULL,
            head_chain    bytea       NOT NULL,
            purged_by     text        NOT NULL,
            purged_at     timestamptz NOT NULL DEFAULT now(),
            reason        text        NOT NULL,
            CONSTRAINT pk_purges PRIMARY KEY (id),
            CONSTRAINT ck_purges_time_range CHECK (range_to > range_from),
            CONSTRAINT ck_purges_row_count_not_negative CHECK (row_count >= 0),
            CONSTRAINT ck_purges_event_ids_canonical
                CHECK (event_ids::int8multirange::text = event_ids),
            CONSTRAINT ck_purges_positions_canonical
                CHECK (positions::int8multirange::text = positions),
            CONSTRAINT ck_purges_leaves_sha256 CHECK (octet_length(leaves_sha256) = 32),
            CONSTRAINT ck_purges_head_chain_sha256 CHECK (octet_length(head_chain) = 32)
        )
        """
    )
    op.execute("CREATE INDEX ix_purges_range_from ON purges (range_from)")
    op.execute(
        """
        CREATE TABLE retention_runs (
            id       bigint GENERATED ALWAYS AS IDENTITY NOT NULL,
            run_at   timestamptz NOT NULL DEFAULT now(),
            run_by   text        NOT NULL,
            dry_run  boolean     NOT NULL,
            settings jsonb       NOT NULL,
            dropped  jsonb       NOT NULL,
            kept     jsonb       NOT NULL,
            CONSTRAINT pk_retention_runs PRIMARY KEY (id)
        )
        """
    )
    for table in NEW_TABLES:
        _append_only(table)
    op.execute(_audited(NEW_TABLES))
    if _is_superuser():
        op.execute(_GUARD_DROP_RETENTION)
        op.execute(
            "CREATE EVENT TRIGGER auditor_guard_drop_retention ON sql_drop"
            " EXECUTE FUNCTION auditor_guard_drop_retention()"
        )
        op.execute("ALTER EVENT TRIGGER auditor_guard_drop_retention ENABLE ALWAYS")
    else:
        print(
            "warning: the migrating role is not a superuser, so the event trigger that refuses"
            " dropping the legal hold and purge tables was not created (docs/retention.md)"
        )
    op.execute("ALTER TABLE record DROP CONSTRAINT ck_record_source")
    op.execute(f"ALTER TABLE record ADD CONSTRAINT ck_record_source CHECK (source IN ({_SOURCES}))")

    op.execute(_BI_PURGED)
    for column, text in _BI_COMMENTS.items():
        target = f"COLUMN bi_v1.purged_ranges.{column}" if column else "VIEW bi_v1.purged_ranges"
        op.execute(f"COMMENT ON {target} IS '{text}'")
    op.execute("SELECT auditor_bi_alias('bi_v1', 'purged_ranges')")

    op.execute(_HOLDS_IN_RANGE)
    op.execute(_PURGE)
    op.execute("REVOKE ALL ON FUNCTION auditor_purge_event_partition(bigint) FROM PUBLIC")

    op.execute(
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{RETENTION}') THEN
                CREATE ROLE {RETENTION} NOLOGIN;
            END IF;
        END
        $$
        """
    )
    op.execute(f"GRANT USAGE ON SCHEMA public TO {RETENTION}")
    # Reads what a plan counts and a receipt names; writes holds, receipts and its run log,
    # and appends to the record (under the writer lock). It owns nothing and cannot drop a
    # table itself: only auditor_purge_event_partition can, after its checks.
    op.execute(f"GRANT SELECT ON events, record, checkpoints, record_tree TO {RETENTION}")
    op.execute(f"GRANT SELECT, INSERT ON legal_holds, hold_releases, purges TO {RETENTION}")
    op.execute(f"GRANT SELECT, INSERT ON retention_runs TO {RETENTION}")
    # The projection (not audited, derived) of interactions whose every event was purged.
    op.execute(f"GRANT SELECT, DELETE ON interactions TO {RETENTION}")
    op.execute(f"GRANT INSERT ON record TO {RETENTION}")
    op.execute(f"GRANT EXECUTE ON FUNCTION auditor_purge_event_partition(bigint) TO {RETENTION}")
    # Admins place and release holds through the API; the worker's sealer enters them into
    # the record; coverage answers read the receipts; the verifier recomputes their leaves.
    op.execute(f"GRANT SELECT, INSERT ON legal_holds, hold_releases TO {API}")
    op.execute(f"GRANT SELECT ON purges TO {API}")
    op.execute(f"GRANT SELECT ON legal_holds, hold_releases, purges TO {WRITER}")
    op.execute(f"GRANT SELECT ON purges TO {READER}")
    op.execute(f"GRANT SELECT ON legal_holds, hold_releases, purges TO {VERIFIER}")


def downgrade() -> None:
    op.execute("DROP EVENT TRIGGER IF EXISTS auditor_guard_drop_retention")
    op.execute("DROP FUNCTION IF EXISTS auditor_guard_drop_retention()")
    op.execute(f"REVOKE ALL ON legal_holds, hold_releases, purges FROM {VERIFIER}, {WRITER}, {API}")
    op.execute(f"REVOKE ALL ON purges FROM {READER}")
    op.execute("DROP VIEW bi.purged_ranges")
    op.execute("DROP VIEW bi_v1.purged_ranges")
    op.execute("DROP FUNCTION auditor_purge_event_partition(bigint)")
    op.execute("DROP FUNCTION auditor_holds_in_range(timestamptz, timestamptz)")
    op.execute("ALTER TABLE record DROP CONSTRAINT ck_record_source")
    op.execute(
        f"ALTER TABLE record ADD CONSTRAINT ck_record_source CHECK (source IN ({_SOURCES_BEFORE}))"
        " NOT VALID"
    )
    op.execute(_audited(()))
    op.execute(
        f"REVOKE ALL ON record, events, checkpoints, record_tree, interactions FROM {RETENTION}"
    )
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {RETENTION}")
    for table in reversed(NEW_TABLES):
        op.execute(f"REVOKE ALL ON {table} FROM {RETENTION}")
        op.execute(f"DROP TABLE {table}")
    op.execute(
        f"""
        DO $$
        BEGIN
            DROP ROLE IF EXISTS {RETENTION};
        EXCEPTION WHEN dependent_objects_still_exist THEN
            RAISE NOTICE 'role {RETENTION} is still used elsewhere; kept';
        END
        $$
        """
    )
