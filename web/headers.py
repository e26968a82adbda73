"""Headers every answer carries: nothing cached (answers hold audit data and tokens' reach),
no content sniffing, a strict Content-Security-Policy on the HTML docs page, and timing only
on successful answers (an error answer tells a prober nothing about the server)."""

from __future__ import annotations

from flask import Response

from web.docs_page import STYLE_HASH

DOCS_PATH = "/docs"
# The page has one inline <style> (allowed by its hash), no scripts, images or forms.
DOCS_CSP = (
    f"default-src 'none'; style-src '{STYLE_HASH}'; base-uri 'none'; form-action 'none';"
    " frame-ancestors 'none'"
)


def secure(response: Response, path: str, elapsed: float) -> None:
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    if path == DOCS_PATH:
        response.headers["Content-Security-Policy"] = DOCS_CSP
    if response.status_code < 400:
        # Server time includes the access-log write (a commit): it is part of every answer.
        response.headers["Server-Timing"] = f"app;dur={elapsed * 1000:.3f}"
    else:
        response.headers.pop("Server-Timing", None)
    response.headers.pop("Server", None)
