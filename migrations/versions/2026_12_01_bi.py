"""BI: the versioned, documented views `bi_v1.*` (aliased as `bi.*`) and the role auditor_bi.

Revision ID: 2026_12_01_bi
Revises: 2026_12_01_access_log
Create Date: 2026-12-01

Written by hand. The views read what the writer stores (events, the interactions projection,
coverage_intervals) and run with the owner's rights, so auditor_bi needs SELECT on the views
only: never on a base table, the access log or the tokens. A released view never changes;
a change is a new schema bi_v2 beside bi_v1 (docs/bi.md). The user-data columns of
bi_v1.events follow the setting table bi_user_data_columns: editing it rebuilds the view.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "2026_12_01_bi"
down_revision: str | None = "2026_12_01_access_log"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BI = "auditor_bi"
WRITER = "auditor_writer"
API = "auditor_api"
READER = "auditor_reader"
VERSION = "bi_v1"

# The openmedia resource of a stored message: inside `data`, or the bare inner object.
_OPENMEDIA = "coalesce(e.payload->'data'->'openmedia', e.payload->'openmedia')"

# A coverage interval's effective end, as auditor.store.coverage_queries defines it: its end,
# else now() while its heartbeat is fresh (15 s), else its last heartbeat (the worker died).
_LIVE = "{t}.heartbeat_at >= now() - interval '15 seconds'"
_END = "coalesce({t}.ended_at, CASE WHEN " + _LIVE + " THEN now() ELSE {t}.heartbeat_at END)"


def _end(alias: str) -> str:
    return _END.format(t=alias)


# Interactions with events newer than the last summary refresh (auditor_bi_refresh): the
# views compute those live and read the rest from the summary tables, so they are exact
# whether or not the refresh keeps up. A function, so that the watermark reaches the planner
# as a value (an index range over the newest ids), not as an unknown parameter (a third of
# the table by the planner's default guess).
PENDING_FUNCTION = """
CREATE FUNCTION auditor_bi_pending() RETURNS text[]
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    watermark bigint := (SELECT last_event_id FROM bi_refresh_state WHERE id = 1);
    found     text[];
BEGIN
    EXECUTE format('SELECT coalesce(array_agg(DISTINCT interaction_id), ''{}'') FROM events'
                   ' WHERE id > %s AND interaction_id IS NOT NULL', watermark)
        INTO found;
    RETURN found;
END
$$
"""
# A scalar subquery: computed once per query (an InitPlan), where a bare STABLE call in a
# filter would run again for every row. The cast keeps `= ANY (...)` an array comparison.
PENDING = "(SELECT auditor_bi_pending())::text[]"
PENDING_DAYS = "(SELECT auditor_bi_pending_days())::date[]"


def _refreshed(alias: str) -> str:
    """The summary row's interaction has no event past the watermark."""
    return (
        f"NOT EXISTS (SELECT 1 FROM unnest({PENDING}) AS q(interaction_id)"
        f" WHERE q.interaction_id = {alias}.interaction_id)"
    )


# The newest non-null value of `expr` by event id over a window frame (PostgreSQL has no
# IGNORE NULLS): the id, zero-padded, sorts the concatenation by id.
def _last_by_id(expr: str, frame: str) -> str:
    return (
        f"substr(max(lpad(e.id::text, 20, '0') || {expr}) FILTER (WHERE {expr} IS NOT NULL)"
        f" OVER {frame}, 21)"
    )


FINDING_CODES = [
    (
        "EVENT_AFTER_COMPLETED",
        "An event on a session after that session's Completed; only a new Invited may follow.",
        "Completed comes with capabilities [] (Reject, Transfer, Complete): no operation is"
        " left to the session (S-OMREJECT, S-OMXFER).",
    ),
    (
        "PROCESSING_WITHOUT_INVITE",
        "Processing on a session that was neither invited nor answered an Accept.",
        "An inbound item reaches Processing only by Accept on an Invited item, a"
        " StatusChange carrying the Accept's referenceId; only Create (Outbound) starts in"
        " Processing (S-OMACCEPT, S-OMCREATE).",
    ),
    (
        "ACCEPT_WITHOUT_INVITE",
        "An Accept (StatusChange to Processing with a referenceId) on a session never invited.",
        "Accept is an operation on an item in state Invited for this agent (S-OMACCEPT).",
    ),
    (
        "SEEN_WITHOUT_INVITE",
        "A session saw an inbound interaction without ever receiving its invitation.",
        "Routing and Transfer deliver an Invited to the receiving agent's own session first"
        " (S-OMRES, S-OMXFER).",
    ),
    (
        "OPERATION_FAILED",
        "An Error notification: the request with this referenceId failed.",
        "notificationType Error is sent when an operation on the openmedia resource fails;"
        " referenceId ties it to the request (S-OMMSG). GWS does not name the operation.",
    ),
    (
        "STATE_OUT_OF_ORDER",
        "A session's state moved against the documented order.",
        "Documented moves: Invited -> Processing (Accept), Invited -> Completed (Reject),"
        " Processing -> Completed (Complete, Transfer), Completed -> Invited (a new"
        " invitation) (S-OMRES, S-OMACCEPT, S-OMREJECT, S-OMXFER).",
    ),
]

# The events' fixed columns; the user-data columns are appended by auditor_bi_build_events().
EVENTS_COLUMNS = f"""
    e.id AS event_id, e.received_at, e.stored_at, e.kind, e.account, e.channel,
    e.message_type, e.notification_type, e.interaction_id, e.reference_id, e.media_type,
    e.openmedia_type, e.state, e.error_code, e.error_message,
    (e.received_at AT TIME ZONE 'UTC')::date AS day,
    CASE WHEN jsonb_typeof({_OPENMEDIA}->'capabilities') = 'array'
         THEN coalesce((SELECT string_agg(c, ',') FROM jsonb_array_elements_text(
                   {_OPENMEDIA}->'capabilities') AS c), '')
    END AS capabilities"""


# Defaults of the setting: the user-data keys analysts group by most in the sample data.
DEFAULT_USER_DATA_COLUMNS = [
    ("case_id", "CaseId", 1),
    ("customer_segment", "CustomerSegment", 2),
    ("service_type", "ServiceType", 3),
    ("priority", "Priority", 4),
    ("strategy_name", "RStrategyName", 5),
    ("target_agent", "RTargetAgentSelected", 6),
]

