"""The access log tells the truth: client address, how an export ended, bounded rows for
unauthenticated requests; the API role writes it only through functions that stamp the time
and derive the token's name from proof it was presented.

Revision ID: 2026_12_01_access_log
Revises: 2026_12_01_privileges
Create Date: 2026-12-01

Written by hand. Constraint names follow auditor.db.NAMING_CONVENTION.

What the database checks, whatever the API process does:
- `at` is the database's clock at insert time (the API cannot choose it);
- a row carries a token's name and role only if the caller passed that token's sha256, which
  the API role cannot read from api_tokens: it learns it only from a client that presented the
  secret (authentication goes through auditor_authenticate, which returns no hash);
- an export's ending row follows a `started` row of the same token;
- a row of an unauthenticated request is small (endpoint <= 512 bytes, filters <= 2 KiB)
  (checked in the function, not a CHECK: rows written before this migration stay valid).
What it cannot check: that the request happened as described (method, path, status, rows are
the API's word), and that the API logged every request at all.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "2026_12_01_access_log"
down_revision: str | None = "2026_12_01_privileges"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

API = "auditor_api"
OUTCOMES = "('answered', 'started', 'completed', 'cut', 'failed')"

_LOG_ACCESS = """
CREATE FUNCTION auditor_log_access(
    p_token_hash text, p_method text, p_endpoint text, p_filters jsonb, p_status integer,
    p_rows bigint, p_client inet, p_outcome text, p_follows bigint, p_sha256 text,
    p_error text
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    v_name text;
    v_role text;
    v_id bigint;
BEGIN
    IF p_token_hash IS NOT NULL THEN
        -- revoked tokens too: an export may outlive its token's revocation
        SELECT t.name, t.role INTO v_name, v_role
        FROM public.api_tokens t WHERE t.token_hash = p_token_hash;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'auditor_log_access: no token has this hash'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
    END IF;
    IF v_name IS NULL AND (octet_length(p_endpoint) > 512
            OR octet_length(p_filters::text) > 2048) THEN
        -- an unauthenticated client must not be able to fill the disk with its requests
        RAISE EXCEPTION 'auditor_log_access: an unauthenticated request''s row is too large'
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
    IF p_follows IS NOT NULL THEN
        PERFORM 1 FROM public.access_log a
        WHERE a.id = p_follows AND a.outcome = 'started'
            AND a.token_name IS NOT DISTINCT FROM v_name;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'auditor_log_access: row % is not a started request of this token',
                p_follows USING ERRCODE = 'insufficient_privilege';
        END IF;
    END IF;
    INSERT INTO public.access_log (at, token_name, role, method, endpoint, filters, status,
        rows_returned, client, outcome, follows, sha256, error)
    VALUES (clock_timestamp(), v_name, v_role, p_method, p_endpoint, p_filters, p_status,
        p_rows, p_client, p_outcome, p_follows, p_sha256, p_error)
    RETURNING id INTO v_id;
    RETURN v_id;
END
$$
"""

_AUTHENTICATE = """
CREATE FUNCTION auditor_authenticate(p_token_hash text)
RETURNS TABLE (id bigint, name text, role text, created_at timestamptz,
    revoked_at timestamptz, last_used_at timestamptz)
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    WITH found AS (
        SELECT t.id, t.name, t.role, t.created_at, t.revoked_at, t.last_used_at
        FROM public.api_tokens t
        WHERE t.token_hash = p_token_hash AND t.revoked_at IS NULL
    ), touched AS (
        -- at most one write a minute per token: `auditor token list` shows which are in use
        UPDATE public.api_tokens t SET last_used_at = now()
        FROM found
        WHERE t.id = found.id
            AND (t.last_used_at IS NULL OR t.last_used_at < now() - interval '1 minute')
        RETURNING t.id
    )
    SELECT found.* FROM found
$$
"""

_SIGNATURES = (
    "auditor_log_access(text, text, text, jsonb, integer, bigint, inet, text, bigint, text, text)",
    "auditor_authenticate(text)",
)


def upgrade() -> None:
    op.execute("ALTER TABLE access_log ADD COLUMN client inet")
    op.execute("ALTER TABLE access_log ADD COLUMN outcome text NOT NULL DEFAULT 'answered'")
    op.execute("ALTER TABLE access_log ADD COLUMN follows bigint")
    op.execute("ALTER TABLE access_log ADD COLUMN sha256 text")
    op.execute("ALTER TABLE access_log ADD COLUMN error text")
    op.execute(
        f"ALTER TABLE access_log ADD CONSTRAINT ck_access_log_outcome CHECK (outcome IN {OUTCOMES})"
    )
    op.execute(
        "ALTER TABLE access_log ADD CONSTRAINT fk_access_log_follows_access_log"
        " FOREIGN KEY (follows) REFERENCES access_log (id)"
    )
    op.execute(_LOG_ACCESS)
    op.execute(_AUTHENTICATE)
    for signature in _SIGNATURES:
        op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO {API}")
    # Only through the functions from now on: no chosen time, no name without its hash.
    op.execute(f"REVOKE INSERT ON access_log FROM {API}")
    op.execute(f"REVOKE SELECT, UPDATE ON api_tokens FROM {API}")


def downgrade() -> None:
    op.execute(f"GRANT SELECT, UPDATE (last_used_at) ON api_tokens TO {API}")
    op.execute(f"GRANT INSERT ON access_log TO {API}")
    for signature in _SIGNATURES:
        op.execute(f"DROP FUNCTION {signature}")
    op.execute("ALTER TABLE access_log DROP CONSTRAINT fk_access_log_follows_access_log")
    op.execute("ALTER TABLE access_log DROP CONSTRAINT ck_access_log_outcome")
    for column in ("error", "sha256", "follows", "outcome", "client"):
        op.execute(f"ALTER TABLE access_log DROP COLUMN {column}")
