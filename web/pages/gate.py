"""The pages' blueprint and what runs around each of its views: the token from the cookie,
the role, strict parameters, the access-log row, the Content-Security-Policy, HTML errors.

The app's own hooks (web/audit.py) do the timing, metrics and the access-log write; here
`g.audit` is set so that every page view, refused ones included, gets its row."""

from __future__ import annotations

from urllib.parse import urlencode

from apiflask import HTTPError
from flask import Blueprint, Response, current_app, g, redirect, render_template, request
from werkzeug.wrappers import Response as Answer

from auditor import tokens
from web import strict
from web.db import conn
from web.ratelimit import FailureLimiter

PREFIX = "/ui"
COOKIE = "auditor_ui_token"
NEEDED_ROLE = "reader"
# Pages load their own scripts and styles only; charts are inline SVG (markup, not style).
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
    " connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
# Views anyone may open: the sign-in form (and its POST, which checks the token itself).
PUBLIC_ENDPOINTS = frozenset({"pages.login", "pages.login_post"})

bp = Blueprint("pages", __name__, url_prefix=PREFIX)
root = Blueprint("pages_root", __name__)
# Pages are not API operations: apiflask reads this flag on every blueprint it documents.
for _blueprint in (bp, root):
    setattr(_blueprint, "enable_openapi", False)  # noqa: B010 (not declared on Blueprint)


class PageError(Exception):
    """Shown as an HTML page with this status and message."""

    def __init__(self, status: int, message: str, details: list[tuple[str, str]] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details or []


def limiter() -> FailureLimiter:
    found: FailureLimiter = current_app.extensions["auditor_auth_limiter"]
    return found


def login_redirect(reason: str | None = None) -> Answer:
    target = request.full_path if request.query_string else request.path
    params = {"next": target}
    if reason:
        params["reason"] = reason
    return redirect(f"{PREFIX}/login?{urlencode(params)}", code=303)


@bp.before_request
def _gate() -> Answer | None:
    g.audit = True  # every page view is in the access log, like an API call
    g.page_token = None
    retry = limiter().retry_after(g.client)
    if retry is not None:
        raise PageError(429, f"Too many failed sign-ins from this address; retry in {retry} s.")
    strict.check(request)
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    secret = request.cookies.get(COOKIE)
    if not secret:
        return login_redirect()
    token = tokens.verify(conn(), secret)
    if token is None:
        limiter().failed(g.client)
        response = login_redirect("expired")
        response.delete_cookie(COOKIE, path=PREFIX)
        return response
    g.token = token
    g.token_hash = tokens.token_hash(secret)
    g.page_token = token
    if not tokens.role_allows(token.role, NEEDED_ROLE):
        raise PageError(403, f"This needs the role {NEEDED_ROLE!r}; the token has {token.role!r}.")
    return None


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    return response


def _error_page(status: int, message: str, details: list[tuple[str, str]]) -> Response:
    body = render_template("error.html", status=status, message=message, details=details)
    response = Response(body, status=status, mimetype="text/html")
    if status == 429:
        response.headers["Retry-After"] = "60"
    return response


@bp.errorhandler(PageError)
def _page_error(error: PageError) -> Response:
    return _error_page(error.status, error.message, error.details)


@bp.errorhandler(HTTPError)
def _http_error(error: HTTPError) -> Response:
    """Bad parameters (web/strict.py, cursors) as a page naming each one."""
    details: list[tuple[str, str]] = []
    if isinstance(error.detail, dict):
        for location in error.detail.values():
            if isinstance(location, dict):
                details += [(str(k), _reason(v)) for k, v in location.items()]
    return _error_page(error.status_code, error.message or "Bad request", details)


def _reason(value: object) -> str:
    if isinstance(value, list | tuple):
        return " ".join(str(v) for v in value)
    return str(value)


@root.get("/")
def index() -> Answer:
    return redirect(f"{PREFIX}/", code=303)
