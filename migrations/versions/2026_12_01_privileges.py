"""Privileges as narrow as the work: the API role stands alone, readers lose the access log.

Revision ID: 2026_12_01_privileges
Revises: 2026_11_25_one_account_index
Create Date: 2026-12-01

Written by hand. What each group role may do after this revision is the matrix in
tests/security/test_privileges.py (rendered in docs/security.md):

* auditor_reader (BI, ad-hoc SQL) no longer reads access_log: who asked the API what is for
  the API's admins only. It never read api_tokens.
* auditor_api is no longer a member of auditor_reader (which gave it quarantine, session_log
  and account_leases, none of which it reads). It gets exactly the tables its endpoints read,
  and alembic_version so that /readyz can tell whether the database is at the head.
* auditor_writer keeps INSERT but loses SELECT on session_log and quarantine: the worker only
  appends to them. INSERT ... ON CONFLICT (receipt_id) needs SELECT on the conflict column,
  so it keeps that column alone (not the raw bytes). On coverage_intervals it may
  update only what a heartbeat or a close changes: an interval's account, worker and start
  are fixed once written.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "2026_12_01_privileges"
down_revision: str | None = "2026_11_25_one_account_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WRITER = "auditor_writer"
READER = "auditor_reader"
API = "auditor_api"
API_READS = "events, interactions, coverage_intervals, access_log"
COVERAGE_UPDATES = "heartbeat_at, ended_at, end_reason"


def upgrade() -> None:
    op.execute(f"REVOKE SELECT ON access_log FROM {READER}")
    op.execute(f"REVOKE {READER} FROM {API}")
    op.execute(f"GRANT USAGE ON SCHEMA public TO {API}")
    op.execute(f"GRANT SELECT ON {API_READS} TO {API}")
    op.execute(f"GRANT SELECT ON alembic_version TO {API}")
    op.execute(f"REVOKE SELECT ON session_log, quarantine FROM {WRITER}")
    op.execute(f"GRANT SELECT (receipt_id) ON quarantine TO {WRITER}")
    op.execute(f"REVOKE UPDATE ON coverage_intervals FROM {WRITER}")
    op.execute(f"GRANT UPDATE ({COVERAGE_UPDATES}) ON coverage_intervals TO {WRITER}")


def downgrade() -> None:
    op.execute(f"REVOKE UPDATE ({COVERAGE_UPDATES}) ON coverage_intervals FROM {WRITER}")
    op.execute(f"GRANT UPDATE ON coverage_intervals TO {WRITER}")
    op.execute(f"REVOKE SELECT (receipt_id) ON quarantine FROM {WRITER}")
    op.execute(f"GRANT SELECT ON session_log, quarantine TO {WRITER}")
    op.execute(f"REVOKE SELECT ON alembic_version FROM {API}")
    op.execute(f"REVOKE SELECT ON {API_READS} FROM {API}")
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {API}")
    op.execute(f"GRANT {READER} TO {API}")
    op.execute(f"GRANT SELECT ON access_log TO {READER}")
