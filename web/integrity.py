"""/api/v1/integrity for the admin role: `auditor verify` over a range of positions."""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint, Schema, fields, validators
from flask import Response
from marshmallow import RAISE

from auditor.store import integrity, record
from web.audit import requires, set_rows
from web.db import conn
from web.errors import bad_params
from web.paging import dumps, json_response
from web.schemas import Digits

bp = APIBlueprint("integrity", __name__, url_prefix="/api/v1", tag="Admin")

# One request checks at most this many positions (about 10 s); `auditor verify` has no limit.
MAX_POSITIONS = 1_000_000


def _position(name: str, description: str) -> fields.Integer:
    return Digits(
        max_digits=19,
        data_key=name,
        validate=validators.Range(1, 2**63 - 1),
        metadata={"description": description},
    )


class IntegrityQuery(Schema):
    from_ = _position("from", "first position to check (default 1)")
    to = _position("to", "last position to check (default: the end of the record)")


class IntegrityProblem(Schema):
    position = fields.Integer(required=True)
    kind = fields.String(
        required=True,
        metadata={"description": "altered | missing | reordered | inserted"},
    )
    detail = fields.String(required=True)


class IntegrityReport(Schema):
    ok = fields.Boolean(required=True)
    from_ = fields.Integer(data_key="from", required=True)
    to = fields.Integer(required=True, metadata={"description": "last position checked"})
    checked = fields.Integer(required=True, metadata={"description": "positions checked"})
    rows = fields.Integer(
        required=True,
        metadata={
            "description": "stored rows recomputed (a record format-2 position holds a batch"
            " of events)"
        },
    )
    problem = fields.Nested(IntegrityProblem, allow_none=True, required=True)
    unsealed = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        required=True,
        metadata={"description": "rows not sealed into the record yet, per source"},
    )
    purged = fields.List(
        fields.String(),
        required=True,
        metadata={"description": "the purge receipts whose positions were skipped"},
    )
    purged_positions = fields.Integer(
        required=True,
        metadata={"description": "positions of purged events: chain checked, rows gone"},
    )


def _rows_in(db: Any, start: int, end: int) -> int:
    """Stored rows behind positions start..end (format 2: a batch row's events)."""
    row = db.execute(
        "SELECT coalesce(sum(coalesce(leaf_count, 1)), 0) FROM record"
        " WHERE position >= %s AND position <= %s",
        (start, end),
    ).fetchone()
    return int(row[0]) if row else 0


@bp.get("/integrity")
@requires("admin")
@bp.input(IntegrityQuery, location="query", arg_name="query", unknown=RAISE)
@bp.output(IntegrityReport)
@bp.doc(
    summary="Recompute the hash chain over a range of record positions (docs/evidence.md)",
    responses=[400, 401, 403],
)
def check_integrity(query: dict[str, Any]) -> Response:
    start, end = query.get("from_"), query.get("to")
    if start is not None and end is not None and start > end:
        raise bad_params(**{"from": f"the range {start}..{end} is empty"})
    db = conn()
    # One snapshot for the whole answer (the API's connections are in autocommit).
    with db.transaction():
        last = record.head(db).position
        # A range reaching past the end of the record checks what is there: positions not
        # written yet cannot be broken.
        end = last if end is None else min(end, last)
        if end - (start or 1) + 1 > MAX_POSITIONS:
            raise bad_params(
                to=f"at most {MAX_POSITIONS:,} positions per request; use auditor verify"
            )
        if (start is None or start <= end) and _rows_in(db, start or 1, end) > MAX_POSITIONS:
            # a format-2 position stands for a whole writer batch: the cap is on the work
            raise bad_params(to=f"at most {MAX_POSITIONS:,} rows per request; use auditor verify")
        if start is not None and start > end:
            # Nothing recorded there yet: an empty check, not an error.
            report = integrity.Report(start, start - 1)
            report.unsealed = integrity.unsealed(db)
        else:
            try:
                report = integrity.verify(db, start, end)
            except integrity.BadRange as exc:
                raise bad_params(**{"from": str(exc)}) from None
    set_rows(report.checked)
    problem = report.problem
    body = {
        "ok": report.ok,
        "from": report.start,
        "to": report.end,
        "checked": report.checked,
        "rows": report.rows,
        "problem": None
        if problem is None
        else {"position": problem.position, "kind": problem.kind, "detail": problem.detail},
        "unsealed": report.unsealed,
        "purged": report.purged,
        "purged_positions": report.purged_positions,
    }
    return json_response(dumps(body))
