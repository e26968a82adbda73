"""Coverage intervals, session log, account leases (worker scale-out), API tokens and the
append-only access log; an API role.

Revision ID: 2026_11_25_coverage_access
Revises: 2026_11_25_storage_core
Create Date: 2026-11-25

Written by hand. Constraint names follow auditor.db.NAMING_CONVENTION.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "2026_11_25_coverage_access"
down_revision: str | None = "2026_11_25_storage_core"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WRITER = "auditor_writer"
READER = "auditor_reader"
API = "auditor_api"


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE coverage_intervals (
            id           bigint GENERATED ALWAYS AS IDENTITY,
            account      text        NOT NULL,
            worker_id    text        NOT NULL,
            client_id    text,
            channels     text[]      NOT NULL,
            started_at   timestamptz NOT NULL,
            heartbeat_at timestamptz NOT NULL,
            ended_at     timestamptz,
            end_reason   text,
            CONSTRAINT pk_coverage_intervals PRIMARY KEY (id),
            CONSTRAINT ck_coverage_intervals_heartbeat_after_start
                CHECK (heartbeat_at >= started_at),
            CONSTRAINT ck_coverage_intervals_end_after_start
                CHECK (ended_at IS NULL OR ended_at >= started_at)
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_coverage_intervals_account_started_at"
        " ON coverage_intervals (account, started_at)"
    )
    op.execute("CREATE INDEX ix_coverage_intervals_started_at ON coverage_intervals (started_at)")
    op.execute(
        "CREATE INDEX ix_coverage_intervals_open ON coverage_intervals (account)"
        " WHERE ended_at IS NULL"
    )

    op.execute(
        """
        CREATE TABLE session_log (
            id        bigint GENERATED ALWAYS AS IDENTITY,
            at        timestamptz NOT NULL,
            account   text        NOT NULL,
            worker_id text        NOT NULL,
            event     text        NOT NULL,
            detail    text,
            CONSTRAINT pk_session_log PRIMARY KEY (id)
        )
        """
    )
    op.execute("CREATE INDEX ix_session_log_account_at ON session_log (account, at)")
    op.execute("CREATE INDEX ix_session_log_at ON session_log (at)")

    op.execute(
        """
        CREATE TABLE account_leases (
            account     text        NOT NULL,
            worker_id   text        NOT NULL,
            acquired_at timestamptz NOT NULL,
            renewed_at  timestamptz NOT NULL,
            expires_at  timestamptz NOT NULL,
            CONSTRAINT pk_account_leases PRIMARY KEY (account)
        )
        """
    )
    op.execute("CREATE INDEX ix_account_leases_worker_id ON account_leases (worker_id)")
    op.execute("CREATE INDEX ix_account_leases_expires_at ON account_leases (expires_at)")

    op.execute(
        """
        CREATE TABLE api_tokens (
            id           bigint GENERATED ALWAYS AS IDENTITY,
            name         text        NOT NULL,
            role         text        NOT NULL,
            token_hash   text        NOT NULL,
            created_at   timestamptz NOT NULL DEFAULT now(),
            revoked_at   timestamptz,
            last_used_at timestamptz,
            CONSTRAINT pk_api_tokens PRIMARY KEY (id),
            CONSTRAINT uq_api_tokens_name UNIQUE (name),
            CONSTRAINT uq_api_tokens_token_hash UNIQUE (token_hash),
            CONSTRAINT ck_api_tokens_role CHECK (role IN ('reader', 'exporter', 'admin'))
        )
        """
    )

    op.execute(
        """
        CREATE TABLE access_log (
            id            bigint GENERATED ALWAYS AS IDENTITY,
            at            timestamptz NOT NULL DEFAULT now(),
            token_name    text,
            role          text,
            method        text        NOT NULL,
            endpoint      text        NOT NULL,
            filters       jsonb       NOT NULL DEFAULT '{}'::jsonb,
            status        integer     NOT NULL,
            rows_returned bigint,
            CONSTRAINT pk_access_log PRIMARY KEY (id)
        )
        """
    )
    op.execute("CREATE INDEX ix_access_log_at ON access_log (at)")
    op.execute("CREATE INDEX ix_access_log_token_name_at ON access_log (token_name, at)")

    for table in ("session_log", "access_log"):
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}"
            " FOR EACH ROW EXECUTE FUNCTION auditor_reject_change()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}"
            " FOR EACH STATEMENT EXECUTE FUNCTION auditor_reject_change()"
        )

    op.execute(
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{API}') THEN
                CREATE ROLE {API} NOLOGIN IN ROLE {READER};
            END IF;
        END
        $$
        """
    )
    op.execute(f"GRANT SELECT, INSERT, UPDATE ON coverage_intervals TO {WRITER}")
    op.execute(f"GRANT SELECT, INSERT ON session_log TO {WRITER}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON account_leases TO {WRITER}")
    op.execute(
        f"GRANT SELECT ON coverage_intervals, session_log, account_leases, access_log TO {READER}"
    )
    # The API reads tokens to authenticate (hashes only) and records every read.
    op.execute(f"GRANT SELECT, UPDATE (last_used_at) ON api_tokens TO {API}")
    op.execute(f"GRANT INSERT ON access_log TO {API}")


def downgrade() -> None:
    for table in (
        "access_log",
        "api_tokens",
        "account_leases",
        "session_log",
        "coverage_intervals",
    ):
        op.execute(f"DROP TABLE {table}")
    op.execute(
        f"""
        DO $$
        BEGIN
            DROP ROLE IF EXISTS {API};
        EXCEPTION WHEN dependent_objects_still_exist THEN
            RAISE NOTICE 'role {API} is still used elsewhere; kept';
        END
        $$
        """
    )
