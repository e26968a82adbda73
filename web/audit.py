"""Around every request: bearer-token auth with roles, the access log, metrics, timing.

Every request under /api/ is written to access_log (token name, role, method, path, query
parameters as given with credentials redacted, client address, status, rows returned), the
refused ones included, HEAD included (refused with 405). An export writes a second row when
its stream ends (completed, cut or failed). If the record cannot be written the answer is a
503: nothing is read without leaving a trace. Rows go through auditor_log_access, which stamps
the time and takes the token's name from its hash (migration 2026_12_01_access_log)."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from flask import Flask, Response, g, request

from auditor import tokens
from auditor.config import ApiSettings
from auditor.store.access_queries import AccessRecord, append
from web import headers, strict
from web.client import client_address, endpoint_for_log, filters_for_log
from web.db import primary_conn
from web.errors import problem_response
from web.metrics import Metrics
from web.ratelimit import FailureLimiter

F = TypeVar("F", bound=Callable[..., Any])
ROLE_ATTR = "_auditor_role"
API_PREFIX = "/api/"
METRICS_PATH = "/metrics"
log = logging.getLogger("auditor.api")


def requires(role: str) -> Callable[[F], F]:
    """Mark a view as needing at least ``role`` (reader < exporter < admin)."""

    def mark(view: F) -> F:
        setattr(view, ROLE_ATTR, role)
        return view

    return mark


def set_rows(count: int) -> None:
    g.rows = count


def request_record(status: int, **fields: Any) -> AccessRecord:
    """The access-log row of the current request (bounded when it is unauthenticated)."""
    token_hash = g.get("token_hash")
    anonymous = token_hash is None
    return AccessRecord(
        token_hash=token_hash,
        method=strict.CONTROL.sub("?", request.method)[:16],
        endpoint=endpoint_for_log(request.path, bounded=anonymous),
        filters=filters_for_log(request.args.items(multi=True), bounded=anonymous),
        status=status,
        client=g.get("client"),
        **fields,
    )


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _unauthorized(detail: str) -> Response:
    return problem_response(401, detail, headers={"WWW-Authenticate": 'Bearer realm="auditor"'})


def _too_many(retry_after: int) -> Response:
    return problem_response(
        429,
        "too many failed authentications from this address; try again later",
        headers={"Retry-After": str(retry_after)},
    )


def _metrics_refusal(settings: ApiSettings, limiter: FailureLimiter) -> Response | None:
    if settings.metrics_address is not None:  # served there by gunicorn's master, not here
        return problem_response(404, "no such resource; see /openapi.json for the API's routes")
    if settings.metrics_token is None:
        return None
    retry = limiter.retry_after(g.client)
    if retry is not None:
        return _too_many(retry)
    given = _bearer() or ""
    if hmac.compare_digest(given.encode(), settings.metrics_token.encode()):
        return None
    limiter.failed(g.client)
    return _unauthorized("/metrics needs `Authorization: Bearer <AUDITOR_API_METRICS_TOKEN>`")


def install(app: Flask, metrics: Metrics, settings: ApiSettings) -> None:
    limiter = FailureLimiter(settings.auth_failures_per_minute)
    app.extensions["auditor_auth_limiter"] = limiter

    @app.before_request
    def _authenticate() -> Response | None:
        g.t0 = time.perf_counter()
        g.token = None
        g.token_hash = None
        g.rows = None
        g.client = client_address(
            request.remote_addr,
            request.headers.get("X-Forwarded-For"),
            settings.trusted_proxies,
        )
        g.audit = request.path.startswith(API_PREFIX)
        if request.path == METRICS_PATH:
            return _metrics_refusal(settings, limiter)
        if not g.audit:
            return None
        retry = limiter.retry_after(g.client)
        if retry is not None:
            return _too_many(retry)
        secret = _bearer()
        if secret is None:
            limiter.failed(g.client)
            return _unauthorized("this API needs `Authorization: Bearer <token>`")
        token = tokens.verify(primary_conn(), secret)
        if token is None:
            limiter.failed(g.client)
            return _unauthorized("the token is unknown or revoked")
        g.token = token
        g.token_hash = tokens.token_hash(secret)
        if request.method == "HEAD":
            raise strict.refuse_head()
        view = app.view_functions.get(request.endpoint or "")
        needed = getattr(view, ROLE_ATTR, None) if view is not None else None
        if needed is not None and not tokens.role_allows(token.role, needed):
            return problem_response(
                403, f"this needs the role {needed!r}; the token has {token.role!r}"
            )
        strict.check(request)
        return None

    @app.after_request
    def _record(response: Response) -> Response:
        if g.get("audit"):
            response = _write_row(response)
        elapsed = time.perf_counter() - g.get("t0", time.perf_counter())
        headers.secure(response, request.path, elapsed)
        rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
        metrics.observe(rule, request.method, response.status_code, elapsed)
        return response


def _write_row(response: Response) -> Response:
    stream = g.get("export_stream")
    try:
        outcome = "started" if stream is not None and response.status_code == 200 else "answered"
        row_id = append(
            primary_conn(),
            request_record(response.status_code, rows=g.get("rows"), outcome=outcome),
        )
    except (psycopg.Error, OSError):
        log.exception("could not write the access log; refusing the answer")
        if stream is not None:
            stream.close()  # the export's connection and slot go back now
        return problem_response(503, "the access log cannot be written; try again")
    if stream is not None:
        stream.started_row = row_id
    return response
