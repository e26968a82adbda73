"""The control endpoint (`/sim/...`, JSON), for tests, demos and benchmarks.

GET  /sim/stats                          counts (sessions, queues, generated, delivered, ...)
POST /sim/expire    {"agent"?, "http"?}  expire CometD sessions of one agent or all;
                                         "http": true also invalidates the HTTP sessions
POST /sim/restart                        restart the CometD layer: every session is lost
POST /sim/stall     {"seconds": N}       hold every non-control response for N seconds
POST /sim/drop                           abort every held /meta/connect and websocket
POST /sim/malformed {"rate": R}          share of notifications sent malformed (0..1)
POST /sim/pause | /sim/resume            stop / restart the generator
POST /sim/generate  {"count": N}         generate N notifications now (while paused, too)
POST /sim/silent    {"agent", "item"?,     change one of the agent's items without notifying
                     "state" | "remove"}   anyone (state drift that only a re-read finds);
                                         "remove": true makes it vanish from the agent's list
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from auditor.simulator.lifecycle import OperationError

if TYPE_CHECKING:
    from auditor.simulator.app import Simulator


def stats(sim: Simulator) -> dict[str, Any]:
    bayeux = sim.bayeux
    return {
        "sessions": len(bayeux.sessions),
        "agents_with_sessions": len(bayeux.by_agent),
        "http_sessions": len(sim.http_sessions.by_sid),
        "queued": sum(len(s.queue) for s in bayeux.sessions.values()),
        "held_connects": sum(1 for s in bayeux.sessions.values() if s.holding),
        "websockets": len(sim.websockets),
        "emitted": sim.seq,
        "generated": sim.engine.generated,
        "delivered": sim.ground_truth.delivered,
        "undeliverable": sim.ground_truth.undeliverable,
        "malformed": sim.faults.malformed,
        "restarts": sim.restarts,
        "paused": sim.paused,
        "stall_remaining": round(sim.faults.stall_remaining(), 3),
        **bayeux.stats,
    }


def apply_fault(sim: Simulator, action: str, body: dict[str, Any]) -> dict[str, Any]:
    if action == "expire":
        agent = body.get("agent")
        if agent is not None and agent not in sim.engine.agents:
            raise OperationError(404, 3, f"Unknown agent {agent!r}")
        expired = sim.bayeux.expire(agent, "session expired (fault)")
        http = sim.http_sessions.invalidate(agent) if body.get("http") else 0
        return {"expired": expired, "http_sessions_invalidated": http}
    if action == "restart":
        sim.restarts += 1
        lost = sim.bayeux.expire(None, "CometD layer restarted (fault)")
        sim.abort_websockets()
        return {"sessions_lost": lost}
    if action == "stall":
        seconds = body.get("seconds")
        if not isinstance(seconds, int | float) or seconds < 0:
            raise OperationError(400, 1, "stall needs 'seconds', a number >= 0")
        sim.faults.stall(float(seconds))
        return {"stalled_for": seconds}
    if action == "drop":
        dropped = sim.bayeux.drop()
        sockets = sim.abort_websockets()
        return {"connects_dropped": dropped, "websockets_dropped": sockets}
    if action == "malformed":
        rate = body.get("rate")
        if not isinstance(rate, int | float) or not 0 <= rate <= 1:
            raise OperationError(400, 1, "malformed needs 'rate', a number from 0 to 1")
        sim.faults.malformed_rate = float(rate)
        return {"malformed_rate": rate}
    if action in ("pause", "resume"):
        sim.pause(action == "pause")
        return {"paused": sim.paused}
    if action == "silent":
        return silent_change(sim, body)
    if action == "generate":
        count = body.get("count")
        if not isinstance(count, int) or count < 1:
            raise OperationError(400, 1, "generate needs 'count', an integer >= 1")
        return {"generated": sim.generate(count)}
    raise OperationError(404, 2, f"Unknown control action {action!r}")


def silent_change(sim: Simulator, body: dict[str, Any]) -> dict[str, Any]:
    agent = sim.engine.agents.get(body.get("agent"))  # type: ignore[arg-type]
    if agent is None:
        raise OperationError(404, 3, f"Unknown agent {body.get('agent')!r}")
    wanted = body.get("item")
    item = agent.items.get(wanted) if wanted is not None else next(iter(agent.items.values()), None)
    if item is None:
        raise OperationError(404, 3, f"agent {agent.name} has no item {wanted or ''}".rstrip())
    if body.get("remove") is True:
        del agent.items[item.id]
        return {"item": item.id, "removed": True}
    state = body.get("state")
    if not isinstance(state, str) or not state:
        raise OperationError(400, 1, "silent needs 'state' (a string) or 'remove': true")
    item.state = state
    return {"item": item.id, "state": state}


def routes(sim: Simulator) -> list[web.RouteDef]:
    async def get_stats(request: web.Request) -> web.Response:
        return web.json_response(stats(sim))

    async def post_action(request: web.Request) -> web.Response:
        text = await request.text()
        try:
            body = json.loads(text) if text.strip() else {}
        except ValueError:
            raise OperationError(400, 1, "The request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise OperationError(400, 1, "The request body must be a JSON object")
        result = apply_fault(sim, request.match_info["action"], body)
        return web.json_response({"statusCode": 0, **result})

    return [web.get("/sim/stats", get_stats), web.post("/sim/{action}", post_action)]
