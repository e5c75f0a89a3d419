// A webhook receiver for tests/webhooks.rs: an app's backend as Pusher's docs write it, with
// the unmodified `pusher` server SDK validating every request (`webhook(...).isValid()`,
// which also checks `Content-Type: application/json` exactly).
//
// Usage: node webhook_receiver.mjs APP_ID KEY SECRET NATIVE_KEY NATIVE_SECRET FAIL_FIRST
// Listens on 127.0.0.1, port 0, and prints, one line each, flushed as they happen:
//   LISTENING <port>
//   REJECTED <n>         the n-th request was answered 500 on purpose (one of the first FAIL_FIRST)
//   INVALID <reason>     a request the SDK refused (answered 401)
//   EVENT <key> <json>   each event of a valid request, in the order of the body (answered 200)
// It runs until killed (the test kills it).

import http from "node:http";
import Pusher from "pusher";

const [appId, key, secret, nativeKey, nativeSecret, failFirst] = process.argv.slice(2);
const pusher = new Pusher({ appId, key, secret });
const failures = Number(failFirst ?? 0);
let requests = 0;

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", () => {
    requests += 1;
    if (requests <= failures) {
      console.log(`REJECTED ${requests}`);
      res.writeHead(500).end("not yet");
      return;
    }
    const webhook = pusher.webhook({ headers: req.headers, rawBody: Buffer.concat(chunks).toString("utf8") });
    if (req.method !== "POST" || !webhook.isValid([{ key: nativeKey, secret: nativeSecret }])) {
      console.log(`INVALID ${req.method} ${req.headers["content-type"]} ${req.headers["x-pusher-key"]}`);
      res.writeHead(401).end("invalid");
      return;
    }
    const time = webhook.getTime();
    if (!(time instanceof Date) || Number.isNaN(time.getTime())) {
      console.log("INVALID time_ms");
    }
    for (const event of webhook.getEvents()) {
      console.log(`EVENT ${req.headers["x-pusher-key"]} ${JSON.stringify(event)}`);
    }
    res.writeHead(200, { "Content-Type": "application/json" }).end("{}");
  });
});

server.listen(0, "127.0.0.1", () => {
  console.log(`LISTENING ${server.address().port}`);
});
