"""Application factory: no import-time side effects, settings injected."""

from __future__ import annotations

import logging
from typing import Any

from apiflask import APIFlask

from auditor.config import Settings
from web import (
    admin,
    api,
    audit,
    errors,
    evidence,
    export,
    findings,
    holds,
    integrity,
    ops,
    pages,
    strict,
)
from web.client import redact_logger
from web.cursor import CursorCodec
from web.db import ConnectionFactory, Database, install
from web.metrics import Metrics

DESCRIPTION = (
    "Read-only query API over the GWS Open Media audit store: interactions, timelines, "
    "event search and export, coverage. Every /api/v1 call needs a bearer token and is "
    "recorded in the access log."
)
BEARER = "bearerAuth"


def _problem_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "invalid_params": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "reason"],
                    "properties": {"name": {"type": "string"}, "reason": {"type": "string"}},
                },
            },
        },
    }


def _limit_path_parameters(op: dict[str, Any]) -> None:
    """Path parameters obey the same rules as query ones (web/strict.py)."""
    for parameter in op.get("parameters", []):
        if parameter.get("in") == "path":
            parameter["schema"] = {
                "type": "string",
                "minLength": 1,
                "maxLength": strict.MAX_PATH_PARAM,
                "pattern": strict.NO_CONTROL_PATTERN,
            }


def _finish_spec(spec: dict[Any, Any] | str) -> dict[Any, Any] | str:
    """Errors are problem+json everywhere; /api/ operations need the bearer token."""
    if isinstance(spec, str):
        return spec
    spec.setdefault("components", {}).setdefault("schemas", {})["Problem"] = _problem_schema()
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, item in spec.get("paths", {}).items():
        for op in item.values():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            responses = op["responses"]
            if "requestBody" in op:  # every body this API takes is a JSON object it needs
                op["requestBody"]["required"] = True
            if path.startswith("/api/"):
                op["security"] = [{BEARER: []}]
                responses.setdefault("401", {"description": "no, unknown or revoked token"})
                responses.setdefault("403", {"description": "the token's role is too low"})
                responses.setdefault("400", {"description": "bad parameter"})
                responses.setdefault(
                    "429", {"description": "too many failed authentications (Retry-After)"}
                )
                _limit_path_parameters(op)
            responses.setdefault("500", {"description": "unexpected error"})
            for code, response in responses.items():
                if str(code)[0] in "45":
                    response["content"] = problem
    return spec


def create_app(settings: Settings, connections: ConnectionFactory = Database) -> APIFlask:
    """``connections`` makes the app's connection source from the settings: the pool by
    default; tests pass one that keeps every request inside the test's transaction."""
    app = APIFlask(
        __name__,
        title="auditor query API",
        version="1",
        spec_path="/openapi.json",
        docs_path=None,  # apiflask's UIs load scripts from a CDN; /docs is ours
    )
    app.config["AUDITOR_SETTINGS"] = settings
    app.config["DESCRIPTION"] = DESCRIPTION
    app.config["SYNC_LOCAL_SPEC"] = False
    app.security_schemes = {BEARER: {"type": "http", "scheme": "bearer"}}
    metrics = Metrics()
    install(app, connections(settings))
    app.extensions["auditor_metrics"] = metrics
    app.extensions["auditor_cursor"] = CursorCodec(settings.api.require_secret())
    app.extensions["auditor_heads"] = ops.migration_heads()
    errors.install(app)
    redact_logger(logging.getLogger("auditor.api"))
    audit.install(app, metrics, settings.api)
    app.register_blueprint(ops.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(export.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(findings.bp)
    app.register_blueprint(integrity.bp)
    app.register_blueprint(evidence.bp)
    app.register_blueprint(holds.bp)
    pages.install(app, settings.api.require_secret())  # browser pages under /ui
    app.spec_processor(_finish_spec)
    return app
