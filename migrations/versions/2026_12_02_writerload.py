"""User-data changes instead of per-event GIN indexes; the BI summaries' freshness and counts.

Revision ID: 2026_12_02_writerload
Revises: 2026_12_02_event_ids
Create Date: 2026-12-02

Written by hand. Constraint names follow auditor.db.NAMING_CONVENTION.

- `user_data_values`: per event whose userData differs from its interaction's previous map,
  the keys whose value it brought (`changed`, a jsonb object), in a jsonb_path_ops GIN index.
  The writer adds these rows insert-only (auditor.store.userdata_values), where the GIN
  indexes on every event's userData and on the projection took one entry per key per event
  (issue 12: 9-30% of the writer's rate). Exact user-data filters start from it: the
  interactions that ever held each value, whose rows (current userData, each event's own)
  are then checked by containment.
- The GIN indexes ix_events_user_data and ix_interactions_user_data go.
- A retention purge forgets an interaction's values with its projection row (auditor_retention
  may delete them).
- The upgrade fills the table from the stored events itself, in one statement (no separate
  command; docs/api.md has its time at 5,200,000 events).
- `bi_v1.summary_freshness` (and `bi.summary_freshness`): how far the BI summary refresh has
  got, which now yields to a busy writer (docs/bi.md).
- auditor_bi_refresh() adds the new events' counts to bi_daily_volumes instead of recounting
  every event of the days they fall on (a whole day of events per batch: at 4,000,000 events
  a day each batch read them all). Events are never altered, so the sums stay exact.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "2026_12_02_writerload"
down_revision: str | None = "2026_12_02_event_ids"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WRITER = "auditor_writer"
READER = "auditor_reader"
API = "auditor_api"
RETENTION = "auditor_retention"
BI_VERSION = "bi_v1"

# Frozen copy of auditor.store.userdata.EVENT_USER_DATA_SQL (on events AS e) as of this
# revision.
EVENT_USER_DATA = (
    "((CASE WHEN jsonb_typeof(e.payload->'data') = 'object' THEN e.payload->'data'"
    " WHEN NOT e.payload ? 'data'"
    " AND e.payload ?| ARRAY['messageType', 'notificationType', 'openmedia', 'referenceId']"
    " THEN e.payload END)->'openmedia'->'userData')"
)

# Per interaction, each event carrying a userData object with the one before it, and the keys
# whose value differs (auditor.store.userdata_values.BACKFILL as of this revision).
BACKFILL = f"""
INSERT INTO user_data_values (interaction_id, event_id, changed)
SELECT s.interaction_id, s.id, jsonb_object_agg(kv.key, kv.value)
FROM (
    SELECT e.interaction_id, e.id, {EVENT_USER_DATA} AS m,
           lag({EVENT_USER_DATA}) OVER (PARTITION BY e.interaction_id ORDER BY e.id) AS before
    FROM events AS e
    WHERE e.interaction_id IS NOT NULL AND jsonb_typeof({EVENT_USER_DATA}) = 'object'
) AS s, jsonb_each(s.m) AS kv
WHERE s.before IS NULL OR s.before->kv.key IS DISTINCT FROM kv.value
GROUP BY s.interaction_id, s.id
"""

FRESHNESS = f"""
CREATE VIEW {BI_VERSION}.summary_freshness AS
SELECT s.last_event_id AS summarised_through_event_id,
       s.refreshed_at AS refreshed_at,
       (SELECT max(e.id) FROM events AS e) AS latest_event_id,
       (SELECT count(*) FROM events AS e WHERE e.id > s.last_event_id) AS events_pending,
       (SELECT min(e.stored_at) FROM events AS e WHERE e.id > s.last_event_id)
           AS oldest_pending_stored_at
FROM bi_refresh_state AS s
WHERE s.id = 1
"""

FRESHNESS_COMMENTS = {
    None: "How far the summaries behind agent_segments, interactions, user_data_changes,"
    " lifecycle_findings and daily_volumes have got (one row). Those views are exact either"
    " way: events past the summaries are computed live, so a refresh that is behind makes"
    " them slower, never wrong. The refresh yields to a busy writer and catches up when it"
    " is idle (docs/bi.md).",
    "summarised_through_event_id": "Every event up to this id is in the summaries.",
    "refreshed_at": "When the summaries last moved forward (NULL: never).",
    "latest_event_id": "The newest stored event's id.",
    "events_pending": "Stored events not yet in the summaries (computed live by the views).",
    "oldest_pending_stored_at": "When the oldest event not yet in the summaries was stored"
    " (NULL: none pending): the summaries are at most now() minus this behind.",
}


# auditor_bi_refresh()'s day recount (2026_12_01_bi) and what replaces it; the rest of the
# function is kept as the catalog has it.
_REFRESH = "'auditor_bi_refresh(integer)'::regprocedure"
# Where either version starts, and where the function goes on.
_DAYS_FROM = ("    days := ARRAY(", "    WITH added AS (")
_DAYS_TO = "    UPDATE bi_refresh_state SET last_event_id"
RECOUNT_DAYS = """    days := ARRAY(SELECT DISTINCT (received_at AT TIME ZONE 'UTC')::date
                  FROM events WHERE id > watermark AND id <= high);
    DELETE FROM bi_daily_volumes WHERE day = ANY(days);
    INSERT INTO bi_daily_volumes
