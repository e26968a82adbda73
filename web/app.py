"""Application factory: no import-time side effects, settings injected."""

from __future__ import annotations

from flask import Flask

from auditor.config import Settings


def create_app(settings: Settings) -> Flask:
    app = Flask(__name__)
    app.config["AUDITOR_SETTINGS"] = settings

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
