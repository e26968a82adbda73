// The official CometD JavaScript client (npm `cometd` + `cometd-nodejs-client`) against the
// GWS simulator. Driven by tests/simulator/test_conformance_js.py through stdout lines:
//   READY <handshakes>   after each successful (re)handshake + subscribe
//   MSG <json>           each message received on the subscription
//   FAIL <json>          a failed handshake or subscribe
// Usage: node conformance.mjs <baseUrl> <agent> <password> <long-polling|websocket>
import { adapt } from "cometd-nodejs-client";
import { CometD } from "cometd";
import { WebSocket } from "ws";

adapt();

const [baseUrl, agent, password, transport] = process.argv.slice(2);
const authorization = "Basic " + Buffer.from(`${agent}:${password}`).toString("base64");
// The adapter's WebSocket sends no cookies or headers on the upgrade; a browser would send the
// JSESSIONID cookie. Send the Basic credentials instead, as GWS clients do (PROTOCOL.md A13).
global.window.WebSocket = class extends WebSocket {
    constructor(url, protocols) {
        super(url, protocols, { headers: { Authorization: authorization } });
    }
};
const cometd = new CometD();
if (transport === "long-polling") {
    cometd.unregisterTransport("websocket");
}
cometd.configure({
    url: `${baseUrl}/api/v2/notifications`,
    requestHeaders: { Authorization: authorization },
    logLevel: "warn",
});

let handshakes = 0;
const out = (line) => process.stdout.write(line + "\n");

cometd.addListener("/meta/handshake", (reply) => {
    if (!reply.successful) {
        out("FAIL " + JSON.stringify(reply));
        return;
    }
    handshakes += 1;
    // Subscriptions do not survive a re-handshake on the server: subscribe again each time.
    cometd.clearSubscriptions();
    cometd.subscribe("/v2/me/*", (message) => out("MSG " + JSON.stringify(message)), (ack) => {
        if (ack.successful) {
            out(`READY ${handshakes} ${cometd.getTransport()?.type ?? "?"}`);
        } else {
            out("FAIL " + JSON.stringify(ack));
        }
    });
});

cometd.handshake();

process.on("SIGTERM", () => {
    cometd.disconnect(() => process.exit(0));
    setTimeout(() => process.exit(0), 500);
});
