"""The WSGI entry point gunicorn loads (`auditor serve`): the app from the environment."""

from __future__ import annotations

import os

from auditor.config import Settings
from web.app import create_app

app = create_app(Settings.from_env(os.environ))
