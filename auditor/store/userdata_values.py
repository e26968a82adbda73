"""The user-data changes table: per event whose userData differs from its interaction's
previous map, the keys whose value it brought, with their values.

GWS sends an interaction's whole userData map with each notification that carries one, and
from one event to the next most values stay the same. Indexing every key of every event (a GIN
entry per key per event, plus the projection's) cost the writer 9-30% of its rate (issue 12);
indexing only the values each event brings costs a fraction of that: one row per changed map,
insert-only, in a GIN index with a pending list that PostgreSQL merges in bulk. Exact user-data
filters start from it (auditor.store.userdata): the interactions that ever held every filter's
value, whose rows (the projection's current userData, or each event's own) are then checked
with containment. Migration 2026_12_02_writerload fills it for events stored before it existed,
with the same rule.

A map that differs from the one before only by a value flipping between true and 1 (Python
compares those maps equal) is not looked into; JSON userData that does that is not known.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import psycopg

from auditor.notifications import Record
from auditor.store.userdata import EVENT_USER_DATA_SQL

_ADD = """
INSERT INTO user_data_values (interaction_id, event_id, changed)
SELECT * FROM unnest(%s::text[], %s::bigint[], %s::jsonb[])
"""

_CARRIED = EVENT_USER_DATA_SQL.replace("payload", "e.payload")

# The rows for events stored without the writer (a bulk load; the migration has its own copy
# of this): per interaction, each event carrying a userData object with the one before it,
# and the keys whose value differs.
BACKFILL = f"""
INSERT INTO user_data_values (interaction_id, event_id, changed)
SELECT s.interaction_id, s.id, jsonb_object_agg(kv.key, kv.value)
FROM (
    SELECT e.interaction_id, e.id, {_CARRIED} AS m,
           lag({_CARRIED}) OVER (PARTITION BY e.interaction_id ORDER BY e.id) AS before
    FROM events AS e
    WHERE e.interaction_id IS NOT NULL AND jsonb_typeof({_CARRIED}) = 'object'
) AS s, jsonb_each(s.m) AS kv
WHERE s.before IS NULL OR s.before->kv.key IS DISTINCT FROM kv.value
GROUP BY s.interaction_id, s.id
"""


class Changes:
    """Per event of a batch (fed in id order), the userData keys whose value differs from the
    map the interaction's previous event in the batch carried (all of them for its first)."""

    def __init__(self, events: Sequence[tuple[int, Any, Record]] = ()) -> None:
        self._last: dict[str, dict[str, Any]] = {}
        self._rows: tuple[list[str], list[int], list[str]] = ([], [], [])
        for event_id, _receipt, record in events:
            self.add(event_id, record)

    def add(self, event_id: int, record: Record) -> None:
        user_data, interaction_id = record.user_data, record.interaction_id
        if user_data is None or interaction_id is None:
            return
        last = self._last.get(interaction_id)
        if last is not None and last == user_data:
            return  # most events repeat their interaction's map
        self._last[interaction_id] = user_data
        if last is None:
            changed = user_data
        else:
            changed = {
                k: v
                for k, v in user_data.items()
                # (JSON tells true from 1: so does the type)
                if k not in last or (old := last[k]) != v or type(old) is not type(v)
            }
            if not changed:
                return  # only keys removed
        self._rows[0].append(interaction_id)
        self._rows[1].append(event_id)
        self._rows[2].append(orjson.dumps(changed).decode())

    def __bool__(self) -> bool:
        return bool(self._rows[0])

    def write(self, conn: psycopg.Connection[Any]) -> int:
        """Insert the rows; returns how many."""
        if not self._rows[0]:
            return 0
        conn.execute(_ADD, self._rows)
        return len(self._rows[0])
