"""User-data filters (`userData.KEY=VALUE`) and the SQL they become.

GWS sends an interaction's whole userData map with each notification that carries one, so the
value a key has *at an event* is in that event's own payload, and an interaction's *current*
value is in the projection's user_data. Exact matches find their interactions through the
table user_data_values (auditor.store.userdata_values: per event, the values it brought, in a
GIN index), and are then checked on the row's own map with containment (`@>`); a prefix match
(`^abc`) is checked on the rows the other conditions select (docs/api.md says why).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

# The openmedia resource of a stored message, as auditor.notifications.openmedia_of finds it:
# under `data`, or the bare inner object. The index on events is built on exactly this
# expression (PostgreSQL uses an expression index only for the same expression).
OPENMEDIA_SQL = (
    "(CASE WHEN jsonb_typeof(payload->'data') = 'object' THEN payload->'data'"
    " WHEN NOT payload ? 'data'"
    " AND payload ?| ARRAY['messageType', 'notificationType', 'openmedia', 'referenceId']"
    " THEN payload END)->'openmedia'"
)
EVENT_USER_DATA_SQL = f"({OPENMEDIA_SQL}->'userData')"

PARAM_PREFIX = "userData."
MAX_FILTERS = 8
MAX_VALUE = 256
# Keys as GWS and its integrators name them (letters, digits, `_ - . : @`); nothing that
# needs quoting anywhere.
KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:@-]{0,127}")
KEY_RULE = "a key of 1..128 characters: letters, digits, _ - . : @ (not starting with - . : @)"
_JSON_SCALAR = re.compile(r"-?(0|[1-9][0-9]{0,17})(\.[0-9]{1,17})?|true|false")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


class BadUserDataFilter(ValueError):
    """A user-data parameter that cannot be read; ``param`` names it as given."""

    def __init__(self, param: str, reason: str) -> None:
        super().__init__(f"{param}: {reason}")
        self.param = param
        self.reason = reason


@dataclass(frozen=True)
class UserDataFilter:
    """``key`` equals ``value`` (a JSON string, or the JSON number/boolean it spells), or, with
    ``prefix``, is a JSON string starting with ``value``."""

    key: str
    value: str
    prefix: bool = False

    @property
    def as_param(self) -> tuple[str, str]:
        """The query parameter that says this filter."""
        shown = "^" + self.value if self.prefix else self.value
        if not self.prefix and self.value[:1] in ("^", "\\"):
            shown = "\\" + self.value
        return PARAM_PREFIX + self.key, shown


def parse_filter(param: str, raw: str) -> UserDataFilter:
    """`userData.KEY` and its value: `VALUE` exact, `^VALUE` prefix, `\\VALUE` exact (for a
    value that starts with ^ or \\)."""
    if not param.startswith(PARAM_PREFIX):
        raise BadUserDataFilter(param, f"a user-data filter is named {PARAM_PREFIX}KEY")
    key = param[len(PARAM_PREFIX) :]
    if not KEY.fullmatch(key):
        raise BadUserDataFilter(param, f"{PARAM_PREFIX}KEY needs {KEY_RULE}")
    if _CONTROL.search(raw):
        raise BadUserDataFilter(param, "the value must not contain control characters")
    prefix = raw.startswith("^")
    value = raw[1:] if raw[:1] in ("^", "\\") else raw
    if len(value) > MAX_VALUE:
        raise BadUserDataFilter(param, f"the value is longer than {MAX_VALUE} characters")
    if prefix and not value:
        raise BadUserDataFilter(param, "a prefix match (^) needs at least one character")
    return UserDataFilter(key, value, prefix)


def parse_filters(params: Iterable[tuple[str, str]]) -> tuple[UserDataFilter, ...]:
    """Every `userData.*` parameter among ``params`` (others ignored), sorted by key."""
    found: dict[str, UserDataFilter] = {}
    for name, raw in params:
        if not name.startswith(PARAM_PREFIX):
            continue
        flt = parse_filter(name, raw)
        if flt.key in found:
            raise BadUserDataFilter(name, "is given more than once; give each key once")
        found[flt.key] = flt
    if len(found) > MAX_FILTERS:
        raise BadUserDataFilter(PARAM_PREFIX + "*", f"at most {MAX_FILTERS} user-data filters")
    return tuple(found[key] for key in sorted(found))


def _candidates(flt: UserDataFilter) -> list[str]:
    """The jsonb documents `{key: value}` an exact filter accepts."""
    docs = [json.dumps({flt.key: flt.value})]
    if _JSON_SCALAR.fullmatch(flt.value):
        docs.append(json.dumps({flt.key: json.loads(flt.value)}))
    return docs


def condition(flt: UserDataFilter, expression: str) -> tuple[sql.Composable, list[Any]]:
    """A WHERE clause for one filter on the user-data map ``expression`` (fixed SQL text)."""
    if flt.prefix:
        clause = (
            f"(jsonb_typeof({expression}->%s) = 'string' AND starts_with({expression}->>%s, %s))"
        )
        return sql.SQL(clause), [flt.key, flt.key, flt.value]
    docs = _candidates(flt)
    ors = " OR ".join(f"{expression} @> %s::jsonb" for _ in docs)
    return sql.SQL(f"({ors})"), list(docs)


def conditions(
    filters: Iterable[UserDataFilter], expression: str
) -> tuple[list[sql.Composable], list[Any]]:
    """WHERE clauses for filters ANDed. Exact string matches go in one containment document
    (one probe of the GIN index); the others get a clause each."""
    clauses: list[sql.Composable] = []
    params: list[Any] = []
    together = {}
    for flt in filters:
        if not flt.prefix and len(_candidates(flt)) == 1:
            together[flt.key] = flt.value
            continue
        clause, values = condition(flt, expression)
        clauses.append(clause)
        params.extend(values)
    if together:
        clauses.insert(0, sql.SQL(f"{expression} @> %s::jsonb"))
        params.insert(0, json.dumps(together))
    return clauses, params


def _driver(filters: Iterable[UserDataFilter]) -> UserDataFilter | None:
    """The exact filter most likely to be rare: a text value (not also a number or a boolean),
    the longest (a case number or an email address rather than a step or a flag). Its
    interactions are read from the index; the other filters are checked on their rows."""
    exact = [flt for flt in filters if not flt.prefix]
    if not exact:
        return None
    return max(exact, key=lambda flt: (len(_candidates(flt)) == 1, len(flt.value), flt.key))


def _held_by(flt: UserDataFilter) -> tuple[sql.Composable, list[Any]]:
    """``interaction_id = ANY(...)``: the interactions that have held the value, from the GIN
    index of user_data_values. An array computed first (an InitPlan), so that PostgreSQL then
    reads only those interactions' rows by index whatever it guesses of the value's frequency
    (as a join it walked every event newest first, looking for a rare customer's)."""
    docs = _candidates(flt)
    held = " OR ".join("changed @> %s::jsonb" for _ in docs)
    return (
        sql.SQL(
            f"interaction_id = ANY(ARRAY(SELECT interaction_id FROM user_data_values WHERE {held}))"
        ),
        docs,
    )


def event_conditions(
    filters: Iterable[UserDataFilter], table: str = "events", driven: bool = True
) -> tuple[list[sql.Composable], list[Any]]:
    """WHERE clauses for filters ANDed on the value at each event of ``table`` (a fixed name):
    the events of the interactions that ever held the driving filter's value, each then
    checked on its own userData (the value at that event). ``driven=False`` leaves out the
    first part (a query over each_candidate's interactions has it already)."""
    filters = tuple(filters)
    clauses, params = conditions(filters, EVENT_USER_DATA_SQL)
    driver = _driver(filters)
    if driver is not None and driven:
        held, values = _held_by(driver)
        clauses.insert(0, sql.SQL(f"{table}.") + held)
        params[:0] = values
    return clauses, params


def interaction_conditions(
    filters: Iterable[UserDataFilter],
) -> tuple[list[sql.Composable], list[Any]]:
    """WHERE clauses for filters ANDed on the interactions' ``user_data`` (the live projection,
    or one recomputed as of a time): among the interactions that ever held the driving
    filter's value, those whose user_data holds every filter's."""
    filters = tuple(filters)
    clauses, params = conditions(filters, "user_data")
    driver = _driver(filters)
    if driver is not None:
        held, values = _held_by(driver)
        clauses.insert(0, held)
        params[:0] = values
    return clauses, params


def ever_conditions(
    filters: Iterable[UserDataFilter], as_of: str | None
) -> tuple[list[sql.Composable], list[Any]]:
    """WHERE clauses on ``interactions``: for each filter on its own, the interaction had an
    event whose userData matched it (stored by ``as_of``, a quoted constant, if given).
    user_data_values says which interactions ever held the driving filter's value; the
    events of those say the rest (and, with ``as_of``, whether one stored by then did)."""
    filters = tuple(filters)
    clauses: list[sql.Composable] = []
    params: list[Any] = []
    driver = _driver(filters)
    if driver is not None:
        held, values = _held_by(driver)
        clauses.append(held)
        params.extend(values)
    for flt in filters:
        if flt is driver and as_of is None:
            continue  # what user_data_values says is the answer
        clause, values = condition(flt, EVENT_USER_DATA_SQL)
        stored_by = f" AND e.stored_at <= {as_of}" if as_of is not None else ""
        clauses.append(
            sql.SQL(
                "EXISTS (SELECT 1 FROM events AS e"
                " WHERE e.interaction_id = interactions.interaction_id AND "
            )
            + clause
            + sql.SQL(stored_by + ")")
        )
        params.extend(values)
    return clauses, params


# PostgreSQL, not knowing how many interactions the driving value's array holds (an InitPlan),
# estimates a row or two and reads the candidates' events through an index scan: one
# synchronous heap read at a time. A bitmap heap scan reads the same pages through PostgreSQL
# 18's asynchronous I/O, several at once; the cold heap pages of a customer's ~50 events,
# spread over the table, are what an exact search on events waits for (docs/api.md).
# But a bitmap reads every event of every candidate before the page is sorted out of them: for
# a value held by a few huge interactions (a 200,000-event item) that is all their payloads.
# There each candidate is read newest first through (interaction_id, id) instead, which stops
# at a page's worth of matches (each_candidate). Which one is decided by counting, up to
# MANY_EVENTS, the events of at most CANDIDATE_ROWS rows' interactions in (interaction_id, id)
# (the index pages the bitmap reads next; the projection's event_count cost the selective
# case a cold heap page per candidate interaction) (a common
# value, held by thousands of interactions, keeps the bitmap: read newest first one by one,
# they would be thousands of index scans). Estimating a row or two per interaction, the
# planner would append the partitions' index scans and sort all their rows (the same 0.5 s):
# with sorts off for the statement it merges them in order and stops at the page (4.5 ms).
MANY_EVENTS = 5_000
CANDIDATE_ROWS = 1_000


def _choose_plan(flt: UserDataFilter) -> tuple[sql.SQL, list[Any]]:
    docs = _candidates(flt)
    held = " OR ".join("changed @> %s::jsonb" for _ in docs)
    query = f"""
WITH held AS MATERIALIZED (
    SELECT interaction_id FROM user_data_values WHERE {held} LIMIT {CANDIDATE_ROWS + 1}
), choice AS MATERIALIZED (
    SELECT (SELECT count(*) FROM held) <= {CANDIDATE_ROWS}
           AND (SELECT count(*) FROM (
                    SELECT FROM events
                    WHERE interaction_id = ANY(ARRAY(SELECT interaction_id FROM held))
                    LIMIT {MANY_EVENTS + 1}) AS e) > {MANY_EVENTS} AS each
)
SELECT each, s.name, current_setting(s.name), set_config(s.name, 'off', true)
FROM choice,
     LATERAL (SELECT CASE WHEN each THEN 'enable_sort' ELSE 'enable_indexscan' END AS name) AS s
"""
    return sql.SQL(query), list(docs)


_PUT_BACK = "SELECT set_config(%s, %s, true)"


@contextmanager
def reading_candidates(
    conn: psycopg.Connection[Any], filters: Iterable[UserDataFilter]
) -> Iterator[bool]:
    """Around one events query whose WHERE holds event_conditions(filters): when an exact
    filter drives it from user_data_values, its candidates' events are read by bitmap heap
    scans (index scans off for that statement, then put back; after an error the
    transaction, or its savepoint, puts the setting back itself), unless its few candidates
    hold many events: then this yields True, the query must read each_candidate's
    interactions one by one, and sorts are off instead (merged index scans, not a sort).
    Without a driving filter (a prefix alone), the other filters choose the plan: a
    newest-first walk may be the best."""
    driver = _driver(filters)
    if driver is None:
        yield False
        return
    # A transaction of its own (a savepoint inside the caller's): the API's connections are in
    # autocommit, where a transaction-local setting would end with its own statement.
    with conn.transaction():
        query, params = _choose_plan(driver)
        found = conn.execute(query, params).fetchone()
        assert found is not None
        each, setting, before = bool(found[0]), str(found[1]), str(found[2])
        yield each
        conn.execute(_PUT_BACK, (setting, before))


def each_candidate(filters: Iterable[UserDataFilter]) -> tuple[sql.Composable, list[Any]]:
    """A FROM item ``c``: the driving filter's interactions, each once, for an events query
    run per candidate (reading_candidates says when) joined on ``c.interaction_id``."""
    driver = _driver(tuple(filters))
    if driver is None:
        raise ValueError("each_candidate needs an exact user-data filter")
    docs = _candidates(driver)
    held = " OR ".join("changed @> %s::jsonb" for _ in docs)
    return (
        sql.SQL(f"(SELECT DISTINCT interaction_id FROM user_data_values WHERE {held}) AS c"),
        list(docs),
    )
