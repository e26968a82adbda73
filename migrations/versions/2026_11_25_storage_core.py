"""Storage core: append-only events (monthly partitions), interactions projection, quarantine,
writer and reader roles.

Revision ID: 2026_11_25_storage_core
Revises:
Create Date: 2026-11-25

Written by hand. Constraint names follow auditor.db.NAMING_CONVENTION.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "2026_11_25_storage_core"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WRITER = "auditor_writer"
READER = "auditor_reader"


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE events (
            id                bigint GENERATED ALWAYS AS IDENTITY,
            receipt_id        uuid        NOT NULL,
            received_at       timestamptz NOT NULL,
            stored_at         timestamptz NOT NULL DEFAULT now(),
            kind              text        NOT NULL DEFAULT 'notification',
            account           text        NOT NULL,
            channel           text,
            message_type      text,
            notification_type text,
            interaction_id    text,
            reference_id      text,
            media_type        text,
            openmedia_type    text,
            state             text,
            error_code        text,
            error_message     text,
            payload           jsonb       NOT NULL,
            CONSTRAINT pk_events PRIMARY KEY (id, received_at),
            CONSTRAINT uq_events_receipt_id_received_at UNIQUE (receipt_id, received_at),
            CONSTRAINT ck_events_kind CHECK (kind IN ('notification', 'snapshot')),
            CONSTRAINT ck_events_payload_object CHECK (jsonb_typeof(payload) = 'object')
        ) PARTITION BY RANGE (received_at)
        """
    )
    op.execute("CREATE INDEX ix_events_interaction_id_id ON events (interaction_id, id)")
    # Unsolicited notifications (a new invitation) carry no referenceId: leave them out.
    op.execute(
        "CREATE INDEX ix_events_reference_id_id ON events (reference_id, id)"
        " WHERE reference_id IS NOT NULL"
    )
    op.execute(
        "CREATE INDEX ix_events_media_type_state_received_at"
        " ON events (media_type, state, received_at)"
    )
    op.execute(
        "CREATE INDEX ix_events_notification_type_received_at"
        " ON events (notification_type, received_at)"
    )
    op.execute("CREATE INDEX ix_events_account_received_at ON events (account, received_at)")
    op.execute("CREATE INDEX ix_events_channel_received_at ON events (channel, received_at)")
    # Rows arrive in time order, so a BRIN index serves plain time ranges at almost no
    # write cost.
    op.execute("CREATE INDEX ix_events_received_at ON events USING brin (received_at)")
    # Whatever falls outside the monthly partitions lands here, so an insert never fails.
    op.execute("CREATE TABLE events_default PARTITION OF events DEFAULT")

    op.execute(
        """
        CREATE TABLE interactions (
            interaction_id         text        NOT NULL,
            state                  text,
            capabilities           jsonb,
            media_type             text,
            openmedia_type         text,
            uri                    text,
            user_data              jsonb,
            user_data_event_id     bigint,
            account_states         jsonb       NOT NULL DEFAULT '{}'::jsonb,
            accounts               text[]      NOT NULL DEFAULT '{}'::text[],
            first_seen_at          timestamptz NOT NULL,
            last_seen_at           timestamptz NOT NULL,
            first_event_id         bigint      NOT NULL,
            last_event_id          bigint      NOT NULL,
            event_count            bigint      NOT NULL,
            last_notification_type text,
            last_reference_id      text,
            completed_at           timestamptz,
            CONSTRAINT pk_interactions PRIMARY KEY (interaction_id)
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_interactions_state_last_seen_at ON interactions (state, last_seen_at)"
    )
    op.execute(
        "CREATE INDEX ix_interactions_media_type_state_last_seen_at"
        " ON interactions (media_type, state, last_seen_at)"
    )
    op.execute("CREATE INDEX ix_interactions_last_seen_at ON interactions (last_seen_at)")
    op.execute("CREATE INDEX ix_interactions_accounts ON interactions USING gin (accounts)")

    op.execute(
        """
        CREATE TABLE quarantine (
            id          bigint GENERATED ALWAYS AS IDENTITY,
            receipt_id  uuid        NOT NULL,
            received_at timestamptz NOT NULL,
            stored_at   timestamptz NOT NULL DEFAULT now(),
            account     text        NOT NULL,
            channel     text,
            reason      text        NOT NULL,
            raw         bytea       NOT NULL,
            CONSTRAINT pk_quarantine PRIMARY KEY (id),
            CONSTRAINT uq_quarantine_receipt_id UNIQUE (receipt_id)
        )
        """
    )
    op.execute("CREATE INDEX ix_quarantine_received_at ON quarantine (received_at)")

    # Append-only, enforced by the database for every role, the owner included.
    op.execute(
        """
        CREATE FUNCTION auditor_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% on % is not allowed: the audit record is append-only',
                TG_OP, TG_TABLE_NAME
                USING ERRCODE = 'insufficient_privilege',
                      HINT = 'retention drops whole partitions; nothing else removes a row';
        END
        $$
        """
    )
    for table in ("events", "quarantine"):
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}"
            " FOR EACH ROW EXECUTE FUNCTION auditor_reject_change()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}"
            " FOR EACH STATEMENT EXECUTE FUNCTION auditor_reject_change()"
        )
    # Statement triggers are not inherited by partitions: each partition gets its own.
    op.execute(
        "CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events_default"
        " FOR EACH STATEMENT EXECUTE FUNCTION auditor_reject_change()"
    )

    # Monthly partitions (UTC months), created on demand by the writer and ahead by
    # `auditor db upgrade`. SECURITY DEFINER so that the writer role, which may only insert,
    # can still add a partition. Returns false when the month already exists, or when rows of
    # that month already sit in the default partition (they stay there; inserts keep working).
    op.execute(
        """
        CREATE FUNCTION auditor_ensure_event_partition(p_month date) RETURNS boolean
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
            RETURN true;
        END
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION auditor_ensure_event_partition(date) FROM PUBLIC")

    # The interaction's state as the agents see it: the newest state of any session still
    # handling it (a transfer's receiver), else the newest state overall.
    op.execute(
        """
        CREATE FUNCTION auditor_effective_state(account_states jsonb) RETURNS jsonb
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
            SELECT value FROM jsonb_each(account_states)
            ORDER BY (value->>'state') = 'Completed', (value->>'event_id')::bigint DESC
            LIMIT 1
        $$
        """
    )

    # Per account, keep the newer of two entries (by event id): the projection merge is then
    # right whatever order batches are applied in.
    op.execute(
        """
        CREATE FUNCTION auditor_merge_account_states(a jsonb, b jsonb) RETURNS jsonb
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
            SELECT coalesce(jsonb_object_agg(key, value), '{}'::jsonb)
            FROM (
                SELECT DISTINCT ON (key) key, value
                FROM (SELECT * FROM jsonb_each(a) UNION ALL SELECT * FROM jsonb_each(b)) AS both_
                ORDER BY key, (value->>'event_id')::bigint DESC
            ) AS newest
        $$
        """
    )
    # state, capabilities and completed_at are derived from account_states on every write,
    # so they can never disagree with it.
    op.execute(
        """
        CREATE FUNCTION auditor_interactions_derive() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            eff jsonb := auditor_effective_state(NEW.account_states);
        BEGIN
            NEW.state := eff->>'state';
            NEW.capabilities := eff->'capabilities';
            NEW.completed_at := CASE WHEN eff->>'state' = 'Completed'
                                     THEN (eff->>'at')::timestamptz END;
            RETURN NEW;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER interactions_derive BEFORE INSERT OR UPDATE ON interactions"
        " FOR EACH ROW EXECUTE FUNCTION auditor_interactions_derive()"
    )

    op.execute(
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{WRITER}') THEN
                CREATE ROLE {WRITER} NOLOGIN;
            END IF;
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{READER}') THEN
                CREATE ROLE {READER} NOLOGIN;
            END IF;
        END
        $$
        """
    )
    op.execute(f"GRANT USAGE ON SCHEMA public TO {WRITER}, {READER}")
    op.execute(f"GRANT SELECT, INSERT ON events, quarantine TO {WRITER}")
    # The writer reserves a batch's event ids up front (nextval) and COPYs them in.
    op.execute(f"GRANT USAGE ON SEQUENCE events_id_seq TO {WRITER}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE ON interactions TO {WRITER}")
    op.execute(f"GRANT EXECUTE ON FUNCTION auditor_ensure_event_partition(date) TO {WRITER}")
    op.execute(f"GRANT SELECT ON events, interactions, quarantine TO {READER}")


def downgrade() -> None:
    op.execute("DROP TABLE quarantine")
    op.execute("DROP TABLE interactions")
    op.execute("DROP TABLE events")
    op.execute("DROP FUNCTION auditor_interactions_derive()")
    op.execute("DROP FUNCTION auditor_merge_account_states(jsonb, jsonb)")
    op.execute("DROP FUNCTION auditor_effective_state(jsonb)")
    op.execute("DROP FUNCTION auditor_ensure_event_partition(date)")
    op.execute("DROP FUNCTION auditor_reject_change()")
    op.execute(f"REVOKE ALL ON SCHEMA public FROM {WRITER}, {READER}")
    # Roles belong to the whole cluster; another database may still use them.
    for role in (WRITER, READER):
        op.execute(
            f"""
            DO $$
            BEGIN
                DROP ROLE IF EXISTS {role};
            EXCEPTION WHEN dependent_objects_still_exist THEN
                RAISE NOTICE 'role {role} is still used elsewhere; kept';
            END
            $$
            """
        )
