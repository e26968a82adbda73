"""One aiohttp session per GWS account, tuned for thousands of idle long-polls.

An idle session costs one HTTP request per long-poll, so per-request overhead is the
worker's idle cost. Two parts of aiohttp's request building showed in profiles:

* cookies: aiohttp rebuilds the Cookie header through `http.cookies` Morsels on every
  request (a tenth of an idle cycle). `HeaderCookieJar` keeps aiohttp's jar for receiving
  cookies (parsing, expiry, `unsafe=True` so cookies from IP hosts are kept) but hands
  none to aiohttp; the caller puts `cookie_header(url)` in the request headers, rebuilt
  only when a response changed the jar (or every `_REFRESH` seconds, for expiry);
* JSON: the standard library encoder for the outgoing Bayeux payload; orjson writes the
  same text for the plain dicts and lists the client builds.
"""

from __future__ import annotations

import json
import time
from http.cookies import BaseCookie, SimpleCookie
from typing import Any

import aiohttp
import orjson
from yarl import URL

_REFRESH = 30.0  # seconds: re-read the jar even without a change (cookie expiry)


def dumps_request(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # orjson.JSONEncodeError: something orjson does not write
        return json.dumps(value)


def dumps_request_bytes(value: Any) -> bytes:
    """dumps_request's text as UTF-8 bytes (what the lean client sends)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value).encode()


class HeaderCookieJar(aiohttp.CookieJar):
    def __init__(self) -> None:
        super().__init__(unsafe=True)
        self._headers: dict[str, tuple[float, str]] = {}

    def update_cookies(self, cookies: Any, response_url: URL = URL()) -> None:  # noqa: B008
        super().update_cookies(cookies, response_url)
        self._headers.clear()

    def update_cookies_from_headers(self, headers: Any, response_url: URL) -> None:
        super().update_cookies_from_headers(headers, response_url)
        self._headers.clear()

    def clear(self, predicate: Any = None) -> None:
        super().clear(predicate)
        self._headers.clear()

    def filter_cookies(self, request_url: URL = URL()) -> BaseCookie[str]:  # noqa: B008
        return SimpleCookie()  # the caller sends cookie_header() itself

    def cookie_header(self, url: str) -> str:
        """The Cookie header value for a request to `url` ("" when there is none)."""
        cached = self._headers.get(url)
        now = time.monotonic()
        # Re-read for expiry only when a cookie in the jar can expire: a session cookie
        # (JSESSIONID, GWS's) keeps the header until a response changes the jar. With
        # 10,000 sessions the 30 s re-read was one long-poll in four.
        if cached is not None and (
            now - cached[0] < _REFRESH or not getattr(self, "_expirations", True)
        ):
            return cached[1]
        morsels = super().filter_cookies(URL(url))
        value = "; ".join(f"{name}={m.coded_value}" for name, m in morsels.items())
        self._headers[url] = (now, value)
        return value


def new_session() -> tuple[aiohttp.ClientSession, HeaderCookieJar]:
    jar = HeaderCookieJar()
    return aiohttp.ClientSession(cookie_jar=jar, json_serialize=dumps_request), jar