# One row per (interaction, account): what that agent's session saw of the interaction.
LIVE_SEGMENTS = """
SELECT g.interaction_id, g.account, g.media_type, g.openmedia_type,
       g.first_seen_at, g.last_seen_at, g.invited_at, g.accepted_at, g.completed_at,
       g.last_state,
       CASE WHEN g.last_state IS DISTINCT FROM 'Completed' THEN 'open'
            WHEN g.accepted_at IS NULL AND g.invited_at IS NOT NULL THEN 'rejected'
            WHEN g.accepted_at IS NOT NULL
                 AND max(g.last_invited_at) OVER (PARTITION BY g.interaction_id) > g.accepted_at
                 THEN 'transferred'
            ELSE 'completed' END AS outcome,
       extract(epoch FROM g.accepted_at - g.invited_at) AS time_to_accept_seconds,
       CASE WHEN g.last_state = 'Completed'
            THEN extract(epoch FROM g.completed_at - g.accepted_at) END AS handle_time_seconds,
       g.event_count, g.error_count
FROM (
    SELECT e.interaction_id, e.account,
           substr(max(lpad(e.id::text, 20, '0') || e.media_type), 21) AS media_type,
           substr(max(lpad(e.id::text, 20, '0') || e.openmedia_type), 21) AS openmedia_type,
           min(e.received_at) AS first_seen_at,
           max(e.received_at) AS last_seen_at,
           min(e.received_at) FILTER (WHERE e.state = 'Invited') AS invited_at,
           max(e.received_at) FILTER (WHERE e.state = 'Invited') AS last_invited_at,
           min(e.received_at) FILTER (
               WHERE e.state = 'Processing' AND e.notification_type = 'StatusChange'
           ) AS accepted_at,
           max(e.received_at) FILTER (WHERE e.state = 'Completed') AS completed_at,
           substr(max(lpad(e.id::text, 20, '0') || e.state), 21) AS last_state,
           count(*) AS event_count,
           count(*) FILTER (WHERE e.notification_type = 'Error') AS error_count
    FROM events AS e
    WHERE e.interaction_id IS NOT NULL
    GROUP BY e.interaction_id, e.account
) AS g
"""


def _covered(account: str, point: str, start_op: str, end_op: str) -> str:
    """Whether `point` lies in one of the account's intervals (started_at start_op point,
    effective end end_op point). Newest start first, so the scan stops at once in the usual
    case (the latest interval that started holds the point) whatever the account's history."""
    return f"""EXISTS (
            SELECT 1 FROM (
                SELECT {_end("c")} AS end_at FROM coverage_intervals AS c
                WHERE c.account = {account} AND c.started_at {start_op} {point}
                ORDER BY c.started_at DESC OFFSET 0) AS newest_first
            WHERE newest_first.end_at {end_op} {point})"""


def _gap_for(account: str, lo: str, hi: str) -> str:
    """True when [lo, hi] is not wholly covered by the account's intervals. A gap inside the
    range either holds lo or hi, or ends where an interval starts: so the range is covered
    when lo and hi are, and so is the moment before every start inside the range."""
    return f"""(
        NOT {_covered(account, lo, "<=", ">")}
        OR NOT {_covered(account, hi, "<=", ">=")}
        OR EXISTS (
            SELECT 1 FROM coverage_intervals AS s
            WHERE s.account = {account} AND s.started_at > {lo} AND s.started_at <= {hi}
              AND NOT {_covered(account, "s.started_at", "<", ">=")}))"""


# One interaction's facts from the projection and its agents' segments, computed live (the
# refresh stores them in bi_interaction_facts; the view reads those of refreshed interactions).
LIVE_INTERACTION_FACTS = """
SELECT i.interaction_id, i.media_type, i.openmedia_type, i.state AS final_state,
       i.first_seen_at, i.last_seen_at, s.first_invited_at, s.accepted_at, i.completed_at,
       extract(epoch FROM s.accepted_at - s.first_invited_at) AS time_to_accept_seconds,
       extract(epoch FROM i.completed_at - s.accepted_at) AS handle_time_seconds,
       extract(epoch FROM i.completed_at - i.first_seen_at) AS lifetime_seconds,
       s.transfers, s.rejects, s.agents_involved, s.agents, s.completed_by,
       i.event_count, s.error_count, i.accounts
FROM interactions AS i
CROSS JOIN LATERAL (
    SELECT min(a.invited_at) AS first_invited_at,
           min(a.accepted_at) AS accepted_at,
           count(*) FILTER (WHERE a.outcome = 'transferred') AS transfers,
           count(*) FILTER (WHERE a.outcome = 'rejected') AS rejects,
           count(*) AS agents_involved,
           string_agg(a.account, ',' ORDER BY a.first_seen_at, a.account) AS agents,
           (array_agg(a.account ORDER BY a.completed_at DESC)
                FILTER (WHERE a.outcome = 'completed'))[1] AS completed_by,
           coalesce(sum(a.error_count), 0)::bigint AS error_count
    FROM bi_live_segments AS a
    WHERE a.interaction_id = i.interaction_id
) AS s
"""

_FACT_COLUMNS = (
    "interaction_id, media_type, openmedia_type, final_state, first_seen_at, last_seen_at,"
    " first_invited_at, accepted_at, completed_at, time_to_accept_seconds,"
    " handle_time_seconds, lifetime_seconds, transfers, rejects, agents_involved, agents,"
    " completed_by, event_count, error_count, accounts"
)

# Coverage changes after the refresh (a session's interval grows or ends), so the gap flag is
# always computed at query time.
INTERACTIONS = f"""
SELECT x.interaction_id, x.media_type, x.openmedia_type, x.final_state, x.first_seen_at,
       x.last_seen_at, x.first_invited_at, x.accepted_at, x.completed_at,
       x.time_to_accept_seconds, x.handle_time_seconds, x.lifetime_seconds, x.transfers,
       x.rejects, x.agents_involved, x.agents, x.completed_by, x.event_count, x.error_count,
       EXISTS (
           SELECT 1 FROM unnest(x.accounts) AS acc(account)
           WHERE {
    _gap_for(
        "acc.account",
        "x.first_seen_at",
        "CASE WHEN x.completed_at IS NOT NULL THEN x.last_seen_at ELSE now() END",
    )
}
       ) AS has_coverage_gap
FROM (
    SELECT {_FACT_COLUMNS} FROM bi_interaction_facts AS t WHERE {_refreshed("t")}
    UNION ALL
    SELECT {_FACT_COLUMNS} FROM bi_live_interaction_facts
    WHERE interaction_id = ANY ({PENDING})
) AS x
"""

