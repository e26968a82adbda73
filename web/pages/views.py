"""What every template shares: times as <time> elements (UTC on the server, the viewer's zone
added by static/time.js), JSON pretty-printed, query strings for links."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from flask import Flask, Response, render_template
from markupsafe import Markup


def utc_text(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def time_element(value: datetime | str | None) -> Markup:
    """A time readable without JavaScript (UTC); the script shows it in the viewer's zone and
    keeps UTC in the title (on hover)."""
    if value is None:
        return Markup("—")
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    at = value.astimezone(UTC)
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        at.isoformat(), utc_text(at), utc_text(at)
    )


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def short_json(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def query_string(params: dict[str, Any], **changes: Any) -> str:
    merged = {**params, **changes}
    return urlencode({k: v for k, v in merged.items() if v not in (None, "")})


def csrf_token() -> str:
    """Flask-WTF's signed CSRF token, imported on first use: it brings WTForms along, which
    every gunicorn worker would otherwise load at boot for the API's sake too."""
    from flask_wtf.csrf import generate_csrf

    token: str = generate_csrf()
    return token


def install_filters(app: Flask) -> None:
    app.jinja_env.filters["t"] = time_element
    app.jinja_env.filters["pretty_json"] = pretty_json
    app.jinja_env.filters["short_json"] = short_json
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["query_string"] = query_string
    app.jinja_env.autoescape = True


def page(template: str, status: int = 200, **context: Any) -> Response:
    return Response(render_template(template, **context), status=status, mimetype="text/html")
