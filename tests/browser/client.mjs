// Real-browser test of rollcall.js, the client served at GET /rollcall.js (driven by
// tests/client_js.rs):
//
//   node tests/browser/client.mjs PATH/TO/rollcall
//
// Starts its own servers (it must kill one with SIGKILL and start it again on the same port),
// opens two pages of Debian's Chromium (through playwright-core) at an app page this script
// serves on its own loopback port, which import the client from the rollcall server's
// http://127.0.0.1:PORT/rollcall.js, another origin, as an app's page would. Then:
//  1. alice (page A) and bob (page B) connect to `lobby`: each sees both;
//  2. the server is killed (-9) and started again on the same port: both pages report
//     `reconnecting`, then `open`, and their member maps hold both again, without a reload;
//  3. a seq gap: page A drops carol's `join` (a test WebSocket that loses chosen messages);
//     bob's next update is past the gap, alice's client asks `who` and carol appears;
//  4. a token refresh: on a server with --token-secret, alice's token lives 3 s; getToken()
//     mints new ones, the connection stays open past the first `exp` (bob sees no leave).
//
// Every wait is bounded (STEP_MS each, WATCHDOG_MS overall). Exit status 0 on success; on
// failure a message starting with "client test FAILED" on stderr and status 1.

import { chromium } from "playwright-core";
import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { createServer } from "node:http";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

const STEP_MS = 10000;
const WATCHDOG_MS = 75000;
const CHROMIUM = process.env.ROLLCALL_CHROMIUM || "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
  "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
];
const SECRET = "client-test-secret";

const [bin] = process.argv.slice(2);
if (!bin) {
  console.error("usage: node client.mjs PATH/TO/rollcall");
  process.exit(2);
}

const watchdog = setTimeout(() => {
  console.error(`client test FAILED: not finished within ${WATCHDOG_MS} ms`);
  cleanup().finally(() => process.exit(1));
}, WATCHDOG_MS);

const log = (text) => console.log(`[client.mjs +${Math.round(performance.now())}ms] ${text}`);
const servers = new Set();
const pageProblems = [];
const profile = mkdtempSync(join(tmpdir(), "rollcall-chromium-"));
let context, app;

async function step(what, promise) {
  try {
    return await promise;
  } catch (e) {
    throw new Error(`${what}: ${e && e.message ? e.message.split("\n")[0] : e}`);
  }
}

/** Starts `rollcall --listen ADDR FLAGS...`; resolves with {child, port} at its `listening on`. */
function startServer(listen, flags = []) {
  const child = spawn(bin, ["--listen", listen, ...flags], {
    stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, RUST_LOG: "info" },
  });
  servers.add(child);
  child.lines = [];
  return step(`start rollcall ${listen} ${flags.join(" ")}`, new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "listening on" within ${STEP_MS} ms:\n${child.lines.join("\n")}`)), STEP_MS);
    createInterface({ input: child.stderr }).on("line", (line) => {
      child.lines.push(line);
      const m = /listening on \S*:(\d+)/.exec(line);
      if (m) { clearTimeout(timer); resolve({ child, port: Number(m[1]) }); }
    });
    child.on("exit", (code, signal) => { clearTimeout(timer); reject(new Error(`exited (${code ?? signal}):\n${child.lines.join("\n")}`)); });
  }));
}

/** SIGKILL, then waits for the process to be gone (its port is free again). */
function kill9(child) {
  return step("kill -9 the server", new Promise((resolve) => {
    child.removeAllListeners("exit");
    child.on("exit", () => { servers.delete(child); resolve(); });
    child.kill("SIGKILL");
  }));
}

/** An HS256 JWT (docs/protocol.md §14), as an app's backend would mint it. */
function mint(sub, ttlSeconds) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub, exp: Math.floor(Date.now() / 1000) + ttlSeconds })}`;
  return `${body}.${createHmac("sha256", SECRET).update(body).digest("base64url")}`;
}