LIVE_USER_DATA_CHANGES = f"""
SELECT c.event_id, c.received_at, c.account, c.interaction_id, c.kind, c.notification_type,
       c.reference_id, d.key, d.change,
       d.old_value #>> '{{}}' AS old_value,
       d.new_value #>> '{{}}' AS new_value,
       jsonb_typeof(d.old_value) AS old_type,
       jsonb_typeof(d.new_value) AS new_type,
       c.previous_user_data IS NULL AS is_initial
FROM (
    SELECT u.id AS event_id, u.received_at, u.account, u.interaction_id, u.kind,
           u.notification_type, u.reference_id, u.user_data,
           lag(u.user_data) OVER (PARTITION BY u.interaction_id ORDER BY u.id)
               AS previous_user_data
    FROM (
        SELECT e.id, e.received_at, e.account, e.interaction_id, e.kind,
               e.notification_type, e.reference_id, {_OPENMEDIA}->'userData' AS user_data
        FROM events AS e
        WHERE e.interaction_id IS NOT NULL
    ) AS u
    WHERE jsonb_typeof(u.user_data) = 'object'
) AS c
-- Most events repeat the previous map unchanged: one jsonb comparison skips them.
CROSS JOIN LATERAL (
    SELECT n.key,
           CASE WHEN c.previous_user_data ? n.key THEN 'changed' ELSE 'added' END AS change,
           c.previous_user_data -> n.key AS old_value, n.value AS new_value
    FROM jsonb_each(c.user_data) AS n
    WHERE (c.previous_user_data -> n.key) IS DISTINCT FROM n.value
    UNION ALL
    SELECT o.key, 'removed', o.value, NULL
    FROM jsonb_each(c.previous_user_data) AS o
    WHERE NOT c.user_data ? o.key
) AS d
WHERE c.previous_user_data IS DISTINCT FROM c.user_data
"""

_SEGMENT_COLUMNS = (
    "interaction_id, account, media_type, openmedia_type, first_seen_at, last_seen_at,"
    " invited_at, accepted_at, completed_at, last_state, outcome, time_to_accept_seconds,"
    " handle_time_seconds, event_count, error_count"
)

AGENT_SEGMENTS = f"""
SELECT {_SEGMENT_COLUMNS} FROM bi_segments AS t WHERE {_refreshed("t")}
UNION ALL
SELECT {_SEGMENT_COLUMNS} FROM bi_live_segments WHERE interaction_id = ANY ({PENDING})
"""

_CHANGE_COLUMNS = (
    "event_id, received_at, account, interaction_id, kind, notification_type, reference_id,"
    " key, change, old_value, new_value, old_type, new_type, is_initial"
)

USER_DATA_CHANGES = f"""
SELECT {_CHANGE_COLUMNS} FROM bi_user_data_changes AS t WHERE {_refreshed("t")}
UNION ALL
SELECT {_CHANGE_COLUMNS} FROM bi_live_user_data_changes
WHERE interaction_id = ANY ({PENDING})
"""

_STEP = (
    "(PARTITION BY e.interaction_id, e.account ORDER BY e.id"
    " ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)"
)
_UPTO = (
    "(PARTITION BY e.interaction_id, e.account ORDER BY e.id"
    " ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"
)
_WHOLE = "(PARTITION BY e.interaction_id, e.account)"
_DOCUMENTED_STATES = "('Invited', 'Processing', 'Completed')"
_DOCUMENTED_MOVES = (
    "(('Invited', 'Processing'), ('Invited', 'Completed'), ('Processing', 'Completed'),"
    " ('Completed', 'Invited'))"
)
_ACCEPT = "(s.notification_type = 'StatusChange' AND s.reference_id IS NOT NULL)"
_INBOUND = "s.openmedia_type IS DISTINCT FROM 'Outbound'"
_FIRST_PROCESSING_UNINVITED = (
    "s.kind = 'notification' AND s.state = 'Processing' AND NOT s.processing_before"
    f" AND NOT s.invited_before AND NOT s.snapshot_so_far AND {_INBOUND}"
)

# Each session's events in id order with what came before them on that session; then every
# rule of FINDING_CODES on each step. Errors without an openmedia resource (so without an
# interaction id) come from the second branch.
LIVE_FINDINGS = f"""
SELECT r.code,
       -- Worded only for the rules that fired: most steps fire none.
       CASE r.code
           WHEN 'EVENT_AFTER_COMPLETED' THEN
               format('%s %s after Completed', s.notification_type, coalesce(s.state, '-'))
           WHEN 'PROCESSING_WITHOUT_INVITE' THEN
               format('%s to Processing, no Invited before on this session',
                      s.notification_type)
           WHEN 'ACCEPT_WITHOUT_INVITE' THEN
               format('Processing for referenceId %s, no Invited before on this session',
                      s.reference_id)
           WHEN 'SEEN_WITHOUT_INVITE' THEN
               format('first seen as %s %s, never Invited on this session',
                      s.notification_type, coalesce(s.state, '-'))
           WHEN 'OPERATION_FAILED' THEN
               format('referenceId %s: %s %s', coalesce(s.reference_id, '-'),
                      coalesce(s.error_code, '-'), coalesce(s.error_message, '-'))
           ELSE format('%s -> %s', s.previous_state, s.state)
       END AS detail,
       s.interaction_id, s.account, s.event_id, s.received_at, s.kind,
       s.notification_type, s.reference_id, s.previous_state, s.state, s.media_type,
       s.error_code, s.error_message
FROM (
    SELECT e.id AS event_id, e.received_at, e.kind, e.account, e.interaction_id,
           e.notification_type, e.reference_id, e.state, e.media_type, e.openmedia_type,
           e.error_code, e.error_message,
           {_last_by_id("e.state", _STEP)} AS previous_state,
           coalesce(bool_or(e.state = 'Invited') OVER {_STEP}, false) AS invited_before,
           coalesce(bool_or(e.state = 'Processing') OVER {_STEP}, false)
               AS processing_before,
           bool_or(e.kind = 'snapshot') OVER {_UPTO} AS snapshot_so_far,
           coalesce(bool_or(e.state = 'Invited') OVER {_WHOLE}, false) AS ever_invited,
           bool_or(e.kind = 'snapshot') OVER {_WHOLE} AS ever_snapshot,
           row_number() OVER (PARTITION BY e.interaction_id, e.account ORDER BY e.id)
               AS nth
    FROM events AS e
    WHERE e.interaction_id IS NOT NULL
) AS s
CROSS JOIN LATERAL (VALUES
    ('EVENT_AFTER_COMPLETED',
     s.kind = 'notification' AND s.previous_state = 'Completed'
         AND s.state IS DISTINCT FROM 'Invited'),
    ('PROCESSING_WITHOUT_INVITE', {_FIRST_PROCESSING_UNINVITED} AND NOT {_ACCEPT}),
    ('ACCEPT_WITHOUT_INVITE', {_FIRST_PROCESSING_UNINVITED} AND {_ACCEPT}),
    ('SEEN_WITHOUT_INVITE',
     s.nth = 1 AND NOT s.ever_invited AND NOT s.ever_snapshot AND {_INBOUND}),
    ('OPERATION_FAILED', s.notification_type = 'Error'),
    ('STATE_OUT_OF_ORDER',
     s.kind = 'notification' AND s.previous_state IN {_DOCUMENTED_STATES}
         AND s.state IN {_DOCUMENTED_STATES} AND s.state <> s.previous_state
         AND (s.previous_state, s.state) NOT IN {_DOCUMENTED_MOVES})
) AS r(code, fired)
WHERE r.fired
"""

