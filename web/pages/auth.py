"""Signing in and out: the token is entered once, checked like a bearer token, and kept in a
cookie (HttpOnly, SameSite=Strict, Secure when served over TLS). Both forms carry a CSRF token
(Flask-WTF's signed token, its secret in the Flask session cookie)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from flask import Response, current_app, g, redirect, render_template, request, session
from werkzeug.wrappers import Response as Answer

from auditor import tokens
from web.db import conn
from web.pages.gate import COOKIE, PREFIX, PageError, bp, limiter

COOKIE_MAX_AGE = 12 * 3600  # a working day; the token itself may live longer
REASONS = {"expired": "The token is unknown or has been revoked; sign in again."}


def served_over_tls() -> bool:
    """TLS here or at a trusted reverse proxy (X-Forwarded-Proto from a trusted peer only)."""
    if request.is_secure:
        return True
    settings = current_app.config["AUDITOR_SETTINGS"].api
    if not settings.trusted_proxies or request.remote_addr is None:
        return False
    try:
        peer = ipaddress.ip_address(request.remote_addr)
    except ValueError:
        return False
    if not any(peer in network for network in settings.trusted_proxies):
        return False
    return request.headers.get("X-Forwarded-Proto", "").strip().lower() == "https"


def safe_next(target: str | None) -> str:
    """Only a path of these pages: never another site (an open redirect)."""
    if not target:
        return f"{PREFIX}/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith(PREFIX + "/"):
        return f"{PREFIX}/"
    if "\\" in target or target.startswith("//"):
        return f"{PREFIX}/"
    return target


def _check_csrf() -> None:
    # imported on first use (see views.csrf_token): WTForms comes along with Flask-WTF
    from flask_wtf.csrf import CSRFError, validate_csrf
    from wtforms import ValidationError

    try:
        validate_csrf(request.form.get("csrf_token"))
    except (ValidationError, CSRFError) as exc:
        raise PageError(
            400, f"The form has expired or was not sent by this site ({exc})."
        ) from None


def _login_page(status: int = 200, error: str | None = None, prefill: str = "") -> Response:
    body = render_template(
        "login.html",
        next=safe_next(request.values.get("next")),
        error=error or REASONS.get(request.args.get("reason", "")),
        prefill=prefill,
    )
    return Response(body, status=status, mimetype="text/html")


@bp.get("/login")
def login() -> Response:
    # A login link may carry the token (`make demo` prints one): it only fills the form in;
    # signing in stays a POST with a CSRF token.
    prefill = request.args.get("token", "")
    return _login_page(prefill=prefill if prefill.startswith(tokens.PREFIX) else "")


@bp.post("/login")
def login_post() -> Answer:
    _check_csrf()
    secret = (request.form.get("token") or "").strip()
    token = tokens.verify(conn(), secret) if secret else None
    if token is None:
        limiter().failed(g.client)
        return _login_page(401, "That token is unknown or revoked.")
    g.token = token
    g.token_hash = tokens.token_hash(secret)
    response = redirect(safe_next(request.form.get("next")), code=303)
    response.set_cookie(
        COOKIE,
        secret,
        max_age=COOKIE_MAX_AGE,
        path=PREFIX,
        httponly=True,
        secure=served_over_tls(),
        samesite="Strict",
    )
    session.clear()  # a new CSRF secret after signing in
    return response


@bp.post("/logout")
def logout() -> Answer:
    _check_csrf()
    response = redirect(f"{PREFIX}/login", code=303)
    response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="Strict")
    session.clear()
    return response