SELECT c.day, c.media_type, c.state, c.notification_type, c.account, count(*) AS events
FROM (
    SELECT (e.received_at AT TIME ZONE 'UTC')::date AS day, e.media_type, e.state,
           e.notification_type, e.account
    FROM events AS e
    WHERE e.received_at >= (SELECT min(d)::timestamp AT TIME ZONE 'UTC' FROM unnest(days) AS d)
      AND e.received_at < (SELECT (max(d) + 1)::timestamp AT TIME ZONE 'UTC'
                           FROM unnest(days) AS d)
) AS c
WHERE c.day = ANY (days)
GROUP BY 1, 2, 3, 4, 5;
"""
# One refresh at a time (its advisory lock), so the update-then-insert needs no constraint.
ADD_TO_DAYS = """    WITH added AS (
        SELECT (received_at AT TIME ZONE 'UTC')::date AS day, media_type, state,
               notification_type, account, count(*) AS events
        FROM events WHERE id > watermark AND id <= high
        GROUP BY 1, 2, 3, 4, 5
    ), bumped AS (
        UPDATE bi_daily_volumes AS t SET events = t.events + a.events
        FROM added AS a
        WHERE t.day = a.day AND t.account = a.account
          AND t.media_type IS NOT DISTINCT FROM a.media_type
          AND t.state IS NOT DISTINCT FROM a.state
          AND t.notification_type IS NOT DISTINCT FROM a.notification_type
        RETURNING t.day, t.media_type, t.state, t.notification_type, t.account
    )
    INSERT INTO bi_daily_volumes
    SELECT a.* FROM added AS a
    WHERE NOT EXISTS (
        SELECT 1 FROM bumped AS b
        WHERE b.day = a.day AND b.account = a.account
          AND b.media_type IS NOT DISTINCT FROM a.media_type
          AND b.state IS NOT DISTINCT FROM a.state
          AND b.notification_type IS NOT DISTINCT FROM a.notification_type);
"""


def _replace_day_counting(new: str) -> None:
    bind = op.get_bind()
    definition = bind.exec_driver_sql(f"SELECT pg_get_functiondef({_REFRESH})").scalar_one()
    start = min(definition.index(m) for m in _DAYS_FROM if m in definition)
    end = definition.index(_DAYS_TO)
    bind.exec_driver_sql(definition[:start] + new + definition[end:])


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def upgrade() -> None:
    op.execute(
        """CREATE TABLE user_data_values (
            interaction_id text   NOT NULL,
            event_id       bigint NOT NULL,
            changed        jsonb  NOT NULL
        )"""
    )
    # Filled before the index exists: one bulk build, not millions of insertions.
    op.execute(BACKFILL)
    op.execute(
        "CREATE INDEX ix_user_data_values_changed ON user_data_values"
        " USING gin (changed jsonb_path_ops)"
    )
    op.execute("ANALYZE user_data_values")
    op.execute(f"GRANT SELECT, INSERT ON user_data_values TO {WRITER}")
    op.execute(f"GRANT SELECT ON user_data_values TO {READER}, {API}")
    # A purge forgets the values of the interactions it forgets (auditor.retention.purge).
    op.execute(f"GRANT SELECT, DELETE ON user_data_values TO {RETENTION}")
    op.execute("DROP INDEX ix_events_user_data")
    op.execute("DROP INDEX ix_interactions_user_data")

    op.execute(FRESHNESS)
    for column, text in FRESHNESS_COMMENTS.items():
        target = (
            f"VIEW {BI_VERSION}.summary_freshness"
            if column is None
            else f"COLUMN {BI_VERSION}.summary_freshness.{column}"
        )
        op.execute(f"COMMENT ON {target} IS {_literal(text)}")
    op.execute(f"SELECT auditor_bi_alias('{BI_VERSION}', 'summary_freshness')")
    _replace_day_counting(ADD_TO_DAYS)


def downgrade() -> None:
    _replace_day_counting(RECOUNT_DAYS)
    op.execute("DROP VIEW bi.summary_freshness")
    op.execute(f"DROP VIEW {BI_VERSION}.summary_freshness")
    op.execute(
        "CREATE INDEX ix_events_user_data ON events USING gin"
        f" (({EVENT_USER_DATA.replace('e.payload', 'payload')}) jsonb_path_ops)"
    )
    op.execute(
        "CREATE INDEX ix_interactions_user_data ON interactions"
        " USING gin (user_data jsonb_path_ops)"
    )
    op.execute("DROP TABLE user_data_values")