/** The test page: imports the client from the server (another origin) and keeps a log. */
function appPage(port) {
  return `<!doctype html><meta charset="utf-8"><title>rollcall.js test</title>
<script type="module">
import { connect } from "http://127.0.0.1:${port}/rollcall.js";
// A WebSocket that drops the next incoming message for which window.drop(msg) is true.
class Lossy extends WebSocket {
  set onmessage(fn) {
    super.onmessage = fn && ((ev) => {
      const msg = JSON.parse(ev.data);
      if (window.drop && window.drop(msg)) { window.drop = null; window.dropped.push(msg); return; }
      fn(ev);
    });
  }
  get onmessage() { return super.onmessage; }
  send(text) { window.sent.push(JSON.parse(text)); super.send(text); }
}
window.dropped = []; window.sent = []; window.statuses = []; window.leaves = [];
window.start = (url, options) => {
  const client = connect(url, { ...options, WebSocket: Lossy });
  client.on("status", (s) => window.statuses.push(s));
  window.client = client;
  for (const name of options.channels || []) {
    client.channel(name).on("leave", (user, reason) => window.leaves.push(user + " " + reason));
  }
  return client.status;
};
window.members = (name) => [...(window.client?.channels().get(name)?.members().keys() || [])].sort().join(",");
window.ready = true;
</script>`;
}

async function openPage(appPort, name) {
  const page = await context.newPage();
  page.on("pageerror", (e) => pageProblems.push(`${name}: page error: ${e.message}`));
  // Failed connection attempts while the server is down are expected (and logged by Chromium).
  page.on("console", (m) => {
    if (m.type() === "error" && !/WebSocket connection to .* failed/.test(m.text())) {
      pageProblems.push(`${name}: console error: ${m.text()}`);
    }
  });
  await step(`${name}: open the app page`, page.goto(`http://127.0.0.1:${appPort}/app`));
  await step(`${name}: rollcall.js imported`, page.waitForFunction(() => window.ready === true, null, { timeout: STEP_MS }));
  return page;
}

function until(page, what, fn, arg) {
  return step(what, page.waitForFunction(fn, arg, { timeout: STEP_MS, polling: 50 }));
}

