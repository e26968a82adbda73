// A minimal GWS look-alike around the official CometD Node server (cometd-nodejs-server), for
// the ingestion worker's tests: REST login with Basic (401 on bad credentials, X-CSRF-TOKEN),
// GET /api/v2/me/openmedia/workitem, CometD at /api/v2/notifications with the CometD ack
// extension, per-agent delivery on /v2/me/openmedia, and a control API:
//   GET /ctl/publish?agent=A&n=N    deliver N lifecycle notifications to A's sessions
//   GET /ctl/disconnect?agent=A     end A's CometD sessions on the server side
//   GET /ctl/truth                  every notification delivered to a session: [{agent, data}]
//   GET /ctl/items?agent=A          A's current items (id -> state)
// Prints "READY <port>" once listening. Env: PORT, PASSWORD, TIMEOUT_MS, MAX_INTERVAL_MS, ACK.
import http from "node:http";
import { randomUUID } from "node:crypto";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { createCometDServer } = require("cometd-nodejs-server");
const { AcknowledgedMessagesExtension } = require("cometd-nodejs-server/ack-extension");

const PASSWORD = process.env.PASSWORD || "secret";
const CHANNEL = "/v2/me/openmedia";
const cometd = createCometDServer({
    timeout: Number(process.env.TIMEOUT_MS || 1000),
    maxInterval: Number(process.env.MAX_INTERVAL_MS || 2000),
});
if (process.env.ACK !== "0") {
    cometd.addExtension(new AcknowledgedMessagesExtension());
}
const agentOf = new Map(); // CometD session id -> agent
const items = new Map(); // agent -> Map(id -> state)
const truth = [];
let counter = 0;

function agentFrom(header) {
    if (!header || !header.startsWith("Basic ")) return null;
    const [user, password] = Buffer.from(header.slice(6), "base64").toString().split(":");
    return password === PASSWORD && /^agent\d+$/.test(user) ? user : null;
}

cometd.policy = {
    canHandshake: (session, message, callback) => {
        const agent = agentFrom(cometd.context.request.headers.authorization);
        if (agent) {
            agentOf.set(session.id, agent);
            session.addListener("removed", () => agentOf.delete(session.id));
        }
        callback(null, agent !== null);
    },
    canPublish: (session, message, channel, callback) => callback(null, false),
};

function sessionsOf(agent) {
    const channel = cometd.getServerChannel(CHANNEL);
    return channel ? channel.subscribers.filter((s) => agentOf.get(s.id) === agent) : [];
}

// Each call advances one of the agent's items: Invited -> Processing -> Completed (gone).
function nextNotification(agent) {
    const mine = items.get(agent) || new Map();
    items.set(agent, mine);
    counter += 1;
    let id = [...mine.keys()].find((k) => mine.get(k) !== "Completed");
    let state;
    if (id === undefined || mine.size < 2) {
        id = (agent.toUpperCase() + String(counter).padStart(8, "0")).slice(-16);
        state = "Invited";
    } else {
        state = mine.get(id) === "Invited" ? "Processing" : "Completed";
    }
    if (state === "Completed") mine.delete(id); else mine.set(id, state);
    return {
        messageType: "OpenmediaStateChangeMessage",
        notificationType: "StatusChange",
        referenceId: counter,
        openmedia: { id, state, mediaType: "workitem", openmediaType: "Inbound",
                     capabilities: [], userData: { seq: counter } },
    };
}

function json(response, status, body, headers = {}) {
    response.writeHead(status, { "Content-Type": "application/json", ...headers });
    response.end(JSON.stringify(body));
}

const server = http.createServer((request, response) => {
    const url = new URL(request.url, "http://localhost");
    const agentParam = url.searchParams.get("agent");
    if (url.pathname.startsWith("/api/v2/notifications")) {
        cometd.handle(request, response);
    } else if (url.pathname === "/api/v2/me") {
        const agent = agentFrom(request.headers.authorization);
        if (!agent) return json(response, 401, { statusCode: 20, statusMessage: "Unauthorized" },
                                 { "WWW-Authenticate": "Basic" });
        json(response, 200, { statusCode: 0, user: { userName: agent } },
             { "X-CSRF-HEADER": "X-CSRF-TOKEN", "X-CSRF-TOKEN": randomUUID() });
    } else if (url.pathname === "/api/v2/me/openmedia/workitem") {
        const agent = agentFrom(request.headers.authorization);
        if (!agent) return json(response, 401, { statusCode: 20 });
        const openmedia = [...(items.get(agent) || new Map())].map(([id, state]) => ({
            id, state, mediaType: "workitem", openmediaType: "Inbound", capabilities: [] }));
        json(response, 200, { statusCode: 0, openmedia });
    } else if (url.pathname === "/ctl/publish") {
        const n = Number(url.searchParams.get("n") || 1);
        let delivered = 0;
        for (let i = 0; i < n; i += 1) {
            const data = nextNotification(agentParam);
            for (const session of sessionsOf(agentParam)) {
                session.deliver(null, CHANNEL, data);
                truth.push({ agent: agentParam, data });
                delivered += 1;
            }
        }
        json(response, 200, { delivered });
    } else if (url.pathname === "/ctl/disconnect") {
        const sessions = sessionsOf(agentParam);
        sessions.forEach((s) => s.disconnect());
        json(response, 200, { disconnected: sessions.length });
    } else if (url.pathname === "/ctl/subscribers") {
        json(response, 200, { sessions: sessionsOf(agentParam).length });
    } else if (url.pathname === "/ctl/truth") {
        json(response, 200, truth);
    } else if (url.pathname === "/ctl/items") {
        json(response, 200, Object.fromEntries(items.get(agentParam) || new Map()));
    } else {
        json(response, 404, { statusCode: 2 });
    }
});
server.listen(Number(process.env.PORT || 0), "127.0.0.1", () => {
    console.log("READY " + server.address().port);
});
process.on("SIGTERM", () => process.exit(0));
