"""Operations: liveness, readiness, Prometheus metrics, the human-readable API docs."""

from __future__ import annotations

from typing import Any

import psycopg
from alembic.script import ScriptDirectory
from apiflask import APIBlueprint
from flask import Response, current_app

from auditor.store import schema
from web.db import conn
from web.docs_page import render
from web.errors import problem_response
from web.metrics import Metrics

bp = APIBlueprint("ops", __name__, tag="Operations")
_Responses = dict[int | str, dict[str, str | dict[str, dict[str, Any]]]]
_TEXT_RESPONSE: _Responses = {
    200: {"description": "text exposition", "content": {"text/plain": {}}}
}
_HTML_RESPONSE: _Responses = {200: {"description": "HTML", "content": {"text/html": {}}}}


def migration_heads() -> tuple[str, ...]:
    return tuple(ScriptDirectory.from_config(schema.alembic_config()).get_heads())


@bp.get("/healthz")
@bp.doc(summary="Liveness: the process answers")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@bp.get("/readyz")
@bp.doc(
    summary="Readiness: the database answers and is migrated to head",
    responses={200: "ready", 503: "not ready"},
)
def readyz() -> Any:
    heads: tuple[str, ...] = current_app.extensions["auditor_heads"]
    try:
        current = schema.current_revisions(conn())
    except psycopg.Error:
        return problem_response(503, "the database is unreachable or not migrated")
    if current != tuple(sorted(heads)):
        return problem_response(
            503, f"the database is at {', '.join(current) or 'nothing'}, not at the head"
        )
    return {"status": "ready", "migration": ", ".join(current)}


@bp.get("/metrics")
@bp.doc(
    summary="Prometheus metrics",
    responses=_TEXT_RESPONSE,
)
def metrics() -> Response:
    found: Metrics = current_app.extensions["auditor_metrics"]
    body, content_type = found.exposition()
    return Response(body, content_type=content_type)


@bp.get("/docs")
@bp.doc(
    summary="This API, readable (rendered from /openapi.json)",
    responses=_HTML_RESPONSE,
)
def docs() -> Response:
    return Response(render(current_app.spec), mimetype="text/html")  # type: ignore[attr-defined]
