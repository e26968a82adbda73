"""REST: Basic login, JSESSIONID, CSRF, Open Media operations and their JSON errors."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from tests.simulator.support import SimThread, basic, fast_config, login


async def _call(
    url: str, method: str, path: str, *, auth: str | None = None, **kwargs: Any
) -> tuple[int, Any, dict[str, str]]:
    headers = kwargs.pop("headers", {})
    if auth:
        headers["Authorization"] = auth
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http,
        http.request(method, f"{url}{path}", headers=headers, **kwargs) as r,
    ):
        return r.status, await r.json(content_type=None), dict(r.headers)


def test_wrong_credentials_get_status_code_20_and_http_401() -> None:
    with SimThread(fast_config()) as server:
        status, body, _ = asyncio.run(
            _call(server.url, "GET", "/api/v2/me", auth=basic("agent001", "wrong"))
        )
        missing, body2, _ = asyncio.run(_call(server.url, "GET", "/api/v2/me"))
    assert (status, body["statusCode"]) == (401, 20)
    assert (missing, body2["statusCode"]) == (401, 20)


def test_login_sets_jsessionid_and_returns_csrf_header_and_token() -> None:
    with SimThread(fast_config()) as server:
        status, body, headers = asyncio.run(
            _call(server.url, "GET", "/api/v2/me", auth=basic("agent002"))
        )
    assert status == 200
    assert body["statusCode"] == 0
    assert body["user"]["userName"] == "agent002"
    assert "JSESSIONID=" in headers["Set-Cookie"]
    assert headers["X-CSRF-HEADER"] == "X-CSRF-TOKEN"
    assert len(headers["X-CSRF-TOKEN"]) == 36


def test_post_without_csrf_token_is_403_missing_or_invalid_csrf_token() -> None:
    with SimThread(fast_config()) as server:

        async def run() -> tuple[int, Any, int]:
            http, token = await login(server.url, "agent001")
            try:
                body = {"operationName": "StartContactCenterSession", "channels": ["workitem"]}
                async with http.post(f"{server.url}/api/v2/me", json=body) as r:
                    denied = (r.status, await r.json())
                async with http.post(
                    f"{server.url}/api/v2/me", json=body, headers={"X-CSRF-TOKEN": token}
                ) as r:
                    return denied[0], denied[1], r.status
            finally:
                await http.close()

        status, body, ok = asyncio.run(run())
    assert status == 403
    assert body["statusMessage"] == "Missing or invalid Csrf token"
    assert ok == 200


def test_csrf_off_accepts_posts_without_token_and_sends_no_csrf_headers() -> None:
    with SimThread(fast_config(csrf=False)) as server:
        status, _, headers = asyncio.run(
            _call(
                server.url,
                "POST",
                "/api/v2/me",
                auth=basic("agent001"),
                json={"operationName": "StartContactCenterSession"},
            )
        )
    assert status == 200
    assert "X-CSRF-TOKEN" not in headers


def test_version_needs_no_credentials() -> None:
    with SimThread(fast_config()) as server:
        status, body, _ = asyncio.run(_call(server.url, "GET", "/api/v2/diagnostics/version"))
    assert status == 200
    assert body == {"statusCode": 0, "version": "8.5.200.50"}


def test_bad_operations_get_documented_json_4xx_errors() -> None:
    with SimThread(fast_config(csrf=False)) as server:

        async def run() -> dict[str, tuple[int, Any]]:
            http, _ = await login(server.url, "agent001")
            out: dict[str, tuple[int, Any]] = {}
            base = f"{server.url}/api/v2/me/openmedia"
            try:
                cases: dict[str, tuple[str, dict[str, Any]]] = {
                    "unknown-op": (f"{base}/workitem", {"json": {"operationName": "Explode"}}),
                    "media-type": (f"{base}/fax", {"json": {"operationName": "Create"}}),
                    "bad-json": (f"{base}/workitem", {"data": b"{oops"}),
                    "not-object": (f"{base}/workitem", {"json": [1, 2]}),
                    "no-item": (
                        f"{base}/workitem/0NOSUCHITEM00000",
                        {"json": {"operationName": "Complete"}},
                    ),
                    "no-userdata": (
                        f"{base}/workitem/X",
                        {"json": {"operationName": "AttachUserData"}},
                    ),
                    "route": (f"{server.url}/api/v2/nothing-here", {"json": {}}),
                }
                for name, (url, kwargs) in cases.items():
                    async with http.post(url, **kwargs) as r:
                        out[name] = (r.status, await r.json())
                return out
            finally:
                await http.close()

        out = asyncio.run(run())
    for name, (status, body) in out.items():
        assert 400 <= status < 500, name
        assert isinstance(body["statusCode"], int), name
        assert body["statusMessage"], name
        assert "Traceback" not in body["statusMessage"], name
    assert out["unknown-op"][0] == 400
    assert out["media-type"][0] == 404
    assert out["bad-json"][0] == 400


def test_get_openmedia_returns_the_agents_current_items() -> None:
    with SimThread(fast_config(agents=1, csrf=False)) as server:
        server.control("generate", {"count": 30})

        async def run() -> Any:
            http, _ = await login(server.url, "agent001")
            try:
                async with http.get(f"{server.url}/api/v2/me/openmedia/workitem?fields=*") as r:
                    return await r.json()
            finally:
                await http.close()

        body = asyncio.run(run())
    assert body["statusCode"] == 0
    for item in body["openmedia"]:
        assert item["state"] in ("Invited", "Processing")
        assert item["uri"].endswith(f"/api/v2/openmedia/workitems/{item['id']}")