_FINDING_COLUMNS = (
    "code, detail, interaction_id, account, event_id, received_at, kind, notification_type,"
    " reference_id, previous_state, state, media_type, error_code, error_message"
)

# Stored findings of the interactions refreshed, the live ones of those with newer events,
# and Errors without an openmedia resource (no interaction to refresh; read by index).
LIFECYCLE_FINDINGS = f"""
SELECT f.code, k.explanation, f.detail, f.interaction_id, f.account, f.event_id,
       f.received_at, f.kind, f.notification_type, f.reference_id, f.previous_state, f.state,
       f.media_type, f.error_code, f.error_message
FROM (
    SELECT {_FINDING_COLUMNS} FROM bi_findings AS t WHERE {_refreshed("t")}
    UNION ALL
    SELECT {_FINDING_COLUMNS} FROM bi_live_findings
    WHERE interaction_id = ANY ({PENDING})
    UNION ALL
    SELECT 'OPERATION_FAILED', format('referenceId %s: %s %s', coalesce(e.reference_id, '-'),
                                      coalesce(e.error_code, '-'),
                                      coalesce(e.error_message, '-')),
           e.interaction_id, e.account, e.id, e.received_at, e.kind, e.notification_type,
           e.reference_id, NULL::text, e.state, e.media_type, e.error_code, e.error_message
    FROM events AS e
    WHERE e.notification_type = 'Error' AND e.interaction_id IS NULL
) AS f
JOIN {VERSION}.finding_codes AS k ON k.code = f.code
"""

COVERAGE = f"""
WITH effective AS (
    SELECT c.account, c.worker_id, c.started_at, {_end("c")} AS end_at,
           c.ended_at IS NULL AND {_LIVE.format(t="c")} AS live
    FROM coverage_intervals AS c
), reached AS (
    SELECT x.*, max(x.end_at) OVER (PARTITION BY x.account ORDER BY x.started_at, x.end_at
                                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS reach
    FROM effective AS x
), numbered AS (
    SELECT r.*, count(*) FILTER (WHERE r.reach IS NULL OR r.started_at > r.reach)
                    OVER (PARTITION BY r.account ORDER BY r.started_at, r.end_at
                          ROWS UNBOUNDED PRECEDING) AS island
    FROM reached AS r
), islands AS (
    SELECT n.account, min(n.started_at) AS started_at, max(n.end_at) AS ended_at,
           bool_or(n.live) AS live, count(*) AS sessions,
           string_agg(DISTINCT n.worker_id, ',' ORDER BY n.worker_id) AS workers
    FROM numbered AS n
    GROUP BY n.account, n.island
)
SELECT account, 'connected'::text AS kind, started_at, ended_at,
       extract(epoch FROM ended_at - started_at) AS seconds, live AS ongoing, sessions, workers
FROM islands
UNION ALL
SELECT account, 'gap'::text, ended_at, gap_end, extract(epoch FROM gap_end - ended_at),
       next_start IS NULL, NULL::bigint, NULL::text
FROM (
    SELECT g.*, lead(g.started_at) OVER (PARTITION BY g.account ORDER BY g.started_at)
                    AS next_start,
           coalesce(lead(g.started_at) OVER (PARTITION BY g.account ORDER BY g.started_at),
                    CASE WHEN NOT g.live THEN now() END) AS gap_end
    FROM islands AS g
) AS gaps
WHERE gap_end > ended_at
"""

# Counting a day's events again is cheap (they sit together: BRIN on received_at); counting
# a year is not. The refresh recounts the days its events fall on into bi_daily_volumes; the
# view counts live only the days with events past the watermark.
PENDING_DAYS_FUNCTION = """
CREATE FUNCTION auditor_bi_pending_days() RETURNS date[]
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    watermark bigint := (SELECT last_event_id FROM bi_refresh_state WHERE id = 1);
    found     date[];
BEGIN
    EXECUTE format('SELECT coalesce(array_agg(DISTINCT (received_at AT TIME ZONE ''UTC'')::date),'
                   ' ''{}'') FROM events WHERE id > %s', watermark)
        INTO found;
    RETURN found;
END
$$
"""


# The events of the given days (a date[] expression), counted per group.
def _count_days(days: str) -> str:
    return f"""
SELECT c.day, c.media_type, c.state, c.notification_type, c.account, count(*) AS events
FROM (
    SELECT (e.received_at AT TIME ZONE 'UTC')::date AS day, e.media_type, e.state,
           e.notification_type, e.account
    FROM events AS e
    WHERE e.received_at >= (SELECT min(d)::timestamp AT TIME ZONE 'UTC' FROM unnest({days}) AS d)
      AND e.received_at < (SELECT (max(d) + 1)::timestamp AT TIME ZONE 'UTC'
                           FROM unnest({days}) AS d)
) AS c
WHERE c.day = ANY ({days})
GROUP BY 1, 2, 3, 4, 5"""


