"""A self-contained HTML page rendered from the OpenAPI document.

apiflask's own docs UIs load their JavaScript from a CDN; this machine (and many audit
networks) has no internet, so the page is plain HTML made here, with no scripts."""

from __future__ import annotations

import base64
import hashlib
from html import escape
from typing import Any

_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
h2{border-bottom:1px solid #ccc;margin-top:2rem}.m{font-weight:700;color:#05a}
table{border-collapse:collapse;width:100%}td,th{border:1px solid #ddd;padding:.25rem .5rem;
text-align:left;vertical-align:top}code{background:#f4f4f4;padding:0 .2rem}
"""
# The Content-Security-Policy allows exactly this inline style (web/headers.py).
STYLE_HASH = "sha256-" + base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()


def _schema_text(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return " | ".join(str(v) for v in schema["enum"])
    text = str(schema.get("type", "object"))
    if "format" in schema:
        text += f" ({schema['format']})"
    if "minimum" in schema or "maximum" in schema:
        text += f" {schema.get('minimum', '')}..{schema.get('maximum', '')}"
    return text


def _operation(path: str, method: str, op: dict[str, Any]) -> list[str]:
    out = [
        f"<h3><span class=m>{escape(method.upper())}</span> <code>{escape(path)}</code></h3>",
        f"<p>{escape(op.get('summary', ''))}</p>",
    ]
    if op.get("security"):
        out.append("<p>Needs <code>Authorization: Bearer &lt;token&gt;</code>.</p>")
    params = op.get("parameters", [])
    if params:
        out.append("<table><tr><th>parameter</th><th>in</th><th>type</th><th>about</th></tr>")
        for p in params:
            schema = p.get("schema", {})
            out.append(
                f"<tr><td><code>{escape(p['name'])}</code>{' *' if p.get('required') else ''}"
                f"</td><td>{escape(p.get('in', ''))}</td>"
                f"<td>{escape(_schema_text(schema))}</td>"
                f"<td>{escape(p.get('description', schema.get('description', '')))}</td></tr>"
            )
        out.append("</table>")
    codes = ", ".join(
        f"{escape(code)} {escape(r.get('description', ''))}"
        for code, r in op.get("responses", {}).items()
    )
    out.append(f"<p>Responses: {codes}</p>")
    return out


def render(spec: dict[str, Any]) -> str:
    info = spec.get("info", {})
    parts = [
        "<!doctype html><html><head><meta charset=utf-8>",
        f"<title>{escape(info.get('title', 'API'))}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(info.get('title', 'API'))} {escape(str(info.get('version', '')))}</h1>",
        f"<p>{escape(info.get('description', ''))}</p>",
        '<p>Machine-readable: <a href="/openapi.json">/openapi.json</a>. Errors are '
        "<code>application/problem+json</code> (RFC 9457).</p>",
    ]
    for path, item in sorted(spec.get("paths", {}).items()):
        for method, op in item.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                parts.extend(_operation(path, method, op))
    parts.append("</body></html>")
    return "\n".join(parts)
