"""Schema as SQLAlchemy Core metadata (one constraint naming convention) and engine helpers.

The migrations in migrations/versions are the source of truth for the database; this metadata
mirrors them so that queries are typed and `auditor db check` can prove there is no drift.
Things SQLAlchemy does not model (partitions, triggers, functions, roles, grants) live only in
the migrations.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, INET, JSONB, UUID
from sqlalchemy.engine import URL, Connection, create_engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from auditor.config import DATABASE_URL, libpq_conninfo, redacted
from auditor.errors import ConfigError

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

TZ = DateTime(timezone=True)

events = Table(
    "events",
    metadata,
    Column("id", BigInteger, Identity(always=True), nullable=False),
    Column("receipt_id", UUID(as_uuid=True), nullable=False),
    Column("received_at", TZ, nullable=False),
    Column("stored_at", TZ, nullable=False, server_default=text("now()")),
    Column("kind", Text, nullable=False, server_default=text("'notification'")),
    Column("account", Text, nullable=False),
    Column("channel", Text),
    Column("message_type", Text),
    Column("notification_type", Text),
    Column("interaction_id", Text),
    Column("reference_id", Text),
    Column("media_type", Text),
    Column("openmedia_type", Text),
    Column("state", Text),
    Column("error_code", Text),
    Column("error_message", Text),
    Column("payload", JSONB, nullable=False),
    PrimaryKeyConstraint("id", "received_at"),
    UniqueConstraint("receipt_id", "received_at"),
    CheckConstraint("kind IN ('notification', 'snapshot')", name="kind"),
    CheckConstraint("jsonb_typeof(payload) = 'object'", name="payload_object"),
    Index(None, "interaction_id", "id"),
    Index(None, "reference_id", "id", postgresql_where=text("reference_id IS NOT NULL")),
    Index(None, "media_type", "state", "received_at"),
    Index(None, "notification_type", "received_at"),
    Index(None, "channel", "received_at"),
    Index(None, "received_at", postgresql_using="brin"),
    postgresql_partition_by="RANGE (received_at)",
)
# migration 2026_12_02_userdata_index: as_of answers find rows stored after T (BRIN: stored in
# commit order).
Index("ix_events_stored_at", events.c.stored_at, postgresql_using="brin")

interactions = Table(
    "interactions",
    metadata,
    Column("interaction_id", Text, nullable=False),
    Column("state", Text),
    Column("capabilities", JSONB),
    Column("media_type", Text),
    Column("openmedia_type", Text),
    Column("uri", Text),
    Column("user_data", JSONB),
    Column("user_data_event_id", BigInteger),
    # account -> {"state", "capabilities", "event_id", "at"}: each session's latest view.
    # The interaction's state is derived from it (see migrations), so a transfer whose two
    # notifications arrive in either order still shows the receiving agent's state.
    Column("account_states", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("accounts", ARRAY(Text), nullable=False, server_default=text("'{}'::text[]")),
    Column("first_seen_at", TZ, nullable=False),
    Column("last_seen_at", TZ, nullable=False),
    Column("first_event_id", BigInteger, nullable=False),
    Column("last_event_id", BigInteger, nullable=False),
    Column("event_count", BigInteger, nullable=False),
    Column("last_notification_type", Text),
    Column("last_reference_id", Text),
    Column("completed_at", TZ),
    PrimaryKeyConstraint("interaction_id"),
    Index(None, "state", "last_seen_at"),
    Index(None, "media_type", "state", "last_seen_at"),
    Index(None, "last_seen_at"),
    Index("ix_interactions_accounts", "accounts", postgresql_using="gin"),
)

# migration 2026_12_02_writerload: per event whose userData differs from its interaction's
# previous map, the values it brought (auditor.store.userdata_values); exact user-data filters
# start from its GIN index.
user_data_values = Table(
    "user_data_values",
    metadata,
    Column("interaction_id", Text, nullable=False),
    Column("event_id", BigInteger, nullable=False),
    Column("changed", JSONB, nullable=False),
    Index(
        None,
        "changed",
        postgresql_using="gin",
        postgresql_ops={"changed": "jsonb_path_ops"},
    ),
)

# migration 2026_12_04_refindex: where each referenceId's events are (derived data, not part of
# the record, like user_data_values). events is partitioned by received_at, and PostgreSQL has
# no global index: a referenceId lookup without a time range probed the partial reference_id
# index of every monthly partition (24 cold probes at a year of data, docs/scale.md). One
# B-tree here gives the lookup (event_id, received_at) in id order from its leaf pages alone,
# and the join to events on (id, received_at) prunes to the one partition holding each event.
# The writer fills it in the events' transaction (auditor.store.event_references); a retention
# purge deletes a dropped month's rows (the BRIN index on received_at finds them).
event_references = Table(
    "event_references",
    metadata,
    # Fixed-width columns first: no alignment padding in the row.
    Column("event_id", BigInteger, nullable=False),
    Column("received_at", TZ, nullable=False),
    Column("reference_id", Text, nullable=False),
    Index(None, "reference_id", "event_id", postgresql_include=["received_at"]),
    Index(None, "received_at", postgresql_using="brin"),
    comment="Where each referenceId's events are (event id and partition key): derived from"
    " events by the writer, not part of the record (docs/scale.md)",
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", BigInteger, Identity(always=True), nullable=False),
    Column("receipt_id", UUID(as_uuid=True), nullable=False),
    Column("received_at", TZ, nullable=False),
    Column("stored_at", TZ, nullable=False, server_default=text("now()")),
    Column("account", Text, nullable=False),
    Column("channel", Text),
    Column("reason", Text, nullable=False),
    # bytea, not text: what arrived may hold NUL bytes or invalid UTF-8, and must be kept as is.
    Column("raw", LargeBinary, nullable=False),
    PrimaryKeyConstraint("id"),
    UniqueConstraint("receipt_id"),
    Index(None, "received_at"),
)


# Coverage as data: when each agent session was connected and subscribed. An open interval
# (ended_at NULL) is extended by heartbeats; after a crash it ends at its last heartbeat.
coverage_intervals = Table(
    "coverage_intervals",
    metadata,
    Column("id", BigInteger, Identity(always=True), nullable=False),
    Column("account", Text, nullable=False),
    Column("worker_id", Text, nullable=False),
    Column("client_id", Text),
    Column("channels", ARRAY(Text), nullable=False),
    Column("started_at", TZ, nullable=False),
    Column("heartbeat_at", TZ, nullable=False),
    Column("ended_at", TZ),
    Column("end_reason", Text),
    # The lease fence the writing worker held (NULL: a worker without leases); checked by
    # PostgreSQL (migration 2026_12_02_fencing).
    Column("fence", BigInteger),
    PrimaryKeyConstraint("id"),
    CheckConstraint("heartbeat_at >= started_at", name="heartbeat_after_start"),
    CheckConstraint("ended_at IS NULL OR ended_at >= started_at", name="end_after_start"),
    Index(None, "account", "started_at"),
    Index(None, "started_at"),
    Index("ix_coverage_intervals_open", "account", postgresql_where=text("ended_at IS NULL")),
)

# What happened to each session, in order: login, handshake, re-handshake, subscribe,
# disconnect (with reason), snapshot, lease taken or released. Append-only.
session_log = Table(
    "session_log",
    metadata,
    Column("id", BigInteger, Identity(always=True), nullable=False),
    Column("at", TZ, nullable=False),
    Column("account", Text, nullable=False),
    Column("worker_id", Text, nullable=False),
    Column("event", Text, nullable=False),
    Column("detail", Text),
    Column("fence", BigInteger),  # as in coverage_intervals
    PrimaryKeyConstraint("id"),
    Index(None, "account", "at"),
    Index(None, "at"),
)

# Scale-out: each account is held by one worker at a time; a lease not renewed by its
# expiry may be taken by another worker.
account_leases = Table(
    "account_leases",
    metadata,
    Column("account", Text, nullable=False),
    Column("worker_id", Text, nullable=False),
    Column("acquired_at", TZ, nullable=False),
    Column("renewed_at", TZ, nullable=False),
    Column("expires_at", TZ, nullable=False),
    # The fencing token: a new value at every hand-over to another worker (docs/worker.md).
    Column("fence", BigInteger, Identity(always=False), nullable=False),
    PrimaryKeyConstraint("account"),
    UniqueConstraint("fence"),
    Index(None, "worker_id"),
    Index(None, "expires_at"),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", BigInteger, Identity(always=True), nullable=False),
    Column("name", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("token_hash", Text, nullable=False),  # sha256 hex of the secret; never the secret
    Column("created_at", TZ, nullable=False, server_default=text("now()")),
    Column("revoked_at", TZ),
    Column("last_used_at", TZ),
    PrimaryKeyConstraint("id"),
    UniqueConstraint("name"),
    UniqueConstraint("token_hash"),
    CheckConstraint("role IN ('reader', 'exporter', 'admin')", name="role"),
)

# Every API read and export, append-only.
access_log = Table(
    "access_log",
    metadata,
    Column("id", BigInteger, Identity(always=True), nullable=False),
    Column("at", TZ, nullable=False, server_default=text("now()")),
    Column("token_name", Text),
    Column("role", Text),
    Column("method", Text, nullable=False),
    Column("endpoint", Text, nullable=False),
    Column("filters", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("status", Integer, nullable=False),
    Column("rows_returned", BigInteger),
    # migration 2026_12_01_access_log: where the request came from and how it ended
    Column("client", INET),
    Column("outcome", Text, nullable=False, server_default=text("'answered'")),
    Column("follows", BigInteger),  # an export's ending row: the id of its `started` row
    Column("sha256", Text),  # a completed export: the hash its trailer carried
    Column("error", Text),  # a failed export: the error's class
    PrimaryKeyConstraint("id"),
    ForeignKeyConstraint(["follows"], ["access_log.id"]),
    CheckConstraint(
        "outcome IN ('answered', 'started', 'completed', 'cut', 'failed')", name="outcome"
    ),
    Index(None, "at"),
    Index(None, "token_name", "at"),
)


# --- Evidence (migration 2026_12_01_evidence; docs/evidence.md) -------------------------------
# The hash-chained record: one row per covered row, gapless positions in commit order.
# leaf_hash = SHA-256(0x00 || canonical bytes of the row), chain_hash = SHA-256(previous
# chain_hash || leaf_hash). Append-only; a statement trigger keeps positions gapless.
record = Table(
    "record",
    metadata,
    Column("position", BigInteger, nullable=False),
    Column("source", Text, nullable=False),
    Column("source_id", BigInteger, nullable=False),
    Column("leaf_hash", LargeBinary, nullable=False),
    Column("chain_hash", LargeBinary, nullable=False),
    Column("sealed_at", TZ, nullable=False, server_default=text("now()")),
    # Format 2 (migration 2026_12_03_chainv2): one row per writer batch of events.
    Column("format", SmallInteger, nullable=False, server_default=text("1")),
    Column("leaf_count", Integer),
    Column("leaves", LargeBinary),
    PrimaryKeyConstraint("position"),
    UniqueConstraint("source", "source_id"),
    CheckConstraint("position >= 1", name="position_from_one"),
    CheckConstraint(
        "source IN ('event', 'quarantine', 'coverage', 'access', 'checkpoint', 'hold', 'purge',"
        " 'release', 'batch')",
        name="source",
    ),
    CheckConstraint("octet_length(leaf_hash) = 32", name="leaf_hash_sha256"),
    CheckConstraint("octet_length(chain_hash) = 32", name="chain_hash_sha256"),
    CheckConstraint(
        "(format = 1 AND source <> 'batch' AND leaf_count IS NULL AND leaves IS NULL)"
        " OR (format = 2 AND source = 'batch' AND leaf_count >= 1"
        " AND octet_length(leaves) = 32 * leaf_count)",
        name="format",
    ),
)

# Per worker, the receipt time before which everything it received is stored in PostgreSQL
# (its spool is drained up to it): its coverage counts as complete only up to it.
drain_progress = Table(
    "drain_progress",
    metadata,
    Column("worker_id", Text, nullable=False),
    Column("stored_through", TZ, nullable=False),
    Column("updated_at", TZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("worker_id"),
)


# --- Query API (migration 2026_11_25_api) -----------------------------------------------------
# An account's events over a time range, newest or oldest first by id: the ids of a page come
# from this index alone, so only the rows returned are read from the table. It replaces the
# storage core's (account, received_at), its prefix (migration 2026_11_25_one_account_index).
Index("ix_events_account_received_at_id", events.c.account, events.c.received_at, events.c.id)


# --- BI (migration 2026_12_01_bi) ---------------------------------------------------------------
# The setting behind bi_v1.events' user-data columns; editing it rebuilds the view (a trigger).
bi_user_data_columns = Table(
    "bi_user_data_columns",
    metadata,
    Column("column_name", Text, nullable=False),
    Column("user_data_key", Text, nullable=False),
    Column("position", Integer, nullable=False, server_default=text("0")),
    PrimaryKeyConstraint("column_name"),
    CheckConstraint("column_name ~ '^[a-z][a-z0-9_]{0,59}$'", name="column_name"),
    comment="Setting: the user-data keys shown as text columns ud_<column_name> of bi.events."
    " Editing it rebuilds the view.",
)


# Summaries behind bi_v1.agent_segments, user_data_changes and lifecycle_findings, refreshed
# per interaction by auditor_bi_refresh() past the watermark in bi_refresh_state.
bi_refresh_state = Table(
    "bi_refresh_state",
    metadata,
    Column("id", Integer, nullable=False, server_default=text("1")),
    Column("last_event_id", BigInteger, nullable=False, server_default=text("0")),
    Column("refreshed_at", TZ),
    PrimaryKeyConstraint("id"),
    CheckConstraint("id = 1", name="one_row"),
)

bi_segments = Table(
    "bi_segments",
    metadata,
    Column("interaction_id", Text, nullable=False),
    Column("account", Text, nullable=False),
    Column("media_type", Text),
    Column("openmedia_type", Text),
    Column("first_seen_at", TZ, nullable=False),
    Column("last_seen_at", TZ, nullable=False),
    Column("invited_at", TZ),
    Column("accepted_at", TZ),
    Column("completed_at", TZ),
    Column("last_state", Text),
    Column("outcome", Text, nullable=False),
    Column("time_to_accept_seconds", Numeric),
    Column("handle_time_seconds", Numeric),
    Column("event_count", BigInteger, nullable=False),
    Column("error_count", BigInteger, nullable=False),
    PrimaryKeyConstraint("interaction_id", "account"),
    Index(None, "first_seen_at"),
)

bi_user_data_changes = Table(
    "bi_user_data_changes",
    metadata,
    Column("event_id", BigInteger, nullable=False),
    Column("received_at", TZ, nullable=False),
    Column("account", Text, nullable=False),
    Column("interaction_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("notification_type", Text),
    Column("reference_id", Text),
    Column("key", Text, nullable=False),
    Column("change", Text, nullable=False),
    Column("old_value", Text),
    Column("new_value", Text),
    Column("old_type", Text),
    Column("new_type", Text),
    Column("is_initial", Boolean, nullable=False),
    PrimaryKeyConstraint("event_id", "key"),
    Index(None, "interaction_id"),
    Index(None, "received_at"),
)

bi_findings = Table(
    "bi_findings",
    metadata,
    Column("code", Text, nullable=False),
    Column("detail", Text, nullable=False),
    Column("interaction_id", Text, nullable=False),
    Column("account", Text, nullable=False),
    Column("event_id", BigInteger, nullable=False),
    Column("received_at", TZ, nullable=False),
    Column("kind", Text, nullable=False),
    Column("notification_type", Text),
    Column("reference_id", Text),
    Column("previous_state", Text),
    Column("state", Text),
    Column("media_type", Text),
    Column("error_code", Text),
    Column("error_message", Text),
    PrimaryKeyConstraint("event_id", "code"),
    Index(None, "interaction_id"),
    Index(None, "received_at"),
    Index(None, "account", "event_id"),
)


bi_interaction_facts = Table(
    "bi_interaction_facts",
    metadata,
    Column("interaction_id", Text, nullable=False),
    Column("media_type", Text),
    Column("openmedia_type", Text),
    Column("final_state", Text),
    Column("first_seen_at", TZ, nullable=False),
    Column("last_seen_at", TZ, nullable=False),
    Column("first_invited_at", TZ),
    Column("accepted_at", TZ),
    Column("completed_at", TZ),
    Column("time_to_accept_seconds", Numeric),
    Column("handle_time_seconds", Numeric),
    Column("lifetime_seconds", Numeric),
    Column("transfers", BigInteger, nullable=False),
    Column("rejects", BigInteger, nullable=False),
    Column("agents_involved", BigInteger, nullable=False),
    Column("agents", Text),
    Column("completed_by", Text),
    Column("event_count", BigInteger, nullable=False),
    Column("error_count", BigInteger, nullable=False),
    Column("accounts", ARRAY(Text), nullable=False),
    PrimaryKeyConstraint("interaction_id"),
    Index(None, "first_seen_at"),
    Index(None, "completed_at"),
)

# Per UTC day, counted again by the refresh for the days its events fall on.
bi_daily_volumes = Table(
    "bi_daily_volumes",
    metadata,
    Column("day", Date, nullable=False),
    Column("media_type", Text),
    Column("state", Text),
    Column("notification_type", Text),
    Column("account", Text, nullable=False),
    Column("events", BigInteger, nullable=False),
    Index(None, "day"),
)


# --- Checkpoints and Merkle tiles (migration 2026_12_01_checkpoints; owned by the `proofs`
# part of docs/evidence.md). A checkpoint signs the Merkle root over positions 1..tree_size;
# record_tree holds the full subtrees at levels 4, 8, 12... that proofs are read from.
checkpoints = Table(
    "checkpoints",
    metadata,
    Column("id", BigInteger, Identity(always=True), nullable=False),
    Column("tree_size", BigInteger, nullable=False),
    Column("root", LargeBinary, nullable=False),
    Column("chain_head", LargeBinary, nullable=False),
    Column("counts", JSONB, nullable=False),
    Column("made_at", TZ, nullable=False),
    Column("key_id", Text, nullable=False),
    Column("signature", LargeBinary, nullable=False),
    PrimaryKeyConstraint("id"),
    UniqueConstraint("tree_size"),
    CheckConstraint("tree_size >= 1", name="tree_size_positive"),
    CheckConstraint("octet_length(root) = 32", name="root_sha256"),
    CheckConstraint("octet_length(chain_head) = 32", name="chain_head_sha256"),
    CheckConstraint("octet_length(signature) = 64", name="signature_ed25519"),
)

record_tree = Table(
    "record_tree",
    metadata,
    Column("level", SmallInteger, nullable=False),
    Column("index", BigInteger, nullable=False),
    Column("hash", LargeBinary, nullable=False),
    PrimaryKeyConstraint("level", "index"),
    CheckConstraint("level > 0 AND level % 4 = 0", name="stored_level"),
    CheckConstraint("octet_length(hash) = 32", name="hash_sha256"),
)
# --- end of checkpoints and Merkle tiles ----------------------------------------------------


# --- Retention and legal holds (migration 2026_12_02_retention; docs/retention.md) -----------
# All append-only and (but retention_runs) entered into the record: holds as source `hold`,
# releases as `release`, purge receipts as `purge`.
legal_holds = Table(
    "legal_holds",
    metadata,
    Column("id", BigInteger, Identity(always=True), nullable=False),
    Column("placed_at", TZ, nullable=False, server_default=text("now()")),
    Column("placed_by", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("interaction_ids", ARRAY(Text)),
    Column("reference_ids", ARRAY(Text)),
    Column("account", Text),
    Column("media_type", Text),
    Column("received_from", TZ),
    Column("received_to", TZ),
    PrimaryKeyConstraint("id"),
    CheckConstraint(
        "interaction_ids IS NOT NULL OR reference_ids IS NOT NULL OR account IS NOT NULL"
        " OR media_type IS NOT NULL OR received_from IS NOT NULL OR received_to IS NOT NULL",
        name="predicate",
    ),
    CheckConstraint("received_to > received_from", name="time_range"),
    CheckConstraint("btrim(reason) <> ''", name="reason_given"),
    CheckConstraint("btrim(placed_by) <> ''", name="placed_by_given"),
)

hold_releases = Table(
    "hold_releases",
    metadata,
    Column("id", BigInteger, Identity(always=True), nullable=False),
    Column("hold_id", BigInteger, nullable=False),
    Column("released_at", TZ, nullable=False, server_default=text("now()")),
    Column("released_by", Text, nullable=False),
    Column("reason", Text, nullable=False),
    PrimaryKeyConstraint("id"),
    UniqueConstraint("hold_id"),
    CheckConstraint("btrim(reason) <> ''", name="reason_given"),
    CheckConstraint("btrim(released_by) <> ''", name="released_by_given"),
)

# event_ids and positions: int8multirange in PostgreSQL's canonical text ("{[3,7),[9,10)}"),
# so the leaf writes them as text and the database can still test membership.
purges = Table(
    "purges",
    metadata,
    Column("id", BigInteger, Identity(always=True), nullable=False),
    Column("partition", Text, nullable=False),
    Column("range_from", TZ, nullable=False),
    Column("range_to", TZ, nullable=False),
    Column("row_count", BigInteger, nullable=False),
    Column("event_ids", Text, nullable=False),
    Column("positions", Text, nullable=False),
    Column("leaves_sha256", LargeBinary, nullable=False),
    Column("head_position", BigInteger, nullable=False),
    Column("head_chain", LargeBinary, nullable=False),
    Column("purged_by", Text, nullable=False),
    Column("purged_at", TZ, nullable=False, server_default=text("now()")),
    Column("reason", Text, nullable=False),
    PrimaryKeyConstraint("id"),
    CheckConstraint("range_to > range_from", name="time_range"),
    CheckConstraint("row_count >= 0", name="row_count_not_negative"),
    CheckConstraint("event_ids::int8multirange::text = event_ids", name="event_ids_canonical"),
    CheckConstraint("positions::int8multirange::text = positions", name="positions_canonical"),
    CheckConstraint("octet_length(leaves_sha256) = 32", name="leaves_sha256"),
    CheckConstraint("octet_length(head_chain) = 32", name="head_chain_sha256"),
    Index(None, "range_from"),
)

retention_runs = Table(
    "retention_runs",
    metadata,
    Column("id", BigInteger, Identity(always=True), nullable=False),
    Column("run_at", TZ, nullable=False, server_default=text("now()")),
    Column("run_by", Text, nullable=False),
    Column("dry_run", Boolean, nullable=False),
    Column("settings", JSONB, nullable=False),
    Column("dropped", JSONB, nullable=False),
    Column("kept", JSONB, nullable=False),
    PrimaryKeyConstraint("id"),
)
# --- end of retention -------------------------------------------------------------------------

# migration 2026_12_03_ops: per interaction with events left, the fold of its events that
# retention dropped (auditor.retention.purge); projection check and rebuild start from it.
# The interactions columns a fold of events determines (the writer's upsert, projection check and
# rebuild, the purge's baseline); the others (state, capabilities, completed_at) follow from them.
FOLDED_INTERACTION_COLUMNS = (
    "interaction_id",
    "media_type",
    "openmedia_type",
    "uri",
    "user_data",
    "user_data_event_id",
    "account_states",
    "accounts",
    "first_seen_at",
    "last_seen_at",
    "first_event_id",
    "last_event_id",
    "event_count",
    "last_notification_type",
    "last_reference_id",
)
projection_baseline = Table(
    "projection_baseline",
    metadata,
    *(interactions.c[name]._copy() for name in FOLDED_INTERACTION_COLUMNS),
    Column("purge_id", BigInteger, nullable=False),
    PrimaryKeyConstraint("interaction_id"),
    comment="Per interaction with events left, the fold of its events that retention dropped"
    " (docs/retention.md); purge_id: the last purge receipt that added to it",
)


def _unreachable(url: URL, exc: BaseException) -> ConfigError:
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    reason = detail[0] if detail else type(exc).__name__
    return ConfigError(DATABASE_URL, f"cannot connect to {redacted(url)}: {reason}")


def connect(url: URL, *, autocommit: bool = False) -> psycopg.Connection[tuple[Any, ...]]:
    """A psycopg connection; an unreachable server is a one-line ConfigError."""
    try:
        return psycopg.connect(libpq_conninfo(url), autocommit=autocommit, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise _unreachable(url, exc) from None


@contextmanager
def sa_connection(url: URL) -> Iterator[Connection]:
    """A SQLAlchemy connection in a transaction (committed on success), for migrations."""
    engine = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 10})
    try:
        try:
            connection = engine.connect()
        except OperationalError as exc:
            raise _unreachable(url, exc) from None
        with connection, connection.begin():
            yield connection
    finally:
        engine.dispose()
