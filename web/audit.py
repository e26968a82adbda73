"""Around every request: bearer-token auth with roles, the access log, metrics, timing.

Every request under /api/ is written to access_log (token name, role, method, path, query
parameters as given, status, rows returned), the refused ones included. If the record cannot
be written the answer is a 503: nothing is read without leaving a trace."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from flask import Flask, Response, current_app, g, request
from psycopg.types.json import Jsonb

from auditor import tokens
from web.db import Database
from web.errors import problem_response
from web.metrics import Metrics

F = TypeVar("F", bound=Callable[..., Any])
ROLE_ATTR = "_auditor_role"
API_PREFIX = "/api/"
log = logging.getLogger("auditor.api")

_INSERT_LOG = (
    "INSERT INTO access_log (token_name, role, method, endpoint, filters, status,"
    " rows_returned) VALUES (%s, %s, %s, %s, %s, %s, %s)"
)


def requires(role: str) -> Callable[[F], F]:
    """Mark a view as needing at least ``role`` (reader < exporter < admin)."""

    def mark(view: F) -> F:
        setattr(view, ROLE_ATTR, role)
        return view

    return mark


def database() -> Database:
    db: Database = current_app.extensions["auditor_db"]
    return db


def conn() -> psycopg.Connection[Any]:
    """The request's pooled connection (returned to the pool at teardown)."""
    if "conn" not in g:
        g.conn_ctx = database().connection()
        g.conn = g.conn_ctx.__enter__()
    connection: psycopg.Connection[Any] = g.conn
    return connection


def set_rows(count: int) -> None:
    g.rows = count


def _printable(text: str) -> str:
    # PostgreSQL text and jsonb cannot hold NUL; keep it visible instead of failing the log.
    return text.replace("\x00", "\\x00")


def filters_as_given() -> dict[str, Any]:
    """The query parameters exactly as the client sent them (NUL shown as \\x00)."""
    found: dict[str, Any] = {}
    for key, values in request.args.to_dict(flat=False).items():
        cleaned = [_printable(v) for v in values]
        found[_printable(key)] = cleaned[0] if len(cleaned) == 1 else cleaned
    return found


def write_access_log(
    connection: psycopg.Connection[Any],
    token: tokens.Token | None,
    method: str,
    path: str,
    filters: dict[str, Any],
    status: int,
    rows: int | None,
) -> None:
    connection.execute(
        _INSERT_LOG,
        (
            token.name if token else None,
            token.role if token else None,
            method,
            _printable(path),
            Jsonb(filters),
            status,
            rows,
        ),
    )


@contextmanager
def _ignore_closed() -> Iterator[None]:
    try:
        yield
    except psycopg.Error:
        log.exception("database error while finishing a request")


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _unauthorized(detail: str) -> Response:
    return problem_response(401, detail, headers={"WWW-Authenticate": 'Bearer realm="auditor"'})


def install(app: Flask, metrics: Metrics) -> None:
    @app.before_request
    def _authenticate() -> Response | None:
        g.t0 = time.perf_counter()
        g.token = None
        g.rows = None
        g.audit = request.path.startswith(API_PREFIX)
        g.audit_deferred = False
        if not g.audit:
            return None
        secret = _bearer()
        if secret is None:
            return _unauthorized("this API needs `Authorization: Bearer <token>`")
        token = tokens.verify(conn(), secret)
        if token is None:
            return _unauthorized("the token is unknown or revoked")
        g.token = token
        view = app.view_functions.get(request.endpoint or "")
        needed = getattr(view, ROLE_ATTR, None) if view is not None else None
        if needed is not None and not tokens.role_allows(token.role, needed):
            return problem_response(
                403, f"this needs the role {needed!r}; the token has {token.role!r}"
            )
        return None

    @app.after_request
    def _record(response: Response) -> Response:
        if g.get("audit") and not g.get("audit_deferred"):
            try:
                write_access_log(
                    conn(),
                    g.get("token"),
                    request.method,
                    request.path,
                    filters_as_given(),
                    response.status_code,
                    g.get("rows"),
                )
            except (psycopg.Error, OSError):
                log.exception("could not write the access log; refusing the answer")
                response = problem_response(503, "the access log cannot be written; try again")
        # Server time includes the access-log write (a commit): it is part of every answer.
        elapsed = time.perf_counter() - g.get("t0", time.perf_counter())
        response.headers["Server-Timing"] = f"app;dur={elapsed * 1000:.3f}"
        rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
        metrics.observe(rule, request.method, response.status_code, elapsed)
        return response

    @app.teardown_request
    def _release(_: BaseException | None) -> None:
        ctx = g.pop("conn_ctx", None)
        g.pop("conn", None)
        if ctx is not None:
            with _ignore_closed():
                ctx.__exit__(None, None, None)