DAILY_VOLUMES = f"""
SELECT day, media_type, state, notification_type, account, events
FROM bi_daily_volumes
WHERE NOT (day = ANY ({PENDING_DAYS}))
UNION ALL
{_count_days(PENDING_DAYS)}
"""

FINDING_CODES_VIEW = (
    "SELECT code, explanation, protocol FROM (VALUES {rows}) AS c(code, explanation, protocol)"
)

# Every view and column, with its comment: COMMENT ON for bi_v1, copied to the bi alias.
COMMENTS: dict[str, tuple[str, dict[str, str]]] = {
    "events": (
        "One row per stored notification or snapshot (events table), with the extracted"
        " columns and the configured user-data keys as text columns ud_*.",
        {
            "event_id": "The event's id: the global arrival order (unique).",
            "received_at": "When auditor received it (stamped by the receiver; GWS sends no time).",
            "stored_at": "When the writer stored it in PostgreSQL.",
            "kind": "notification (pushed by GWS) or snapshot (state re-read after a gap).",
            "account": "The agent session (GWS user) that received it.",
            "channel": "The Bayeux channel, e.g. /v2/me/openmedia.",
            "message_type": "data.messageType, e.g. OpenmediaStateChangeMessage.",
            "notification_type": "data.notificationType: StatusChange, PropertiesUpdated,"
            " Error (Snapshot for snapshots).",
            "interaction_id": "openmedia.id, the Interaction Server id (null when the message"
            " carried no openmedia resource).",
            "reference_id": "data.referenceId as text: ties the notification to the request"
            " that caused it; null for unsolicited ones (a new invitation).",
            "media_type": "openmedia.mediaType, e.g. email, workitem.",
            "openmedia_type": "openmedia.openmediaType: Inbound or Outbound.",
            "state": "openmedia.state: Invited, Processing, Completed.",
            "error_code": "data.errorCode of an Error notification.",
            "error_message": "data.errorMessage of an Error notification.",
            "day": "received_at's date in UTC.",
            "capabilities": "openmedia.capabilities joined with commas (empty string: an empty"
            " list; null: none sent).",
        },
    ),
    "agent_segments": (
        "One row per interaction and agent session that saw it: when that agent was"
        " invited, accepted and completed, and how its part ended.",
        {
            "interaction_id": "The interaction.",
            "account": "The agent session.",
            "media_type": "The newest mediaType this session saw.",
            "openmedia_type": "The newest openmediaType this session saw (Inbound, Outbound).",
            "first_seen_at": "This session's first event of the interaction.",
            "last_seen_at": "This session's last event of the interaction.",
            "invited_at": "This session's first Invited.",
            "accepted_at": "This session's first StatusChange to Processing (the Accept;"
            " for an Outbound item, the Create).",
            "completed_at": "This session's last Completed.",
            "last_state": "The newest state this session saw.",
            "outcome": "open (not Completed on this session), rejected (Invited then"
            " Completed without Processing), transferred (Completed after Processing while"
            " another invitation followed the accept), completed.",
            "time_to_accept_seconds": "accepted_at - invited_at, in seconds.",
            "handle_time_seconds": "completed_at - accepted_at in seconds, when the"
            " session's part ended Completed.",
            "event_count": "Events of this session for the interaction.",
            "error_count": "Error notifications of this session for the interaction.",
        },
    ),
    "interactions": (
        "One row per interaction: derived timestamps, durations (seconds), transfers and"
        " whether its lifetime has a coverage gap.",
        {
            "interaction_id": "The interaction (openmedia.id).",
            "media_type": "The newest mediaType seen.",
            "openmedia_type": "Inbound or Outbound.",
            "final_state": "The state now: the newest state of any session still handling it,"
            " else the newest state overall (as the API shows it).",
            "first_seen_at": "The first event of the interaction, on any session.",
            "last_seen_at": "The last event of the interaction, on any session.",
            "first_invited_at": "The first Invited on any session.",
            "accepted_at": "The first StatusChange to Processing on any session (the first"
            " Accept; for an Outbound item, the Create).",
            "completed_at": "When the interaction reached its final Completed (null while open).",
            "time_to_accept_seconds": "accepted_at - first_invited_at, in seconds.",
            "handle_time_seconds": "completed_at - accepted_at, in seconds: from the first"
            " accept to the final completion, transfers included.",
            "lifetime_seconds": "completed_at - first_seen_at, in seconds.",
            "transfers": "Agent sessions whose part ended transferred.",
            "rejects": "Agent sessions whose part ended rejected.",
            "agents_involved": "Agent sessions that saw the interaction.",
            "agents": "Those sessions, comma-separated, in the order they first saw it.",
            "completed_by": "The session whose part ended completed (null if none).",
            "event_count": "Events of the interaction.",
            "error_count": "Error notifications of the interaction.",
            "has_coverage_gap": "True when a session that saw it was not wholly covered"
            " (connected and subscribed) from first_seen_at to its end (last_seen_at once"
            " completed, else now): events may be missing. Exclude or flag these.",
        },
    ),
    "user_data_changes": (
        "One row per user-data key added, changed or removed, between an event's userData"
        " and the interaction's previous userData (on any session; GWS sends the whole map"
        " each time).",
        {
            "event_id": "The event that carried the new userData.",
            "received_at": "When that event was received.",
            "account": "The session that received it.",
            "interaction_id": "The interaction.",
            "kind": "notification or snapshot.",
            "notification_type": "The event's notificationType.",
            "reference_id": "The event's referenceId: the request that made the change.",
            "key": "The user-data key.",
            "change": "added, changed or removed.",
            "old_value": "The value before as text (JSON text for objects and arrays; null"
            " when added or JSON null).",
            "new_value": "The value after as text (null when removed or JSON null).",
            "old_type": "JSON type of the value before (string, number, boolean, null,"
            " object, array); null when added.",
            "new_type": "JSON type of the value after; null when removed.",
            "is_initial": "True for the interaction's first userData: every key is added.",
        },
    ),
    "finding_codes": (
        "The lifecycle rules: one row per finding code, with the documented behaviour it"
        " checks (docs/bi.md; sources in PROTOCOL.md).",
        {
            "code": "The stable finding code.",
            "explanation": "What the finding means.",
            "protocol": "The documented behaviour the rule rests on.",
        },
    ),
    "lifecycle_findings": (
        "One row per finding: an event that departs from the documented Open Media"
        " lifecycle, with a stable code (see finding_codes).",
        {
            "code": "The stable finding code.",
            "explanation": "What the code means.",
            "detail": "This finding's particulars.",
            "interaction_id": "The interaction (null for an Error without openmedia).",
            "account": "The session the event came from.",
            "event_id": "The event the finding is about.",
            "received_at": "When that event was received.",
            "kind": "notification or snapshot.",
            "notification_type": "The event's notificationType.",
            "reference_id": "The event's referenceId (for OPERATION_FAILED: the failed request).",
            "previous_state": "The session's state before this event.",
            "state": "The event's state.",
            "media_type": "The event's mediaType.",
            "error_code": "errorCode of an Error.",
            "error_message": "errorMessage of an Error.",
        },
    ),
    "coverage": (
        "Per account: connected intervals (overlapping sessions merged) and the gaps between"
        " them, up to now.",
        {
            "account": "The agent account.",
            "kind": "connected or gap.",
            "started_at": "Start of the interval or gap.",
            "ended_at": "End: a live interval ends now; a dead worker's at its last"
            " heartbeat; an open gap ends now.",
            "seconds": "ended_at - started_at, in seconds.",
            "ongoing": "The interval is live, or the gap is still open.",
            "sessions": "Worker sessions merged into the interval (null for gaps).",
            "workers": "Their worker ids, comma-separated (null for gaps).",
        },
    ),
    "daily_volumes": (
        "Event counts per UTC day, mediaType, state, notificationType and account.",
        {
            "day": "The UTC date of received_at.",
            "media_type": "mediaType.",
            "state": "state.",
            "notification_type": "notificationType.",
            "account": "The agent session.",
            "events": "Events stored.",
        },
    ),
}

