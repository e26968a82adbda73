"""Browser pages: search, interaction timeline (live), coverage and overview, rendered on the
server with Jinja from the same store functions the API calls (web/api.py). Same tokens and
roles as the API; every page view is written to the access log like an API call."""

from web.pages.setup import install

__all__ = ["install"]
