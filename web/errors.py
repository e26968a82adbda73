"""Every 4xx and 5xx as RFC 9457 application/problem+json, mapped in one place."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import psycopg
import psycopg_pool
from apiflask import APIFlask, HTTPError
from flask import Response, json
from werkzeug.datastructures import Headers
from werkzeug.exceptions import HTTPException

PROBLEM_JSON = "application/problem+json"
INVALID_PARAMS = "urn:auditor:problem:invalid-parameters"
log = logging.getLogger("auditor.api")


def title_of(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def bad_params(**reasons: str) -> HTTPError:
    """A 400 naming each bad parameter and what it accepts."""
    return HTTPError(400, "invalid query parameters", detail={"query": dict(reasons)})


def problem_response(
    status: int,
    detail: str,
    *,
    type_: str = "about:blank",
    invalid_params: list[dict[str, str]] | None = None,
    headers: Any = None,
) -> Response:
    body: dict[str, Any] = {
        "type": type_,
        "title": title_of(status),
        "status": status,
        "detail": detail,
    }
    if invalid_params is not None:
        body["invalid_params"] = invalid_params
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_JSON)
    for name, value in Headers(headers or {}).items():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def _flatten(prefix: str, value: Any) -> list[dict[str, str]]:
    """apiflask's validation detail ({field: [messages]} or nested) as [{name, reason}]."""
    if isinstance(value, Mapping):
        found = []
        for key, inner in value.items():
            name = str(key) if not prefix else f"{prefix}[{key}]"
            found.extend(_flatten(name, inner))
        return found
    if isinstance(value, list | tuple):
        return [{"name": prefix, "reason": " ".join(str(v) for v in value)}]
    return [{"name": prefix, "reason": str(value)}]


def _from_http_error(error: HTTPError) -> Response:
    status = error.status_code
    detail = error.detail
    if status in (400, 422) and isinstance(detail, Mapping) and detail:
        params: list[dict[str, str]] = []
        for location in detail.values():
            params.extend(_flatten("", location))
        names = ", ".join(p["name"] for p in params)
        return problem_response(
            400,
            f"bad parameter(s): {names}",
            type_=INVALID_PARAMS,
            invalid_params=params,
            headers=error.headers,
        )
    message = error.message or title_of(status)
    if status == 405:
        message = "this method is not allowed here; see the Allow header"
    elif status == 404 and message == "Not Found":
        message = "no such resource; see /openapi.json for the API's routes"
    return problem_response(status, message, headers=error.headers)


def install(app: APIFlask) -> None:
    app.config["VALIDATION_ERROR_STATUS_CODE"] = 400

    @app.error_processor
    def _problem(error: HTTPError) -> Response:
        return _from_http_error(error)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        if isinstance(error, HTTPException):  # not routed through apiflask (rare)
            return problem_response(error.code or 500, error.description or "")
        if isinstance(error, psycopg.errors.QueryCanceled):
            # The statement timeout: a valid question too large to answer now (e.g. an as_of
            # far back on a large store), not a fault of the server's.
            return problem_response(
                503,
                "the query ran longer than the API's statement timeout; narrow it (a time "
                "range, an account, a later as_of) and try again",
                headers={"Retry-After": "60"},
            )
        if isinstance(error, psycopg_pool.PoolTimeout):
            # Every connection of the process's pool stayed busy for the pool's timeout.
            return problem_response(
                503,
                "the API's database connections are all busy; try again shortly",
                headers={"Retry-After": "5"},
            )
        # The details go to the log, never to the client.
        log.exception("unexpected error while serving a request")
        return problem_response(500, "an unexpected error occurred; it has been logged")
