// Reference peer for benches/density.sh: a WebSocket server written the way ws users write
// one, with the heartbeat from the ws README ("How to detect and close broken connections"):
// every INTERVAL each client whose last ping went unanswered is terminated, the others are
// marked not-alive and pinged; a pong marks them alive again. A silent client is therefore
// dropped between one and two intervals after its last pong, like rollcall's
// `--heartbeat-timeout` of about twice the interval.
//
// It keeps no presence state: it only holds connections, so it is a lower bound for a server
// that does rollcall's job. For benches/fanout.sh it also broadcasts: `POST /publish` with
// rollcall's body `{"channel":C,"data":ANY}` sends `{"type":"message","channel":C,
// "from":null,"data":ANY}` to every client, serialized once (the ws README's broadcast).
//
// Usage: node server.js [PORT] [INTERVAL]     (or env PORT, INTERVAL)
//   PORT      0 (the default) picks a free port
//   INTERVAL  `2s`, `500ms` or seconds [default: 2s]
// Prints `listening on 127.0.0.1:PORT` once bound; any path and query are accepted.
'use strict';

const http = require('http');
const { WebSocketServer, WebSocket } = require('ws');

function parseInterval(text) {
  const match = /^(\d+(?:\.\d+)?)(ms|s)?$/.exec(String(text).trim());
  if (!match) {
    console.error(`invalid interval ${JSON.stringify(text)}: use 2s, 500ms or seconds`);
    process.exit(2);
  }
  const value = Number(match[1]);
  return match[2] === 'ms' ? value : value * 1000;
}

const port = Number(process.argv[2] ?? process.env.PORT ?? 0);
const intervalMs = parseInterval(process.argv[3] ?? process.env.INTERVAL ?? '2s');

function heartbeat() {
  this.isAlive = true;
}

const server = http.createServer((request, response) => {
  if (request.method !== 'POST' || request.url !== '/publish') {
    response.writeHead(426).end('this endpoint speaks WebSocket');
    return;
  }
  const chunks = [];
  request.on('data', (chunk) => chunks.push(chunk));
  request.on('end', () => {
    const body = JSON.parse(Buffer.concat(chunks).toString());
    const text = JSON.stringify({ type: 'message', channel: body.channel, from: null, data: body.data });
    let delivered = 0;
    wss.clients.forEach((client) => {
      if (client.readyState === WebSocket.OPEN) {
        client.send(text);
        delivered += 1;
      }
    });
    response.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ delivered }));
  });
});
const wss = new WebSocketServer({ server });

wss.on('connection', function connection(ws) {
  ws.isAlive = true;
  ws.on('error', console.error);
  ws.on('pong', heartbeat);
});

const interval = setInterval(function ping() {
  wss.clients.forEach(function each(ws) {
    if (ws.isAlive === false) return ws.terminate();

    ws.isAlive = false;
    ws.ping();
  });
}, intervalMs);

wss.on('close', function close() {
  clearInterval(interval);
});

server.on('listening', () => {
  console.log(`listening on 127.0.0.1:${server.address().port}`);
});
server.listen(port, '127.0.0.1');

server.on('error', (error) => {
  console.error(`cannot listen: ${error.message}`);
  process.exit(1);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => process.exit(0));
}
