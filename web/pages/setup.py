"""Wiring the pages into the app: blueprints, the session cookie (CSRF secret only), Jinja."""

from __future__ import annotations

import hashlib

from flask import Flask
from flask.sessions import SecureCookieSessionInterface

from web.pages import auth, coverage, live, overview, search, timeline, views
from web.pages.gate import PREFIX, bp, root

_ = (auth, coverage, live, overview, search, timeline)  # their views register on bp


class _PageSession(SecureCookieSessionInterface):
    """Flask's signed session cookie, Secure whenever the page is served over TLS."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return auth.served_over_tls()


def _derived(secret: str, label: bytes) -> str:
    return hashlib.sha256(label + b"\x00" + secret.encode()).hexdigest()


def install(app: Flask, api_secret: str) -> None:
    app.secret_key = _derived(api_secret, b"auditor-ui-session")
    app.config.update(
        WTF_CSRF_SECRET_KEY=_derived(api_secret, b"auditor-ui-csrf"),
        SESSION_COOKIE_NAME="auditor_ui_session",
        SESSION_COOKIE_PATH=PREFIX,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
    )
    app.session_interface = _PageSession()
    views.install_filters(app)
    app.register_blueprint(bp)
    app.register_blueprint(root)
