"""Opaque paging cursors: base64url of compact JSON, signed with HMAC-SHA256.

The signed body binds the cursor to the endpoint, the filters and the sort it was made for,
so a cursor cannot be forged, edited, or reused with other filters."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

_MAC_BYTES = 16  # truncated HMAC-SHA256: 128 bits is plenty against forgery


class BadCursor(ValueError):
    """The cursor is malformed, tampered with, or was made for another query."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def query_digest(endpoint: str, filters: Mapping[str, Any], order: str) -> str:
    canonical = json.dumps(
        {"e": endpoint, "f": filters, "o": order}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class CursorCodec:
    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"auditor-cursor\x00" + secret.encode()).digest()

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()[:_MAC_BYTES]

    def encode(self, digest: str, position: list[Any]) -> str:
        body = json.dumps({"q": digest, "k": position}, separators=(",", ":")).encode()
        return _b64(body + self._mac(body))

    def decode(self, cursor: str, digest: str) -> list[Any]:
        """The position stored in the cursor; BadCursor unless it is ours and for this query."""
        if len(cursor) > 512:
            raise BadCursor("is too long to be a cursor this API issued")
        try:
            raw = _unb64(cursor)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise BadCursor("is not a cursor this API issued") from None
        body, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if len(raw) <= _MAC_BYTES or not hmac.compare_digest(mac, self._mac(body)):
            raise BadCursor("is not a cursor this API issued (or was altered)")
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise BadCursor("is not a cursor this API issued") from None
        if not isinstance(data, dict):
            raise BadCursor("is not a cursor this API issued")
        if data.get("q") != digest:
            raise BadCursor("was made for other filters or another sort order; start without it")
        position = data.get("k")
        if not isinstance(position, list):
            raise BadCursor("is not a cursor this API issued")
        return position
