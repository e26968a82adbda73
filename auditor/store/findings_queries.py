"""Lifecycle findings for the query API: bi_v1.lifecycle_findings, filtered and keyset-paged.

The API reads the released version (bi_v1), not the `bi` alias, so that a new BI version never
changes what the API answers. Filters on the interaction or the account reach the events'
indexes through the view; a time range alone evaluates the rules over every event (docs/bi.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from auditor import shapes
from auditor.store.queries import equals_and_range, where

# The stable codes (bi_v1.finding_codes holds the same, with their explanations; a test
# keeps the two equal).
FINDING_CODES = (
    "ACCEPT_WITHOUT_INVITE",
    "EVENT_AFTER_COMPLETED",
    "OPERATION_FAILED",
    "PROCESSING_WITHOUT_INVITE",
    "SEEN_WITHOUT_INVITE",
    "STATE_OUT_OF_ORDER",
)

FINDING_EQUALS = {"interactionId": "interaction_id", "account": "account", "code": "code"}

_FINDING_JSON = shapes.FINDING.json_sql()  # a finding as the API shows it (auditor.shapes)


@dataclass(frozen=True)
class FindingFilter:
    equals: dict[str, str]  # API name (a key of FINDING_EQUALS) -> value
    start: datetime | None = None  # received_at >= start
    end: datetime | None = None  # received_at < end


@dataclass(frozen=True)
class FindingRow:
    event_id: int
    code: str
    received_at: datetime
    account: str
    json: str


def search_findings(
    conn: psycopg.Connection[Any],
    flt: FindingFilter,
    *,
    newest_first: bool,
    limit: int,
    after: tuple[int, str] | None = None,
) -> list[FindingRow]:
    """A page of findings ordered by (event_id, code), after the given key."""
    clauses, params = equals_and_range(
        flt.equals, FINDING_EQUALS, "received_at", flt.start, flt.end
    )
    direction = sql.SQL("DESC" if newest_first else "ASC")
    if after is not None:
        clauses.append(
            sql.SQL("(event_id, code) {} (%s, %s)").format(sql.SQL("<" if newest_first else ">"))
        )
        params += [after[0], after[1]]
    query = sql.SQL(
        "SELECT event_id, code, received_at, account, {json}"
        " FROM bi_v1.lifecycle_findings{where}"
        " ORDER BY event_id {direction}, code {direction} LIMIT %s"
    ).format(json=sql.SQL(_FINDING_JSON), where=where(clauses), direction=direction)
    with conn.cursor() as cur:
        cur.execute(query, [*params, limit])
        return [FindingRow(*row) for row in cur.fetchall()]
