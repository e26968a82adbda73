"""GET /api/v1/checkpoints (reader+) and GET /api/v1/evidence/export (exporter+): the signed
checkpoints, and an evidence pack as a zip (docs/evidence.md, "Evidence packs").

The API role cannot write the record, so it never signs a checkpoint: rows newer than the
latest one are in the pack and listed by its manifest as not proven (the worker signs one
every AUDITOR_CHECKPOINT_INTERVAL seconds; `auditor evidence export` signs a fresh one). The
manifest is signed with the key in AUDITOR_SIGNING_KEY_FILE; without one the export answers
503."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Generator
from typing import Any

from apiflask import APIBlueprint, HTTPError, Schema, fields, validators
from flask import Response, current_app, g
from marshmallow import RAISE

from auditor.evidence import checkpoints, keys, pack
from auditor.evidence.pack_zip import zip_chunks
from web.audit import request_record, requires, set_rows
from web.db import conn, database
from web.errors import bad_params
from web.export import ExportStream, _take_slot
from web.paging import dumps, json_response
from web.schemas import Digits, _instant, _text

bp = APIBlueprint("evidence", __name__, url_prefix="/api/v1", tag="Evidence")


class CheckpointsQuery(Schema):
    before = Digits(
        max_digits=19,
        validate=validators.Range(1, 2**63 - 1),
        metadata={"description": "only checkpoints of a smaller tree_size (paging)"},
    )
    limit = Digits(
        load_default=100,
        validate=validators.Range(1, 1000),
        metadata={"description": "page size, 1..1000 (default 100)"},
    )


class EvidenceQuery(Schema):
    interaction_id = _text("the events of one interaction")
    reference_id = _text("the events with one referenceId")
    account = _text("the events of one account over from .. to")
    from_ = _instant("from", "start (inclusive), with account")
    to = _instant("to", "end (exclusive), with account")


class CheckpointOut(Schema):
    format = fields.String(required=True, metadata={"description": "auditor-checkpoint/1"})
    id = fields.Integer(required=True)
    tree_size = fields.Integer(
        required=True, metadata={"description": "the root covers positions 1..tree_size"}
    )
    root = fields.String(required=True, metadata={"description": "Merkle root, base64"})
    chain_head = fields.String(
        required=True, metadata={"description": "chain hash at tree_size, base64"}
    )
    counts = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    made_at = fields.String(required=True)
    key_id = fields.String(required=True)
    signature = fields.String(
        required=True, metadata={"description": "Ed25519 over the RFC 8785 bytes of the rest"}
    )


class CheckpointList(Schema):
    checkpoints = fields.List(fields.Nested(CheckpointOut), required=True)
    next_before = fields.Integer(metadata={"description": "pass as before= for the next page"})


@bp.get("/checkpoints")
@requires("reader")
@bp.input(CheckpointsQuery, location="query", arg_name="query", unknown=RAISE)
@bp.output(CheckpointList)
@bp.doc(summary="Signed checkpoints of the record, newest first", responses=[400, 401])
def list_checkpoints(query: dict[str, Any]) -> Response:
    found = checkpoints.listing(conn(), before=query.get("before"), limit=query["limit"])
    set_rows(len(found))
    body: dict[str, Any] = {"checkpoints": [c.to_json() for c in found]}
    if len(found) == query["limit"]:
        body["next_before"] = found[-1].tree_size
    return json_response(dumps(body))


def _signer() -> keys.Signer:
    cached = current_app.extensions.get("auditor_signer")
    if cached is None:
        cached = keys.load_signer(os.environ, required=False)
        if cached is None:
            raise HTTPError(503, "no signing key: set AUDITOR_SIGNING_KEY_FILE for the API")
        current_app.extensions["auditor_signer"] = cached
    signer: keys.Signer = cached
    return signer


_RESPONSES: dict[int | str, dict[str, str | dict[str, dict[str, Any]]]] = {
    200: {"description": "the pack", "content": {"application/zip": {"schema": {}}}},
    400: {"description": "bad parameter"},
    401: {"description": "no, unknown or revoked token"},
    403: {"description": "the token's role is not exporter or admin"},
    409: {"description": "no checkpoint exists yet"},
    429: {"description": "this token already runs as many exports as allowed"},
    503: {"description": "no signing key configured"},
}


@bp.get("/evidence/export")
@requires("exporter")
@bp.input(EvidenceQuery, location="query", arg_name="query", unknown=RAISE)
@bp.doc(
    summary="An evidence pack (zip, streamed) with inclusion proofs against a signed checkpoint",
    responses=_RESPONSES,
)
def export_pack(query: dict[str, Any]) -> Response:
    """The zip is written while the rows are read (flat memory, no size limit), on the
    export's own connection in one REPEATABLE READ snapshot, holding one of the token's
    export slots like /events/export; the access log gets `started` and how it ended."""
    try:
        wanted = pack.Query(
            query.get("interaction_id"),
            query.get("reference_id"),
            query.get("account"),
            query.get("from_"),
            query.get("to"),
        )
    except ValueError as exc:
        raise bad_params(query=str(exc).replace("--", "")) from None
    signer = _signer()
    db = database()
    token = getattr(g, "token", None)
    who = f"api token {token.name}" if token is not None else "api"
    limit: int = current_app.config["AUDITOR_SETTINGS"].api.exports_per_token
    record = request_record(200)
    stack, connection = _take_slot(db, g.token.id, limit, repeatable_read=True)
    try:
        plan = pack.prepare(connection, wanted, signer, made_by=who)
    except pack.NothingToProve as exc:
        stack.close()
        raise HTTPError(409, str(exc)) from None
    except BaseException:
        stack.close()
        raise
    stream = ExportStream(
        stack,
        db,
        _zip_body(pack.PackStream(connection, plan)),
        current_app.extensions["auditor_metrics"],
        record,
    )
    g.export_stream = stream  # web.audit writes the `started` row and hands its id over
    response = Response(stream, mimetype="application/zip")
    response.headers["Content-Disposition"] = 'attachment; filename="evidence.zip"'
    response.headers["Cache-Control"] = "no-store"
    return response


def _zip_body(stream: pack.PackStream) -> Generator[tuple[str | bytes, int]]:
    """(zip piece, events in it); before the end, (the zip's sha256, -1) for the log."""
    digest = hashlib.sha256()
    handed = 0
    for piece in zip_chunks(iter(stream)):
        digest.update(piece)
        rows, handed = stream.rows_out - handed, stream.rows_out
        yield piece, rows
    yield digest.hexdigest(), -1
