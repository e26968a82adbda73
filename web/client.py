"""Who is asking and what may be written down about it: the client's address (the socket's,
or X-Forwarded-For when the peer is a trusted proxy) and request text with credentials
redacted, for the access log, the app log and gunicorn's access log alike."""

from __future__ import annotations

import ipaddress
import json
import logging
import re
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode

from auditor.config import IPNetwork

REDACTED = "[redacted]"
# Parameter names that carry credentials by convention (compared case-insensitively).
SECRET_NAMES = frozenset(
    {
        "access_token",
        "api_key",
        "apikey",
        "auth",
        "authorization",
        "bearer",
        "client_secret",
        "id_token",
        "jwt",
        "key",
        "passwd",
        "password",
        "pwd",
        "refresh_token",
        "secret",
        "session",
        "signature",
    }
)
# Our own bearer secrets (auditor.tokens: "aud_" + 43 urlsafe characters), wherever they are.
TOKEN_SHAPE = re.compile(r"aud_[A-Za-z0-9_-]{16,}")
# Unauthenticated requests: what their access-log row may hold (the database checks it too).
MAX_ANON_ENDPOINT_BYTES = 500
MAX_ANON_FILTERS_BYTES = 2000
MAX_PARAM_CHARS = 256

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _address(text: str | None) -> Address | None:
    if not text:
        return None
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def client_address(
    peer: str | None, forwarded_for: str | None, trusted: Sequence[IPNetwork]
) -> str | None:
    """The client's address. X-Forwarded-For is read only when the socket's peer is a trusted
    proxy, right to left, skipping trusted proxies: the first other hop is the client. An
    unparsable hop ends the walk at the last trusted address (a client could have written it)."""
    address = _address(peer)
    if address is None or not _trusted(address, trusted):
        return str(address) if address is not None else None
    for hop in reversed((forwarded_for or "").split(",")):
        hop_address = _address(hop)
        if hop_address is None:
            break
        address = hop_address
        if not _trusted(hop_address, trusted):
            break
    return str(address)


def _trusted(address: Address, trusted: Sequence[IPNetwork]) -> bool:
    return any(address in network for network in trusted)


def is_secret(name: str, value: str) -> bool:
    return name.lower() in SECRET_NAMES or TOKEN_SHAPE.search(value) is not None


# `name=value` of a credential-named parameter inside free text (a logged URL or message).
_NAMED_SECRET = re.compile(
    r"(?i)(?<![A-Za-z0-9_])(" + "|".join(sorted(SECRET_NAMES)) + r")=([^&\s'\"#]*)"
)


def redact_text(text: str) -> str:
    """Token-shaped strings and credential-named `name=value` pairs replaced."""
    return _NAMED_SECRET.sub(r"\1=" + REDACTED, TOKEN_SHAPE.sub(REDACTED, text))


def redact_pairs(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(redact_text(k), REDACTED if is_secret(k, v) else v) for k, v in pairs]


def redact_query_string(query: str) -> str:
    """A raw query string with every credential replaced (for server logs)."""
    if not query:
        return query
    pairs = parse_qsl(query, keep_blank_values=True, errors="replace")
    if not any(is_secret(k, v) for k, v in pairs) and not TOKEN_SHAPE.search(query):
        return query
    return urlencode(redact_pairs(pairs), safe="[]")


def redact_uri(uri: str) -> str:
    path, sep, query = uri.partition("?")
    return redact_text(path) + (sep + redact_query_string(query) if sep else "")


class RedactingFilter(logging.Filter):
    """Credentials out of every record of the logger it is attached to, traceback included."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact_text(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
        return True


def redact_logger(logger: logging.Logger) -> None:
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())


def printable(text: str) -> str:
    # PostgreSQL text and jsonb cannot hold NUL; keep it visible instead of failing the log.
    return text.replace("\x00", "\\x00")


def filters_for_log(pairs: Iterable[tuple[str, str]], *, bounded: bool) -> dict[str, Any]:
    """The query parameters as sent, credentials redacted, NUL shown as \\x00. ``bounded``
    (unauthenticated requests): values cut to 256 characters and the whole to 2,000 bytes,
    naming how many parameters were left out."""
    found: dict[str, Any] = {}
    left_out = 0
    for key, value in redact_pairs(pairs):
        name, text = printable(key), printable(value)
        if bounded:
            name, text = name[:MAX_PARAM_CHARS], text[:MAX_PARAM_CHARS]
            candidate = {**found, name: _merged(found.get(name), text)}
            if len(json.dumps(candidate).encode()) > MAX_ANON_FILTERS_BYTES - 40:
                left_out += 1
                continue
            found = candidate
        else:
            found[name] = _merged(found.get(name), text)
    if left_out:
        found["_left_out"] = left_out
    return found


def _merged(before: Any, value: str) -> Any:
    if before is None:
        return value
    return [*before, value] if isinstance(before, list) else [before, value]


def endpoint_for_log(path: str, *, bounded: bool) -> str:
    text = printable(redact_text(path))
    if bounded and len(text.encode()) > MAX_ANON_ENDPOINT_BYTES:
        text = text.encode()[:MAX_ANON_ENDPOINT_BYTES].decode(errors="ignore") + "..."
    return text
