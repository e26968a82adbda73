"""HeaderCookieJar's cached Cookie header: kept while nothing can change it, re-read when a
response changed the jar, or after the refresh period when a cookie in it can expire."""

from __future__ import annotations

import asyncio
from http.cookies import SimpleCookie
from typing import Any

import aiohttp
import pytest
from yarl import URL

from auditor.ingest import http as http_module
from auditor.ingest.http import HeaderCookieJar

URL_TEXT = "http://127.0.0.1:8090/api/v2/notifications"


def _reads_after(
    monkeypatch: pytest.MonkeyPatch, cookie: str, seconds: float
) -> tuple[list[str], list[Any]]:
    """The headers before and after `seconds`, and the jar reads made after them."""
    clock = [1000.0]
    monkeypatch.setattr(http_module.time, "monotonic", lambda: clock[0])
    reads: list[Any] = []
    original = aiohttp.CookieJar.filter_cookies

    def counting(self: aiohttp.CookieJar, request_url: URL = URL()) -> Any:  # noqa: B008
        reads.append(request_url)
        return original(self, request_url)

    async def run() -> list[str]:
        jar = HeaderCookieJar()
        jar.update_cookies(SimpleCookie(cookie), URL(URL_TEXT))
        first = jar.cookie_header(URL_TEXT)
        monkeypatch.setattr(aiohttp.CookieJar, "filter_cookies", counting)
        clock[0] += seconds
        return [first, jar.cookie_header(URL_TEXT)]

    return asyncio.run(run()), reads


def test_a_session_cookie_header_is_kept_past_the_refresh_period(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    headers, reads = _reads_after(monkeypatch, "JSESSIONID=abc; Path=/", 3600)
    assert headers == ["JSESSIONID=abc", "JSESSIONID=abc"]
    assert reads == []  # nothing in the jar can expire: not read again


def test_a_cookie_that_can_expire_is_read_again_after_the_refresh_period(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    headers, reads = _reads_after(
        monkeypatch, "JSESSIONID=abc; Path=/; Max-Age=86400", http_module._REFRESH + 1
    )
    assert headers == ["JSESSIONID=abc", "JSESSIONID=abc"]
    assert len(reads) == 1


def test_a_changed_jar_is_read_again_at_once() -> None:
    async def run() -> list[str]:
        jar = HeaderCookieJar()
        jar.update_cookies(SimpleCookie("JSESSIONID=abc; Path=/"), URL(URL_TEXT))
        first = jar.cookie_header(URL_TEXT)
        jar.update_cookies_from_headers(["JSESSIONID=def; Path=/"], URL(URL_TEXT))
        return [first, jar.cookie_header(URL_TEXT)]

    assert asyncio.run(run()) == ["JSESSIONID=abc", "JSESSIONID=def"]
