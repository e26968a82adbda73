"""Answers "as known at T": only rows stored (events.stored_at, not received_at) at or before T.

An event's stored_at is the start of the transaction that stored it; rows a worker received
during an outage and drained from its spool later carry the later time. The projection as of
T is recomputed from the interaction's events stored by T with the same rules as the writer's
fold (auditor.store.projection) and the derive trigger (state, capabilities, completed_at from
account_states). Only interactions touched after T need it: the others' current row is the
answer (found through the BRIN index on stored_at, migration 2026_12_02_userdata_index).
"""

from __future__ import annotations

from auditor import shapes
from auditor.store.userdata import EVENT_USER_DATA_SQL, OPENMEDIA_SQL

# The projection's columns the API shows (auditor.shapes): each as-of row computes them all.
PROJECTION_COLUMNS = ", ".join(str(f.column) for f in shapes.INTERACTION.fields)
_FROM_P = ", ".join(f"p.{f.column}" for f in shapes.INTERACTION.fields)

# {iid}: a SQL expression naming the interaction (a parameter or an outer column);
# {t}: the as_of parameter. Each "newest non-null" reads the (interaction_id, id) index
# backwards and stops at the first match; the aggregate reads the interaction's events once.
_PROJECTION_AS_OF = f"""
SELECT {{iid}} AS interaction_id, eff->>'state' AS state, eff->'capabilities' AS capabilities,
       media_type, openmedia_type, uri, user_data, accounts, account_states,
       first_seen_at, last_seen_at,
       CASE WHEN eff->>'state' = 'Completed' THEN (eff->>'at')::timestamptz END AS completed_at,
       event_count, first_event_id, last_event_id, last_notification_type, last_reference_id
FROM (
    SELECT
        (SELECT media_type FROM events WHERE interaction_id = {{iid}} AND stored_at <= {{t}}
            AND media_type IS NOT NULL ORDER BY id DESC LIMIT 1) AS media_type,
        (SELECT openmedia_type FROM events WHERE interaction_id = {{iid}} AND stored_at <= {{t}}
            AND openmedia_type IS NOT NULL ORDER BY id DESC LIMIT 1) AS openmedia_type,
        (SELECT {OPENMEDIA_SQL}->>'uri' FROM events
            WHERE interaction_id = {{iid}} AND stored_at <= {{t}}
            AND jsonb_typeof({OPENMEDIA_SQL}->'uri') = 'string' ORDER BY id DESC LIMIT 1) AS uri,
        (SELECT {EVENT_USER_DATA_SQL} FROM events
            WHERE interaction_id = {{iid}} AND stored_at <= {{t}}
            AND jsonb_typeof({EVENT_USER_DATA_SQL}) = 'object' ORDER BY id DESC LIMIT 1)
            AS user_data,
        last.notification_type AS last_notification_type,
        last.reference_id AS last_reference_id,
        agg.*,
        (SELECT coalesce(jsonb_object_agg(s.account, jsonb_build_object(
                    'state', s.state,
                    'capabilities', (SELECT CASE WHEN jsonb_typeof(c.caps) = 'array'
                                                 THEN c.caps END
                                     FROM (SELECT {OPENMEDIA_SQL}->'capabilities' AS caps
                                           FROM events WHERE interaction_id = {{iid}}
                                           AND id = s.id) AS c),
                    'event_id', s.id,
                    'at', to_char(s.received_at AT TIME ZONE 'UTC',
                                  'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'))), '{{{{}}}}'::jsonb)
         FROM (SELECT DISTINCT ON (account) account, id, state, received_at FROM events
               WHERE interaction_id = {{iid}} AND stored_at <= {{t}} AND state IS NOT NULL
               ORDER BY account, id DESC) AS s) AS account_states
    FROM (SELECT array_agg(DISTINCT account ORDER BY account) AS accounts,
                 min(received_at) AS first_seen_at, max(received_at) AS last_seen_at,
                 min(id) AS first_event_id, max(id) AS last_event_id, count(*) AS event_count
          FROM events WHERE interaction_id = {{iid}} AND stored_at <= {{t}}) AS agg
    LEFT JOIN LATERAL (SELECT notification_type, reference_id FROM events
                       WHERE interaction_id = {{iid}} AND id = agg.last_event_id) AS last ON true
    WHERE agg.event_count > 0
) AS folded
CROSS JOIN LATERAL (SELECT auditor_effective_state(folded.account_states) AS eff) AS derived
"""


def projection_sql(iid: str, t: str) -> str:
    """The as-of projection of one interaction (no row when none of its events was stored by
    T); ``iid`` and ``t`` are fixed SQL text (placeholders or column names), never input."""
    return _PROJECTION_AS_OF.format(iid=iid, t=t)


# Interactions with an event stored after T: their current row is not the answer as of T.
TOUCHED_AFTER = (
    "SELECT DISTINCT interaction_id FROM events"
    " WHERE stored_at > {t} AND interaction_id IS NOT NULL"
)


def as_of_interactions_sql(t: str) -> str:
    """Every interaction as known at T, with the projection's columns: the current rows of
    those untouched since T, and the recomputed rows of the others."""
    touched = TOUCHED_AFTER.format(t=t)
    return f"""(
    SELECT {PROJECTION_COLUMNS} FROM interactions AS i
    WHERE i.first_seen_at IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM ({touched}) AS x WHERE x.interaction_id = i.interaction_id)
    UNION ALL
    SELECT {_FROM_P} FROM ({touched}) AS x
    CROSS JOIN LATERAL ({projection_sql("x.interaction_id", t)}) AS p
)"""
