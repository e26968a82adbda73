"""REST side: HTTP Basic login, the JSESSIONID HTTP session, CSRF, Open Media operations."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import secrets
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from auditor.simulator.lifecycle import OperationError

if TYPE_CHECKING:
    from auditor.simulator.app import Simulator

COOKIE = "JSESSIONID"
CSRF_HEADER = "X-CSRF-HEADER"
CSRF_TOKEN = "X-CSRF-TOKEN"  # noqa: S105  (a header name)
CSRF_MESSAGE = "Missing or invalid Csrf token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "DELETE"})


@dataclass
class HttpSession:
    sid: str
    agent: str
    csrf_token: str


def json_error(http_status: int, status_code: int, message: str) -> web.Response:
    """Every error a client sees: JSON, GWS-style statusCode/statusMessage, never a trace."""
    return web.json_response(
        {"statusCode": status_code, "statusMessage": message}, status=http_status
    )


class HttpSessions:
    def __init__(self, accounts: dict[str, str]) -> None:
        self.accounts = accounts
        self.by_sid: dict[str, HttpSession] = {}

    def check_basic(self, header: str | None) -> str | None:
        """The agent named by a valid `Authorization: Basic` header, else None."""
        if not header or not header.lower().startswith("basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        expected = self.accounts.get(user)
        if expected is None or not hmac.compare_digest(expected, password):
            return None
        return user

    def create(self, agent: str) -> str:
        sid = secrets.token_hex(16).upper()
        self.by_sid[sid] = HttpSession(sid, agent, str(uuid.uuid4()))
        return sid

    def from_request(self, request: web.Request) -> HttpSession | None:
        sid = request.cookies.get(COOKIE)
        return self.by_sid.get(sid) if sid else None

    def invalidate(self, agent: str | None = None) -> int:
        gone = [s for s, h in self.by_sid.items() if agent is None or h.agent == agent]
        for sid in gone:
            del self.by_sid[sid]
        return len(gone)


def _authenticate(sim: Simulator, request: web.Request) -> tuple[HttpSession, bool]:
    """The request's HTTP session (created from Basic credentials if needed) and whether it is
    new. Basic credentials for another agent than the cookie's start a new session."""
    sessions = sim.http_sessions
    current = sessions.from_request(request)
    basic_agent = sessions.check_basic(request.headers.get("Authorization"))
    if current is not None and (basic_agent is None or basic_agent == current.agent):
        return current, False
    if basic_agent is None:
        raise _Denied()
    sid = sessions.create(basic_agent)
    return sessions.by_sid[sid], True


class _Denied(Exception):
    pass


def _denied(sim: Simulator) -> web.Response:
    response = json_error(
        sim.config.auth_failure_status, 20, "Access denied: invalid or missing credentials"
    )
    if sim.config.auth_failure_status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="GWS"'
    return response


def _finish(sim: Simulator, response: web.Response, session: HttpSession, new: bool) -> None:
    if new:
        response.set_cookie(COOKIE, session.sid, path="/", httponly=True)
    if sim.config.csrf:
        response.headers[CSRF_HEADER] = CSRF_TOKEN
        response.headers[CSRF_TOKEN] = session.csrf_token


def csrf_ok(sim: Simulator, request: web.Request) -> bool:
    if not sim.config.csrf or request.method not in UNSAFE_METHODS:
        return True
    session = sim.http_sessions.from_request(request)
    token = request.headers.get(CSRF_TOKEN)
    return (
        session is not None and token is not None and hmac.compare_digest(token, session.csrf_token)
    )


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.text() or "null")
    except (ValueError, UnicodeDecodeError):
        raise OperationError(400, 1, "The request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise OperationError(400, 1, "The request body must be a JSON object")
    return body


def _user(sim: Simulator, agent: str) -> dict[str, Any]:
    first, _, number = agent.partition("agent")
    return {
        "id": agent,
        "userName": agent,
        "firstName": "Agent",
        "lastName": number or first,
        "roles": ["ROLE_AGENT"],
        "enabled": True,
        "changePasswordOnFirstLogin": False,
        "uri": f"{sim.base_url}/api/v2/users/{agent}",
        "path": f"/users/{agent}",
    }


def routes(sim: Simulator) -> list[web.RouteDef]:
    async def version(request: web.Request) -> web.Response:
        return web.json_response({"statusCode": 0, "version": sim.config.version})

    async def me(request: web.Request) -> web.Response:
        try:
            session, new = _authenticate(sim, request)
        except _Denied:
            return _denied(sim)
        response = web.json_response({"statusCode": 0, "user": _user(sim, session.agent)})
        _finish(sim, response, session, new)
        return response

    async def me_post(request: web.Request) -> web.Response:
        try:
            session, new = _authenticate(sim, request)
        except _Denied:
            return _denied(sim)
        body = await _json_body(request)
        op = body.get("operationName")
        if op not in ("StartContactCenterSession", "EndContactCenterSession"):
            raise OperationError(400, 2, f"Unknown operationName {op!r}")
        response = web.json_response({"statusCode": 0})
        _finish(sim, response, session, new)
        return response

    async def om_list(request: web.Request) -> web.Response:
        try:
            session, new = _authenticate(sim, request)
        except _Denied:
            return _denied(sim)
        items = sim.engine.items(session.agent, request.match_info["media_type"])
        response = web.json_response({"statusCode": 0, "openmedia": items})
        _finish(sim, response, session, new)
        return response

    async def om_create(request: web.Request) -> web.Response:
        try:
            session, new = _authenticate(sim, request)
        except _Denied:
            return _denied(sim)
        body = await _json_body(request)
        ref = sim.engine.create(session.agent, request.match_info["media_type"], body)
        sim.after_operation()
        response = web.json_response({"statusCode": 0, "referenceId": ref})
        _finish(sim, response, session, new)
        return response

    async def om_operate(request: web.Request) -> web.Response:
        try:
            session, new = _authenticate(sim, request)
        except _Denied:
            return _denied(sim)
        body = await _json_body(request)
        ref = sim.engine.operate(
            session.agent, request.match_info["media_type"], request.match_info["item_id"], body
        )
        sim.after_operation()
        response = web.json_response({"statusCode": 0, "referenceId": ref})
        _finish(sim, response, session, new)
        return response

    return [
        web.get("/api/v2/diagnostics/version", version),
        web.get("/api/v2/me", me),
        web.post("/api/v2/me", me_post),
        web.get("/api/v2/me/openmedia/{media_type}", om_list),
        web.post("/api/v2/me/openmedia/{media_type}", om_create),
        web.post("/api/v2/me/openmedia/{media_type}/{item_id}", om_operate),
    ]
