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

What searches rely on (the invariant): for every (interaction, key, value) that any stored
event's userData holds, at least one row of that interaction holds it. More rows than needed
are harmless; a missing one hides an interaction from a search.

Across batches, an interaction's first event in a batch is compared with the map this
connection last stored for it (LastMaps, bounded), but only after PostgreSQL confirmed, under
the writer's lock, that the projection's user_data_event_id is still that map's event: then the
map is the interaction's latest, it was committed (or stored earlier in this transaction), and
its values have rows. Anything else (a rolled-back batch, another writer's newer event, a purge
that forgot the interaction, a projection that lost it) fails that check, and the event writes
its whole map, as the first event of an interaction did before.

A value is taken as changed when its type differs too (JSON tells true from 1, and 1 from
1.0, where Python's == does not). The comparison runs in C (auditor/store/_udc.c) when it is
built and AUDITOR_NATIVE is not 0, with the same answers as the Python here.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import psycopg

from auditor.evidence import native
from auditor.notifications import Record
from auditor.store.userdata import EVENT_USER_DATA_SQL

# The rows travel as one JSON document: [[interaction_id, event_id, changed], ...]. Arrays of
# jsonb (unnest(%s::jsonb[])) cost 8.7 us a row in psycopg's array quoting alone, and about as
# much again in PostgreSQL's array parsing; one document costs 0.3 us (orjson) and one parse.
_ADD = """
INSERT INTO user_data_values (interaction_id, event_id, changed)
SELECT r->>0, (r->>1)::bigint, r->2 FROM jsonb_array_elements(%s::jsonb) AS r
"""

# An event whose map holds an integer orjson could only read as a float (2**53 and beyond):
# its whole map, exact, from the payload PostgreSQL stored (rare; ids alone find the rows).
_ADD_EXACT = f"""
INSERT INTO user_data_values (interaction_id, event_id, changed)
SELECT e.interaction_id, e.id, {EVENT_USER_DATA_SQL.replace("payload", "e.payload")}
FROM events AS e WHERE e.id = ANY(%s)
"""

# Which interactions' projection still shows the event whose map LastMaps holds.
_LATEST = """
SELECT interaction_id, user_data_event_id FROM interactions WHERE interaction_id = ANY(%s)
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

# Interactions whose last map a connection remembers. Each map is kept as its JSON text (a
# str: orjson's bytes keep a 4 KB buffer each): kept as dicts, 18,800 maps of the sample's
# 12 keys held 26 MB and made every full garbage collection walk them (0.55 s more of the
# collector per 200,000 events in bench/store.py); text is not tracked by the collector, and
# only an interaction's first event in a batch decodes one.
LAST_MAPS = 20_000

Map = dict[str, Any]


class LastMaps:
    """Per interaction, the last (event id, userData map) one connection stored: a bounded LRU.
    An entry is a claim to check (Changes.write does), never a fact: the batch that made it
    may have been rolled back, and other writers store events too."""

    def __init__(self, size: int = LAST_MAPS) -> None:
        self.size = size
        self._maps: OrderedDict[str, tuple[int, str]] = OrderedDict()

    def get(self, interaction_id: str) -> tuple[int, Map] | None:
        found = self._maps.get(interaction_id)
        if found is None:
            return None
        # (a lossy round trip, e.g. NaN, reads as a change: a row more, never one less)
        return found[0], orjson.loads(found[1])

    def put(self, interaction_id: str, event_id: int, user_data: Map) -> None:
        try:
            text = orjson.dumps(user_data).decode()
        except TypeError:  # an integer beyond 64 bits: forgotten (its next map is written whole)
            self._maps.pop(interaction_id, None)
            return
        self._maps[interaction_id] = (event_id, text)
        self._maps.move_to_end(interaction_id)
        if len(self._maps) > self.size:
            self._maps.popitem(last=False)

    def forget(self, interaction_id: str) -> None:
        self._maps.pop(interaction_id, None)

    def __len__(self) -> int:
        return len(self._maps)


# One per connection, so per database: event ids are only unique within one, and tests and
# benchmarks open several in one process. A new connection starts empty (whole maps once).
_BY_CONNECTION: weakref.WeakKeyDictionary[psycopg.Connection[Any], LastMaps] = (
    weakref.WeakKeyDictionary()
)


def last_maps(conn: psycopg.Connection[Any]) -> LastMaps:
    found = _BY_CONNECTION.get(conn)
    if found is None:
        found = _BY_CONNECTION[conn] = LastMaps()
    return found


def inexact_py(user_data: Map) -> bool:
    """A top-level value (filters match only those) that orjson may have read inexactly: an
    integral float of 2**53 or more, e.g. 123456789012345679.0 read as ...680."""
    # (a loop, not any() over a generator: this runs for every changed map, of 1-3 values)
    for v in user_data.values():
        if type(v) is float and abs(v) >= 2**53 and v.is_integer():
            return True
    return False


def diff_py(before: Map, user_data: Map) -> Map | None:
    """The keys of ``user_data`` whose value ``before`` lacks, or holds with another type or
    a value that is ``!=``, with their values; None when there is none. JSON tells true from
    1 (and 1 from 1.0): so does the type, checked first. _udc.diff answers the same in C."""
    return {
        k: v
        for k, v in user_data.items()
        if k not in before or type(old := before[k]) is not type(v) or old != v
    } or None


def _load_native() -> tuple[Callable[[Map, Map], Map | None], Callable[[Map], bool]] | None:
    """The C comparison (auditor/store/_udc.c), unless switched off or not built: it takes
    Changes.add over the sample's 200,000 notifications from 1.00 s to 0.54 s of CPU
    (docs/api.md). It takes exact dicts only, which is what the parser makes."""
    if native.SWITCHED_OFF:
        return None
    try:
        from auditor.store import _udc
    except ImportError:
        return None
    c_diff, c_inexact = _udc.diff, _udc.inexact

    def diff(before: Map, user_data: Map) -> Map | None:
        if type(before) is dict and type(user_data) is dict:
            return c_diff(before, user_data)
        return diff_py(before, user_data)

    def inexact(user_data: Map) -> bool:
        return c_inexact(user_data) if type(user_data) is dict else inexact_py(user_data)

    return diff, inexact


NATIVE = _load_native()
_diff, _inexact = NATIVE if NATIVE is not None else (diff_py, inexact_py)


class Changes:
    """Per event of a batch (fed in id order), the userData keys whose value differs from the
    map the interaction's previous event carried: within the batch, the event before; for its
    first event in the batch, the map ``known`` remembers, if PostgreSQL confirms it at write
    time (else the whole map)."""

    def __init__(
        self, events: Sequence[tuple[int, Any, Record]] = (), known: LastMaps | None = None
    ) -> None:
        self._known = known
        self._last: dict[str, tuple[int, Map]] = {}
        self._rows: list[list[Any]] = []
        # interaction -> (claimed event id, first event id, its whole map, its row or None):
        # the first events compared with a remembered map, to write whole if the claim fails.
        self._claims: dict[str, tuple[int, int, Map, list[Any] | None]] = {}
        self._exact: list[int] = []  # events whose whole map is read from the stored payload
        self._inexact: set[str] = set()  # interactions whose last map is such a one
        for event_id, _receipt, record in events:
            self.add(event_id, record)

    def add(self, event_id: int, record: Record) -> None:
        user_data = record.user_data
        if user_data is None:
            return
        interaction_id = record.interaction_id
        if interaction_id is None:
            return
        last = self._last
        previous = last.get(interaction_id)
        last[interaction_id] = (event_id, user_data)
        if self._inexact and interaction_id in self._inexact:
            # the map before held a big number (written whole, exact): compared with it as
            # usual unless this one holds one too
            if _inexact(user_data):
                self._exact.append(event_id)
                return
            self._inexact.discard(interaction_id)
        claimed = None
        if previous is None and self._known is not None:
            previous = claimed = self._known.get(interaction_id)
        changed = (user_data or None) if previous is None else _diff(previous[1], user_data)
        if changed is None:
            if claimed is not None:
                self._claims[interaction_id] = (claimed[0], event_id, user_data, None)
            return  # most events repeat their interaction's map
        if _inexact(changed):
            # (the unchanged part of a map, equal to one without big numbers, has none)
            self._exact.append(event_id)
            self._inexact.add(interaction_id)
            return
        row = [interaction_id, event_id, changed]
        self._rows.append(row)
        if claimed is not None:
            self._claims[interaction_id] = (claimed[0], event_id, user_data, row)

    def __bool__(self) -> bool:
        return bool(self._rows or self._claims or self._exact)

    def _check_claims(self, conn: psycopg.Connection[Any]) -> None:
        """Under the writer's lock and before this batch's projection update: each first event
        compared with a remembered map whose event is no longer the projection's latest
        userData event writes its whole map instead."""
        if not self._claims:
            return
        latest = dict(conn.execute(_LATEST, (list(self._claims),)).fetchall())
        for interaction_id, (claimed, event_id, user_data, row) in self._claims.items():
            if latest.get(interaction_id) == claimed:
                continue
            if row is not None:
                row[2] = user_data
            else:
                self._rows.append([interaction_id, event_id, user_data])

    def write(self, conn: psycopg.Connection[Any]) -> int:
        """Insert the rows, in the writer's transaction under its lock and before the batch's
        projection update; returns how many. Then remembers each interaction's last map."""
        self._check_claims(conn)
        if self._rows:
            conn.execute(_ADD, (orjson.dumps(self._rows).decode(),))
        if self._exact:
            conn.execute(_ADD_EXACT, (self._exact,))
        if self._known is not None:
            for interaction_id, (event_id, user_data) in self._last.items():
                if interaction_id in self._inexact:
                    self._known.forget(interaction_id)
                else:
                    self._known.put(interaction_id, event_id, user_data)
        return len(self._rows) + len(self._exact)