# Created in this order (interactions reads agent_segments; findings reads finding_codes).
VIEWS = [
    "finding_codes",
    "agent_segments",
    "interactions",
    "user_data_changes",
    "lifecycle_findings",
    "coverage",
    "daily_volumes",
]


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _view_sql(name: str) -> str:
    if name == "finding_codes":
        rows = ", ".join(
            f"({_literal(c)}, {_literal(e)}, {_literal(p)})" for c, e, p in FINDING_CODES
        )
        return FINDING_CODES_VIEW.format(rows=rows)
    return {
        "agent_segments": AGENT_SEGMENTS,
        "interactions": INTERACTIONS,
        "user_data_changes": USER_DATA_CHANGES,
        "lifecycle_findings": LIFECYCLE_FINDINGS,
        "coverage": COVERAGE,
        "daily_volumes": DAILY_VOLUMES,
    }[name]


def _comment_statements(name: str) -> list[str]:
    view_comment, columns = COMMENTS[name]
    statements = [f"COMMENT ON VIEW {VERSION}.{name} IS {_literal(view_comment)}"]
    statements += [
        f"COMMENT ON COLUMN {VERSION}.{name}.{column} IS {_literal(text)}"
        for column, text in columns.items()
    ]
    return statements


# The summaries behind agent_segments, user_data_changes and lifecycle_findings: the live
# views' rows, recomputed per interaction by auditor_bi_refresh() for every interaction with
# events past the watermark. Row-level DELETE + INSERT in the caller's transaction: readers
# see the old rows or the new ones, never wait.
SUMMARY_TABLES = [
    """CREATE TABLE bi_refresh_state (
        id            integer     NOT NULL DEFAULT 1,
        last_event_id bigint      NOT NULL DEFAULT 0,
        refreshed_at  timestamptz,
        CONSTRAINT pk_bi_refresh_state PRIMARY KEY (id),
        CONSTRAINT ck_bi_refresh_state_one_row CHECK (id = 1)
    )""",
    "INSERT INTO bi_refresh_state (id, last_event_id) VALUES (1, 0)",
    """CREATE TABLE bi_segments (
        interaction_id         text        NOT NULL,
        account                text        NOT NULL,
        media_type             text,
        openmedia_type         text,
        first_seen_at          timestamptz NOT NULL,
        last_seen_at           timestamptz NOT NULL,
        invited_at             timestamptz,
        accepted_at            timestamptz,
        completed_at           timestamptz,
        last_state             text,
        outcome                text        NOT NULL,
        time_to_accept_seconds numeric,
        handle_time_seconds    numeric,
        event_count            bigint      NOT NULL,
        error_count            bigint      NOT NULL,
        CONSTRAINT pk_bi_segments PRIMARY KEY (interaction_id, account)
    )""",
    "CREATE INDEX ix_bi_segments_first_seen_at ON bi_segments (first_seen_at)",
    """CREATE TABLE bi_user_data_changes (
        event_id          bigint      NOT NULL,
        received_at       timestamptz NOT NULL,
        account           text        NOT NULL,
        interaction_id    text        NOT NULL,
        kind              text        NOT NULL,
        notification_type text,
        reference_id      text,
        key               text        NOT NULL,
        change            text        NOT NULL,
        old_value         text,
        new_value         text,
        old_type          text,
        new_type          text,
        is_initial        boolean     NOT NULL,
        CONSTRAINT pk_bi_user_data_changes PRIMARY KEY (event_id, key)
    )""",
    "CREATE INDEX ix_bi_user_data_changes_interaction_id ON bi_user_data_changes (interaction_id)",
    "CREATE INDEX ix_bi_user_data_changes_received_at ON bi_user_data_changes (received_at)",
    """CREATE TABLE bi_findings (
        code              text        NOT NULL,
        detail            text        NOT NULL,
        interaction_id    text        NOT NULL,
        account           text        NOT NULL,
        event_id          bigint      NOT NULL,
        received_at       timestamptz NOT NULL,
        kind              text        NOT NULL,
        notification_type text,
        reference_id      text,
        previous_state    text,
        state             text,
        media_type        text,
        error_code        text,
        error_message     text,
        CONSTRAINT pk_bi_findings PRIMARY KEY (event_id, code)
    )""",
    "CREATE INDEX ix_bi_findings_interaction_id ON bi_findings (interaction_id)",
    "CREATE INDEX ix_bi_findings_received_at ON bi_findings (received_at)",
    "CREATE INDEX ix_bi_findings_account_event_id ON bi_findings (account, event_id)",
    """CREATE TABLE bi_interaction_facts (
        interaction_id         text        NOT NULL,
        media_type             text,
        openmedia_type         text,
        final_state            text,
        first_seen_at          timestamptz NOT NULL,
        last_seen_at           timestamptz NOT NULL,
        first_invited_at       timestamptz,
        accepted_at            timestamptz,
        completed_at           timestamptz,
        time_to_accept_seconds numeric,
        handle_time_seconds    numeric,
        lifetime_seconds       numeric,
        transfers              bigint      NOT NULL,
        rejects                bigint      NOT NULL,
        agents_involved        bigint      NOT NULL,
        agents                 text,
        completed_by           text,
        event_count            bigint      NOT NULL,
        error_count            bigint      NOT NULL,
        accounts               text[]      NOT NULL,
        CONSTRAINT pk_bi_interaction_facts PRIMARY KEY (interaction_id)
    )""",
    "CREATE INDEX ix_bi_interaction_facts_first_seen_at ON bi_interaction_facts (first_seen_at)",
    "CREATE INDEX ix_bi_interaction_facts_completed_at ON bi_interaction_facts (completed_at)",
    """CREATE TABLE bi_daily_volumes (
        day               date   NOT NULL,
        media_type        text,
        state             text,
        notification_type text,
        account           text   NOT NULL,
        events            bigint NOT NULL
    )""",
    "CREATE INDEX ix_bi_daily_volumes_day ON bi_daily_volumes (day)",
]

