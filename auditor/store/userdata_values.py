"""The user-data values table: each (userData key, value, interaction) ever held, once.

GWS sends an interaction's whole userData map with each notification that carries one, and the
map rarely changes much from one event to the next. So instead of indexing every key of every
event (a GIN entry per key per event: 9-30% of the writer's rate, issue 12), the writer adds a
row only for a value an interaction had not held before (insert-only: no row is ever updated).
Exact user-data filters start from it (auditor.store.userdata): the interactions that ever held
every filter's value, by the primary key's index, whose rows (the projection's current userData,
or each event's own) are then checked with containment. Migration 2026_12_02_writerload fills it
for events stored before it existed, with the same rule.

Only pairs a filter can name are kept (`searchable`). Numbers are compared as the JSON parser
read them (a double, for non-integers of more than 15 significant digits).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import psycopg

from auditor.notifications import Record
from auditor.store.userdata import EVENT_USER_DATA_SQL, KEY, MAX_VALUE

# A value held again, or already stored by an earlier batch, is left as it is.
_ADD = """
INSERT INTO user_data_values (key, value, interaction_id, first_event_id)
SELECT * FROM unnest(%s::text[], %s::jsonb[], %s::text[], %s::bigint[])
ON CONFLICT DO NOTHING
"""

# searchable() in SQL, on jsonb_each's (key, value) as kv.
_SEARCHABLE_SQL = (
    "(kv.key ~ '^[A-Za-z0-9_][A-Za-z0-9_.:@-]{0,127}$'"
    " AND (jsonb_typeof(kv.value) IN ('number', 'boolean')"
    f" OR (jsonb_typeof(kv.value) = 'string' AND length(kv.value #>> '{{}}') <= {MAX_VALUE})))"
)
_CARRIED = EVENT_USER_DATA_SQL.replace("payload", "e.payload")

# The rows for events stored without the writer (a bulk load; the migration has its own copy
# of this): every searchable pair of every userData object an event carries, with the first
# event that carried it.
BACKFILL = f"""
INSERT INTO user_data_values (key, value, interaction_id, first_event_id)
SELECT DISTINCT ON (kv.key, kv.value, e.interaction_id) kv.key, kv.value, e.interaction_id, e.id
FROM events AS e, jsonb_each({_CARRIED}) AS kv
WHERE e.interaction_id IS NOT NULL AND jsonb_typeof({_CARRIED}) = 'object' AND {_SEARCHABLE_SQL}
ORDER BY kv.key, kv.value, e.interaction_id, e.id
"""


def searchable(key: str, value: Any) -> bool:
    """A pair a user-data filter can name: a key of KEY's form, a string of at most MAX_VALUE
    characters, a number or a boolean (the index entries stay small)."""
    kind = type(value)
    if kind is str:
        if len(value) > MAX_VALUE:
            return False
    elif kind not in (int, float, bool):
        return False
    return KEY.fullmatch(key) is not None


def _same(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1 (Python says it is)."""
    return a == b and (type(a) is bool) == (type(b) is bool)


class Changes:
    """The (key, value, interaction) triples a batch's events bring that the event before them
    in the batch (of the same interaction) did not already carry; each once, with the first
    event that carried it. Fed in id order."""

    def __init__(self, events: Sequence[tuple[int, Any, Record]] = ()) -> None:
        self._last: dict[str, dict[str, Any]] = {}
        self._rows: dict[tuple[str, str, str], int] = {}
        for event_id, _receipt, record in events:
            self.add(event_id, record)

    def add(self, event_id: int, record: Record) -> None:
        user_data, interaction_id = record.user_data, record.interaction_id
        if user_data is None or interaction_id is None:
            return
        last = self._last.get(interaction_id)
        # Most events repeat their interaction's map. (`==` takes true for 1: a value that
        # only flips between them is caught by the first map that differs otherwise, or not
        # at all; JSON userData that does that is not known.)
        if last is not None and last == user_data:
            return
        self._last[interaction_id] = user_data
        rows = self._rows
        for key, value in user_data.items():
            if last is not None and key in last and _same(last[key], value):
                continue
            if not searchable(key, value):
                continue
            row = (key, orjson.dumps(value).decode(), interaction_id)
            if row not in rows:
                rows[row] = event_id

    def __bool__(self) -> bool:
        return bool(self._rows)

    def write(self, conn: psycopg.Connection[Any]) -> int:
        """Add the triples not stored yet; returns how many were offered."""
        if not self._rows:
            return 0
        keys, values, interactions = zip(*self._rows, strict=True)
        conn.execute(
            _ADD, (list(keys), list(values), list(interactions), list(self._rows.values()))
        )
        return len(self._rows)
