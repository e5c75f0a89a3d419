// Reference peer for benches/density.sh: Bun.serve's WebSocket server (uWebSockets
// underneath), with the same heartbeat as the node-ws peer (the ws README's "How to detect
// and close broken connections"): every INTERVAL each client whose last ping went unanswered
// is terminated, the others are marked not-alive and pinged; a pong marks them alive again.
// Bun's own idle timeout and automatic pings are off, so that only this heartbeat applies.
//
// It keeps no presence state: it only holds connections, so it is a lower bound for a server
// that does rollcall's job. For benches/fanout.sh it also broadcasts: every connection
// subscribes to Bun's topic `fanout`, and `POST /publish` with rollcall's body
// `{"channel":C,"data":ANY}` sends `{"type":"message","channel":C,"from":null,"data":ANY}`
// to all of them through `server.publish` (uWebSockets' pub/sub, encoded once).
//
// Usage: bun server.js [PORT] [INTERVAL]     (or env PORT, INTERVAL)
//   PORT      0 (the default) picks a free port
//   INTERVAL  `2s`, `500ms` or seconds [default: 2s]
// Prints `listening on 127.0.0.1:PORT` once bound; any path and query are accepted.

function parseInterval(text) {
  const match = /^(\d+(?:\.\d+)?)(ms|s)?$/.exec(String(text).trim());
  if (!match) {
    console.error(`invalid interval ${JSON.stringify(text)}: use 2s, 500ms or seconds`);
    process.exit(2);
  }
  const value = Number(match[1]);
  return match[2] === "ms" ? value : value * 1000;
}

const port = Number(process.argv[2] ?? process.env.PORT ?? 0);
const intervalMs = parseInterval(process.argv[3] ?? process.env.INTERVAL ?? "2s");
const clients = new Set();

const server = Bun.serve({
  hostname: "127.0.0.1",
  port,
  async fetch(request, server) {
    if (request.method === "POST" && new URL(request.url).pathname === "/publish") {
      const body = await request.json();
      const text = JSON.stringify({ type: "message", channel: body.channel, from: null, data: body.data });
      const delivered = server.publish("fanout", text);
      return Response.json({ delivered });
    }
    if (server.upgrade(request, { data: { alive: true } })) return undefined;
    return new Response("this endpoint speaks WebSocket", { status: 426 });
  },
  websocket: {
    idleTimeout: 0,
    sendPings: false,
    open(ws) {
      clients.add(ws);
      ws.subscribe("fanout");
    },
    message() {},
    pong(ws) {
      ws.data.alive = true;
    },
    close(ws) {
      clients.delete(ws);
    },
  },
});

setInterval(() => {
  for (const ws of clients) {
    if (!ws.data.alive) {
      clients.delete(ws);
      ws.terminate();
      continue;
    }
    ws.data.alive = false;
    ws.ping();
  }
}, intervalMs);

console.log(`listening on 127.0.0.1:${server.port}`);

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => process.exit(0));
}