# Summary table -> the live view it stores.
SUMMARIES = {
    "bi_segments": "bi_live_segments",
    "bi_interaction_facts": "bi_live_interaction_facts",
    "bi_user_data_changes": "bi_live_user_data_changes",
    "bi_findings": "bi_live_findings",
}

# pg_advisory_xact_lock key for the refresh: 'birefr' in ASCII.
REFRESH_LOCK_KEY = 0x626972656672

_REFRESH_STEPS = "\n    ".join(
    f"DELETE FROM {table} WHERE interaction_id = ANY(affected);\n"
    f"    INSERT INTO {table} SELECT * FROM {live} WHERE interaction_id = ANY(affected);"
    for table, live in SUMMARIES.items()
)

# SECURITY DEFINER: the worker's role (auditor_writer) may run it without any right on the
# summary tables. Returns the number of events consumed (0: caught up, or another refresh
# is running).
REFRESH_FUNCTION = f"""
CREATE FUNCTION auditor_bi_refresh(p_max_events integer DEFAULT 20000) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    watermark bigint;
    high      bigint;
    consumed  integer;
    affected  text[];
    days      date[];
BEGIN
    IF NOT pg_try_advisory_xact_lock({REFRESH_LOCK_KEY}) THEN
        RETURN 0;
    END IF;
    SELECT last_event_id INTO watermark FROM bi_refresh_state WHERE id = 1;
    SELECT max(id), count(*) INTO high, consumed
    FROM (SELECT id FROM events WHERE id > watermark ORDER BY id LIMIT p_max_events) AS n;
    IF consumed = 0 THEN
        RETURN 0;
    END IF;
    SELECT coalesce(array_agg(DISTINCT interaction_id), '{{}}') INTO affected
    FROM events WHERE id > watermark AND id <= high AND interaction_id IS NOT NULL;
    {_REFRESH_STEPS}
    days := ARRAY(SELECT DISTINCT (received_at AT TIME ZONE 'UTC')::date
                  FROM events WHERE id > watermark AND id <= high);
    DELETE FROM bi_daily_volumes WHERE day = ANY(days);
    INSERT INTO bi_daily_volumes {_count_days("days")};
    UPDATE bi_refresh_state SET last_event_id = high, refreshed_at = now() WHERE id = 1;
    RETURN consumed;
END
$$
"""


# bi.<view> = SELECT * FROM <version>.<view>, with the same comments and grants.
ALIAS_FUNCTION = f"""
CREATE FUNCTION auditor_bi_alias(p_version text, p_view text) RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    source regclass := format('%I.%I', p_version, p_view)::regclass;
    col record;
BEGIN
    EXECUTE format('CREATE VIEW bi.%I AS SELECT * FROM %I.%I', p_view, p_version, p_view);
    EXECUTE format('COMMENT ON VIEW bi.%I IS %L', p_view,
                   'Alias of ' || p_version || '.' || p_view || ' (the current version). '
                   || coalesce(obj_description(source, 'pg_class'), ''));
    FOR col IN
        SELECT a.attname, col_description(a.attrelid, a.attnum) AS comment
        FROM pg_attribute AS a
        WHERE a.attrelid = source AND a.attnum > 0 AND NOT a.attisdropped
    LOOP
        EXECUTE format('COMMENT ON COLUMN bi.%I.%I IS %L', p_view, col.attname, col.comment);
    END LOOP;
    EXECUTE format('GRANT SELECT ON bi.%I TO {BI}, {READER}', p_view);
    EXECUTE format('GRANT SELECT ON %I.%I TO {BI}, {READER}', p_version, p_view);
END
$$
"""


def _build_events_function() -> str:
    comments = ";\n    ".join(_comment_statements("events"))
    return f"""
CREATE FUNCTION auditor_bi_build_events() RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    extra text := '';
    col record;
BEGIN
    FOR col IN SELECT column_name, user_data_key FROM bi_user_data_columns
               ORDER BY position, column_name
    LOOP
        extra := extra || format(
            ', {_OPENMEDIA.replace("'", "''")}->''userData''->>%L AS %I',
            col.user_data_key, 'ud_' || col.column_name);
    END LOOP;
    DROP VIEW IF EXISTS bi.events;
    DROP VIEW IF EXISTS {VERSION}.events;
    EXECUTE 'CREATE VIEW {VERSION}.events AS SELECT {EVENTS_COLUMNS.replace("'", "''")}'
            || extra || ' FROM events AS e';
    {comments};
    FOR col IN SELECT column_name, user_data_key FROM bi_user_data_columns LOOP
        EXECUTE format('COMMENT ON COLUMN {VERSION}.events.%I IS %L', 'ud_' || col.column_name,
                       format('userData key %s as text (setting bi_user_data_columns).',
                              col.user_data_key));
    END LOOP;
    PERFORM auditor_bi_alias('{VERSION}', 'events');
END
$$
"""