async function main() {
  context = await step("launch Chromium", chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true, timeout: 20000,
  }));
  context.setDefaultTimeout(STEP_MS);
  let { child: server, port } = await startServer("127.0.0.1:0", ["--leave-grace", "0s"]);
  // The app's own page, from its own loopback server: another origin than the module's.
  app = createServer((req, res) => {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end(appPage(port));
  });
  const appPort = await step("start the app's page server", new Promise((resolve) => {
    app.listen(0, "127.0.0.1", () => resolve(app.address().port));
  }));
  const ws = `ws://127.0.0.1:${port}/`;

  // 1. Two pages, alice and bob: each sees both.
  const a = await openPage(appPort, "alice");
  const b = await openPage(appPort, "bob");
  await a.evaluate(({ url }) => window.start(url, { user: "alice", channels: ["lobby"] }), { url: ws });
  await b.evaluate(({ url }) => window.start(url, { user: "bob", channels: ["lobby"] }), { url: ws });
  for (const [page, name] of [[a, "alice"], [b, "bob"]]) {
    await until(page, `${name} sees alice and bob`, () => window.members("lobby") === "alice,bob");
    await page.evaluate(() => { window.notReloaded = true; });
  }
  log("alice and bob see each other");

  // 2. kill -9, restart on the same port: reconnecting, then open, maps reconverge.
  await kill9(server);
  for (const [page, name] of [[a, "alice"], [b, "bob"]]) {
    await until(page, `${name} reports reconnecting`, () => window.client.status === "reconnecting");
  }
  log("both pages report reconnecting");
  ({ child: server } = await startServer(`127.0.0.1:${port}`, ["--leave-grace", "0s"]));
  for (const [page, name] of [[a, "alice"], [b, "bob"]]) {
    await until(page, `${name} reports open again`, () => window.client.status === "open");
    await until(page, `${name}'s map holds alice and bob again`, () => window.members("lobby") === "alice,bob");
    const statuses = await page.evaluate(() => window.statuses.join(" "));
    if (!/^open( reconnecting)+ open$/.test(statuses)) throw new Error(`${name}: statuses ${statuses}`);
    if (!await page.evaluate(() => window.notReloaded === true)) throw new Error(`${name}: the page was reloaded`);
  }
  log("after the restart both are open and see both, without a reload");

  // 3. A seq gap in alice's page: carol's join is lost, bob's next update reveals the gap.
  await a.evaluate(() => { window.drop = (m) => m.type === "join" && m.user === "carol"; });
  await b.evaluate(({ url }) => {
    return import(`http://127.0.0.1:${new URL(url).port}/rollcall.js`).then(({ connect }) => {
      window.carol = connect(url, { user: "carol", channels: ["lobby"] });
    });
  }, { url: ws });
  await until(a, "carol's join dropped in alice's page", () => window.dropped.length === 1);
  await b.evaluate(() => window.client.channel("lobby").update({ mood: "curious" }));
  await until(a, "alice's client asks who", () => window.sent.some((c) => c.type === "who" && c.channel === "lobby"));
  await until(a, "carol in alice's map after the who", () => window.members("lobby") === "alice,bob,carol");
  await until(a, "bob's new meta in alice's map", () =>
    window.client.channel("lobby").members().get("bob")?.meta.mood === "curious");
  log("the seq gap was healed by who");
  await b.evaluate(() => window.carol.close());

  // 4. Token refresh: a 3 s token outlived without a reconnect.
  await kill9(server);
  const secured = await startServer("127.0.0.1:0", ["--token-secret", SECRET, "--token-leeway", "0s"]);
  const tws = `ws://127.0.0.1:${secured.port}/`;
  let minted = 0;
  await a.exposeFunction("mintToken", () => { minted++; return mint("alice", 3); });
  await b.evaluate(({ url, token }) => { window.client.close(); window.leaves.length = 0; window.start(url, { token, channels: ["room"] }); },
    { url: tws, token: mint("bob", 300) });
  await until(b, "bob open on the secured server", () => window.client.status === "open");
  const firstExp = await a.evaluate(async ({ url, token }) => {
    window.client.close();
    window.statuses.length = 0;
    window.start(url, { token, getToken: () => window.mintToken(), channels: ["room"] });
    return JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/"))).exp;
  }, { url: tws, token: mint("alice", 3) });
  await until(a, "alice open with a 3 s token", () => window.client.status === "open");
  await until(b, "bob sees alice", () => window.members("room") === "alice,bob");
  // Well past the first exp (leeway 0): the server would have closed with 4001 by now.
  const pastExp = (firstExp + 2) * 1000 - Date.now();
  await step("wait past the first exp", new Promise((resolve) => setTimeout(resolve, Math.max(0, pastExp))));
  const statuses = await a.evaluate(() => window.statuses.join(" "));
  if (statuses !== "open") throw new Error(`alice's statuses past exp: ${statuses} (expected only open)`);
  if (minted < 1) throw new Error("getToken() was never called");
  const leaves = await b.evaluate(() => window.leaves.join(", "));
  if (leaves) throw new Error(`bob saw leaves: ${leaves}`);
  if (await b.evaluate(() => window.members("room")) !== "alice,bob") throw new Error("alice is not in bob's map past her exp");
  log(`alice's connection outlived its first exp (${minted} tokens minted)`);

  if (pageProblems.length) throw new Error(`the pages reported problems:\n  ${pageProblems.join("\n  ")}`);
}

async function cleanup() {
  try { await context?.close(); } catch (_) { /* already gone */ }
  for (const child of servers) child.kill("SIGKILL");
  app?.close();
  rmSync(profile, { recursive: true, force: true });
}

let failed = false;
try {
  await main();
} catch (e) {
  failed = true;
  console.error(`client test FAILED: ${e && e.message ? e.message : e}`);
  if (pageProblems.length) console.error(`page problems:\n  ${pageProblems.join("\n  ")}`);
} finally {
  await cleanup();
  clearTimeout(watchdog);
}
process.exit(failed ? 1 : 0);
