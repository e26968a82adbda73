"""An agent's REST calls to the simulated GWS, synchronously (urllib with a cookie jar):
enough for a test to make the simulator emit a notification on a chosen item."""

from __future__ import annotations

import http.cookiejar
import json
import urllib.request
from typing import Any

from tests.simulator.support import basic


class Agent:
    def __init__(self, base_url: str, name: str) -> None:
        self.base_url = base_url
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        request = urllib.request.Request(  # noqa: S310 (loopback simulator)
            f"{base_url}/api/v2/me", headers={"Authorization": basic(name)}
        )
        with self.opener.open(request, timeout=10) as response:
            self.csrf = response.headers.get("X-CSRF-TOKEN", "")

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(  # noqa: S310 (loopback simulator)
            f"{self.base_url}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "X-CSRF-TOKEN": self.csrf},
            method="POST",
        )
        with self.opener.open(request, timeout=10) as response:
            answer: dict[str, Any] = json.load(response)
        return answer
