"""The user-data values table: each (interaction, key, value) with the event range it was held.

GWS sends an interaction's whole userData map with each notification that carries one, and the
map rarely changes from one event to the next. So instead of indexing every key of every event
(a GIN entry per key per event: 9-30% of the writer's rate, issue 12), the writer records a
value only when it changes: a row opens at the event that brings a value and is closed
(`to_event_id`) by the first later event whose map no longer holds it. Exact user-data filters
read it (auditor.store.userdata): the current value (an open row), any value ever held, and the
value at an event (the event's id inside a row's range; the event's own payload is then checked
too). Migration 2026_12_02_writerload fills it for events stored before it existed, with the
same rule.

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

_CURRENT = """
SELECT interaction_id, key, value FROM user_data_values
WHERE interaction_id = ANY(%s) AND to_event_id IS NULL
"""

_CLOSE = """
UPDATE user_data_values AS v SET to_event_id = c.to_event_id
FROM unnest(%s::text[], %s::text[], %s::bigint[]) AS c(interaction_id, key, to_event_id)
WHERE v.interaction_id = c.interaction_id AND v.key = c.key AND v.to_event_id IS NULL
"""

# stored_at is now(), the transaction's start: the same value the events of the batch get.
_OPEN = """
INSERT INTO user_data_values (interaction_id, key, value, from_event_id, to_event_id, stored_at)
SELECT interaction_id, key, value, from_event_id, to_event_id, now()
FROM unnest(%s::text[], %s::text[], %s::jsonb[], %s::bigint[], %s::bigint[])
    AS n(interaction_id, key, value, from_event_id, to_event_id)
"""


# searchable() in SQL, on jsonb_each's (key, value) as kv.
_SEARCHABLE_SQL = (
    "(kv.key ~ '^[A-Za-z0-9_][A-Za-z0-9_.:@-]{0,127}$'"
    " AND (jsonb_typeof(kv.value) IN ('number', 'boolean')"
    f" OR (jsonb_typeof(kv.value) = 'string' AND length(kv.value #>> '{{}}') <= {MAX_VALUE})))"
)
_CARRIED = EVENT_USER_DATA_SQL.replace("payload", "e.payload")

# The rows for events stored without the writer (a bulk load; the migration has its own copy
# of this): per interaction, the events that carry a userData object, each with the one
# before it. A pair held now and not before starts a row, a pair held before and not now ends
# one; for a given (interaction, key, value) starts and ends alternate, so the n-th start
# pairs with the n-th end (none yet: the value is current).
BACKFILL = f"""
INSERT INTO user_data_values (interaction_id, key, value, from_event_id, to_event_id, stored_at)
WITH carried AS (
    SELECT e.interaction_id, e.id, e.stored_at, {_CARRIED} AS m
    FROM events AS e
    WHERE e.interaction_id IS NOT NULL AND jsonb_typeof({_CARRIED}) = 'object'
), steps AS (
    SELECT interaction_id, id, stored_at, m,
           lag(m) OVER (PARTITION BY interaction_id ORDER BY id) AS before
    FROM carried
), starts AS (
    SELECT s.interaction_id, kv.key, kv.value, s.id, s.stored_at,
           row_number() OVER (PARTITION BY s.interaction_id, kv.key, kv.value ORDER BY s.id) AS n
    FROM steps AS s, jsonb_each(s.m) AS kv
    WHERE {_SEARCHABLE_SQL}
      AND (s.before IS NULL OR s.before->kv.key IS DISTINCT FROM kv.value)
), ends AS (
    SELECT s.interaction_id, kv.key, kv.value, s.id,
           row_number() OVER (PARTITION BY s.interaction_id, kv.key, kv.value ORDER BY s.id) AS n
    FROM steps AS s, jsonb_each(s.before) AS kv
    WHERE s.before IS NOT NULL AND {_SEARCHABLE_SQL}
      AND s.m->kv.key IS DISTINCT FROM kv.value
)
SELECT st.interaction_id, st.key, st.value, st.id, en.id, st.stored_at
FROM starts AS st
LEFT JOIN ends AS en
  ON en.interaction_id = st.interaction_id AND en.key = st.key AND en.value = st.value
 AND en.n = st.n
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


def _pairs(user_data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in user_data.items() if searchable(k, v)}


class Changes:
    """Per interaction, the userData maps a batch's events carry, in id order, each kept only
    when it differs from the one before (most events repeat their interaction's map)."""

    def __init__(self, events: Sequence[tuple[int, Any, Record]] = ()) -> None:
        self._maps: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        self._last: dict[str, dict[str, Any]] = {}
        for event_id, _receipt, record in events:
            self.add(event_id, record)

    def add(self, event_id: int, record: Record) -> None:
        user_data, interaction_id = record.user_data, record.interaction_id
        if user_data is None or interaction_id is None:
            return
        last = self._last.get(interaction_id)
        # `==` treats true as 1: a value flipping between them alone is not seen (JSON
        # userData that does that is not known); every other change is.
        if last is not None and last == user_data:
            return
        self._last[interaction_id] = user_data
        self._maps.setdefault(interaction_id, []).append((event_id, _pairs(user_data)))

    def __bool__(self) -> bool:
        return bool(self._maps)

    def write(self, conn: psycopg.Connection[Any]) -> int:
        """Close the values that changed and open the new ones; returns the rows opened."""
        if not self._maps:
            return 0
        held: dict[str, dict[str, tuple[Any, int | None]]] = {}
        with conn.cursor() as cur:
            cur.execute(_CURRENT, (list(self._maps),))
            for interaction_id, key, value in cur:
                held.setdefault(interaction_id, {})[key] = (value, None)
        closes: tuple[list[str], list[str], list[int]] = ([], [], [])
        opens: list[list[Any]] = []  # [interaction, key, value json, from, to]
        for interaction_id, maps in self._maps.items():
            now = held.get(interaction_id, {})
            for event_id, pairs in maps:
                for key, (value, opened) in list(now.items()):
                    if key in pairs and _same(pairs[key], value):
                        continue
                    del now[key]
                    if opened is None:  # a stored row
                        closes[0].append(interaction_id)
                        closes[1].append(key)
                        closes[2].append(event_id)
                    else:
                        opens[opened][4] = event_id
                for key, value in pairs.items():
                    if key not in now:
                        now[key] = (value, len(opens))
                        opens.append(
                            [interaction_id, key, orjson.dumps(value).decode(), event_id, None]
                        )
        if closes[0]:
            conn.execute(_CLOSE, closes)
        if opens:
            columns = [list(column) for column in zip(*opens, strict=True)]
            conn.execute(_OPEN, columns)
        return len(opens)