def upgrade() -> None:
    op.execute(
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{BI}') THEN
                CREATE ROLE {BI} NOLOGIN;
            END IF;
        END
        $$
        """
    )
    op.execute(f"CREATE SCHEMA {VERSION}")
    op.execute("CREATE SCHEMA bi")
    op.execute(
        f"COMMENT ON SCHEMA {VERSION} IS 'BI views, version 1: released views never change"
        " (docs/bi.md).'"
    )
    op.execute(
        f"COMMENT ON SCHEMA bi IS 'BI views of the current version ({VERSION}): bi.x ="
        f" SELECT * FROM {VERSION}.x.'"
    )
    op.execute(
        """
        CREATE TABLE bi_user_data_columns (
            column_name   text    NOT NULL,
            user_data_key text    NOT NULL,
            position      integer NOT NULL DEFAULT 0,
            CONSTRAINT pk_bi_user_data_columns PRIMARY KEY (column_name),
            CONSTRAINT ck_bi_user_data_columns_column_name
                CHECK (column_name ~ '^[a-z][a-z0-9_]{0,59}$')
        )
        """
    )
    op.execute(
        "COMMENT ON TABLE bi_user_data_columns IS 'Setting: the user-data keys shown as text"
        " columns ud_<column_name> of bi.events. Editing it rebuilds the view.'"
    )
    values = ", ".join(
        f"({_literal(c)}, {_literal(k)}, {p})" for c, k, p in DEFAULT_USER_DATA_COLUMNS
    )
    op.execute(
        f"INSERT INTO bi_user_data_columns (column_name, user_data_key, position) VALUES {values}"
    )
    op.execute(ALIAS_FUNCTION)
    op.execute(_build_events_function())
    op.execute(
        """
        CREATE FUNCTION auditor_bi_user_data_columns_changed() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM auditor_bi_build_events();
            RETURN NULL;
        END
        $$
        """
    )
    for statement in SUMMARY_TABLES:
        op.execute(statement)
    for name, sql in (
        ("bi_live_segments", LIVE_SEGMENTS),
        ("bi_live_user_data_changes", LIVE_USER_DATA_CHANGES),
        ("bi_live_findings", LIVE_FINDINGS),
        ("bi_live_interaction_facts", LIVE_INTERACTION_FACTS),
    ):
        op.execute(f"CREATE VIEW {name} AS {sql}")
    op.execute(REFRESH_FUNCTION)
    op.execute(PENDING_FUNCTION)
    op.execute(PENDING_DAYS_FUNCTION)
    op.execute("REVOKE ALL ON FUNCTION auditor_bi_pending_days() FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION auditor_bi_pending_days() TO {BI}, {READER}")
    op.execute("REVOKE ALL ON FUNCTION auditor_bi_pending() FROM PUBLIC")
    # Called by the views, so by whoever reads them: it reveals only interaction ids.
    op.execute(f"GRANT EXECUTE ON FUNCTION auditor_bi_pending() TO {BI}, {READER}")
    op.execute("REVOKE ALL ON FUNCTION auditor_bi_refresh(integer) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION auditor_bi_refresh(integer) TO {WRITER}")
    for name in VIEWS:
        op.execute(f"CREATE VIEW {VERSION}.{name} AS {_view_sql(name)}")
        for statement in _comment_statements(name):
            op.execute(statement)
        op.execute(f"SELECT auditor_bi_alias('{VERSION}', '{name}')")
    op.execute("SELECT auditor_bi_build_events()")
    op.execute(
        "CREATE TRIGGER bi_user_data_columns_rebuild AFTER INSERT OR UPDATE OR DELETE"
        " OR TRUNCATE ON bi_user_data_columns"
        " FOR EACH STATEMENT EXECUTE FUNCTION auditor_bi_user_data_columns_changed()"
    )
    for function in (
        "auditor_bi_alias(text, text)",
        "auditor_bi_build_events()",
        "auditor_bi_user_data_columns_changed()",
    ):
        op.execute(f"REVOKE ALL ON FUNCTION {function} FROM PUBLIC")
    op.execute(f"GRANT USAGE ON SCHEMA bi, {VERSION} TO {BI}, {READER}")
    # The API serves /api/v1/findings from the released version only (it is no member of
    # auditor_reader): that one view, and the pending function it calls.
    op.execute(f"GRANT USAGE ON SCHEMA {VERSION} TO {API}")
    op.execute(f"GRANT SELECT ON {VERSION}.lifecycle_findings TO {API}")
    op.execute(f"GRANT EXECUTE ON FUNCTION auditor_bi_pending() TO {API}")


def downgrade() -> None:
    op.execute("DROP SCHEMA bi CASCADE")
    op.execute(f"DROP SCHEMA {VERSION} CASCADE")
    op.execute("DROP TABLE bi_user_data_columns")
    op.execute("DROP FUNCTION auditor_bi_refresh(integer)")
    op.execute("DROP FUNCTION auditor_bi_pending()")
    op.execute("DROP FUNCTION auditor_bi_pending_days()")
    for view in (
        "bi_live_interaction_facts",
        "bi_live_findings",
        "bi_live_user_data_changes",
        "bi_live_segments",
    ):
        op.execute(f"DROP VIEW {view}")
    for table in (
        "bi_daily_volumes",
        "bi_interaction_facts",
        "bi_findings",
        "bi_user_data_changes",
        "bi_segments",
        "bi_refresh_state",
    ):
        op.execute(f"DROP TABLE {table}")
    op.execute("DROP FUNCTION auditor_bi_user_data_columns_changed()")
    op.execute("DROP FUNCTION auditor_bi_build_events()")
    op.execute("DROP FUNCTION auditor_bi_alias(text, text)")
    op.execute(
        f"""
        DO $$
        BEGIN
            DROP ROLE IF EXISTS {BI};
        EXCEPTION WHEN dependent_objects_still_exist THEN
            RAISE NOTICE 'role {BI} is still used elsewhere; kept';
        END
        $$
        """
    )
