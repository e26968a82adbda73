"""/api/v1/holds for the admin role: place, list and release legal holds (docs/retention.md).

The API writes the hold row only; the worker's sealer enters it into the record within
AUDITOR_SEAL_INTERVAL (the API role cannot append to the record)."""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint, HTTPError, Schema, fields, validators
from flask import Response, g
from marshmallow import RAISE

from auditor.errors import UserError
from auditor.retention import holds
from web.audit import requires, set_rows
from web.db import conn
from web.errors import bad_params
from web.paging import dumps, json_response
from web.schemas import _instant

bp = APIBlueprint("holds", __name__, url_prefix="/api/v1", tag="Admin")

# No control characters (PostgreSQL's text cannot hold NUL); a reason has a character that is
# not a space (the database's btrim() check).
_CLEAN = r"^[^\x00-\x1f\x7f-\x9f]+$"
_TEXT = [
    validators.Length(1, holds.MAX_TEXT),
    validators.Regexp(r"^ *[^ \x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"),
]
_VALUE = [validators.Length(1, 256), validators.Regexp(_CLEAN)]


def _ids() -> fields.List[Any]:
    return fields.List(fields.String(validate=_VALUE), validate=validators.Length(1, holds.MAX_IDS))


class HoldBody(Schema):
    reason = fields.String(required=True, validate=_TEXT)
    interaction_ids = _ids()
    reference_ids = _ids()
    account = fields.String(validate=_VALUE)
    media_type = fields.String(validate=_VALUE)
    from_ = _instant("from", "held rows were received at or after this")
    to = _instant("to", "held rows were received before this")


class ReleaseBody(Schema):
    reason = fields.String(required=True, validate=_TEXT)


class HoldsQuery(Schema):
    active = fields.Boolean(load_default=False, metadata={"description": "only holds in force"})


class HoldOut(Schema):
    id = fields.Integer(required=True)
    placed_at = fields.DateTime(required=True)
    placed_by = fields.String(required=True)
    reason = fields.String(required=True)
    interaction_ids = fields.List(fields.String(), allow_none=True, required=True)
    reference_ids = fields.List(fields.String(), allow_none=True, required=True)
    account = fields.String(allow_none=True, required=True)
    media_type = fields.String(allow_none=True, required=True)
    from_ = fields.DateTime(data_key="from", allow_none=True, required=True)
    to = fields.DateTime(allow_none=True, required=True)
    active = fields.Boolean(required=True)
    released_at = fields.DateTime(allow_none=True, required=True)
    released_by = fields.String(allow_none=True, required=True)
    release_reason = fields.String(allow_none=True, required=True)


class HoldList(Schema):
    items = fields.List(fields.Nested(HoldOut), required=True)


def _who() -> str:
    return f"api token {g.token.name}"


def _answer(hold: holds.Hold | None, status: int = 200) -> Response:
    if hold is None:
        raise HTTPError(404, "no such legal hold")
    response = json_response(dumps(hold.as_json()))
    response.status_code = status
    return response


@bp.post("/holds")
@requires("admin")
@bp.input(HoldBody, location="json", arg_name="body", unknown=RAISE)
@bp.output(HoldOut, status_code=201)
@bp.doc(summary="Place a legal hold: retention keeps every partition with a matching row")
def place_hold(body: dict[str, Any]) -> Response:
    spec = holds.HoldSpec(
        body["reason"],
        body.get("interaction_ids"),
        body.get("reference_ids"),
        body.get("account"),
        body.get("media_type"),
        body.get("from_"),
        body.get("to"),
    )
    problems = spec.problems()
    if problems:
        raise bad_params(**problems)
    db = conn()
    with db.transaction():
        hold_id = holds.place(db, spec, _who())
        hold = holds.get(db, hold_id)
    set_rows(1)
    return _answer(hold, 201)


@bp.get("/holds")
@requires("admin")
@bp.input(HoldsQuery, location="query", arg_name="query", unknown=RAISE)
@bp.output(HoldList)
@bp.doc(summary="Legal holds, oldest first")
def list_holds(query: dict[str, Any]) -> Response:
    found = holds.listing(conn(), active_only=query["active"])
    set_rows(len(found))
    return json_response(dumps({"items": [h.as_json() for h in found]}))


@bp.get("/holds/<int:hold_id>")
@requires("admin")
@bp.output(HoldOut)
@bp.doc(summary="One legal hold", responses=[404])
def get_hold(hold_id: int) -> Response:
    return _answer(holds.get(conn(), hold_id))


@bp.post("/holds/<int:hold_id>/release")
@requires("admin")
@bp.input(ReleaseBody, location="json", arg_name="body", unknown=RAISE)
@bp.output(HoldOut)
@bp.doc(
    summary="Release a legal hold; the next retention run may drop what it kept",
    responses=[404, 409],
)
def release_hold(hold_id: int, body: dict[str, Any]) -> Response:
    db = conn()
    try:
        with db.transaction():
            holds.release(db, hold_id, _who(), body["reason"])
    except holds.UnknownHold:
        raise HTTPError(404, "no such legal hold") from None
    except UserError as exc:
        raise HTTPError(409, str(exc)) from None
    set_rows(1)
    return _answer(holds.get(db, hold_id))
