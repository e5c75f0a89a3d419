// Real-browser test of the dashboard served at `GET /` (driven by tests/dashboard.rs).
//
//   node tests/browser/dashboard.mjs http://127.0.0.1:PORT/ SCREENSHOT.png
//
// Opens the page in Debian's Chromium (through playwright-core, which downloads no browser),
// waits for it to say "connected", then connects two users from a second page of the same
// browser, exactly as a web client would (alice in `lobby`; bob in `lobby` and, alone, in
// `dev`), and checks that the dashboard shows them; closes bob's socket and checks that bob
// disappears from `lobby` while alice stays, and that `dev`, now empty, disappears;
// checks that a user-supplied meta is shown as text, not parsed as HTML; connects a user whose
// id holds quotes, a backslash, markup, an emoji and right-to-left text to `room:lobby` and
// checks that the dashboard shows that id byte for byte, as text; saves a screenshot.
//
// Every wait is bounded (STEP_MS each, WATCHDOG_MS overall). Exit status 0 on success; on
// failure a message starting with "dashboard test FAILED" on stderr and status 1.

import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const STEP_MS = 5000;
const WATCHDOG_MS = 45000;
const CHROMIUM = process.env.ROLLCALL_CHROMIUM || "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
  "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
];

const [pageUrl, screenshotPath] = process.argv.slice(2);
if (!pageUrl || !screenshotPath) {
  console.error("usage: node dashboard.mjs DASHBOARD_URL SCREENSHOT.png");
  process.exit(2);
}

// Whatever hangs, the process ends: the Rust side also kills it, later.
const watchdog = setTimeout(() => {
  console.error(`dashboard test FAILED: not finished within ${WATCHDOG_MS} ms`);
  process.exit(1);
}, WATCHDOG_MS);

const log = (text) => console.log(`[dashboard.mjs +${Math.round(performance.now())}ms] ${text}`);

const profile = mkdtempSync(join(tmpdir(), "rollcall-chromium-"));
let context;
const pageProblems = [];

async function step(what, promise) {
  try {
    return await promise;
  } catch (e) {
    throw new Error(`${what}: ${e && e.message ? e.message.split("\n")[0] : e}`);
  }
}

/** Waits (bounded, polling every 50 ms) until `fn(arg)` is truthy in the dashboard page. */
function until(page, what, fn, arg) {
  return step(what, page.waitForFunction(fn, arg, { timeout: STEP_MS, polling: 50 }));
}

async function main() {
  context = await step("launch Chromium", chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    args: CHROMIUM_ARGS,
    headless: true,
    timeout: 20000,
    viewport: { width: 1100, height: 640 },
  }));
  context.setDefaultTimeout(STEP_MS);

  const dash = context.pages()[0] ?? await context.newPage();
  dash.on("pageerror", (e) => pageProblems.push(`page error: ${e.message}`));
  dash.on("console", (m) => { if (m.type() === "error") pageProblems.push(`console error: ${m.text()}`); });

  const response = await step(`open ${pageUrl}`, dash.goto(pageUrl, { timeout: STEP_MS }));
  if (!response || response.status() !== 200) {
    throw new Error(`GET ${pageUrl} answered ${response && response.status()}, expected 200`);
  }
  const type = response.headers()["content-type"] || "";
  if (!type.startsWith("text/html")) throw new Error(`GET ${pageUrl}: Content-Type ${type}, expected text/html`);
  const heading = await dash.locator("h1").textContent();
  if (!/rollcall\s*—\s*who is tuned in/.test(heading || "")) throw new Error(`unexpected heading ${heading}`);

  await until(dash, 'wait for #status "connected"',
    () => document.querySelector("#status")?.textContent.trim() === "connected");
  log("dashboard connected");

  // The users: real browser WebSockets in a second page, so the dashboard's own page stays a
  // pure observer.
  const users = await context.newPage();
  users.on("pageerror", (e) => pageProblems.push(`users page error: ${e.message}`));
  // A page in the background gets its timers throttled to one per second: keep the dashboard
  // in front (the users' page needs no focus to run its scripts).
  await dash.bringToFront();
  const wsBase = pageUrl.replace(/^http/, "ws").replace(/\/?$/, "/");
  // bob is also alone in `dev`: when he leaves, that whole channel must go.
  await step("connect alice (lobby) and bob (lobby, dev)", users.evaluate(async ({ base, stepMs }) => {
    window.sockets = {};
    const open = (user, channels) => new Promise((resolve, reject) => {
      const query = channels.map((c) => `&channel=${encodeURIComponent(c)}`).join("");
      const ws = new WebSocket(`${base}?user=${encodeURIComponent(user)}${query}`);
      const timer = setTimeout(() => reject(new Error(`${user}: no state within ${stepMs} ms`)), stepMs);
      const waiting = new Set(channels);
      ws.onmessage = (ev) => {
        const msg = JSON.parse(ev.data);
        if (msg.type === "state") waiting.delete(msg.channel);
        if (waiting.size === 0) { clearTimeout(timer); resolve(); }
      };
      ws.onclose = (ev) => { clearTimeout(timer); reject(new Error(`${user}: closed ${ev.code}`)); };
      window.sockets[user] = ws;
    });
    window.openUser = open;
    await open("alice", ["lobby"]);
    await open("bob", ["lobby", "dev"]);
  }, { base: wsBase, stepMs: STEP_MS }));
  log("alice joined lobby; bob joined lobby and dev");

  const member = (user) => dash.locator(`[data-channel="lobby"] [data-user="${user}"]`);
  await step("alice shown in lobby", member("alice").waitFor({ state: "attached" }));
  await step("bob shown in lobby", member("bob").waitFor({ state: "attached" }));
  await step("bob shown in dev", dash.locator('[data-channel="dev"] [data-user="bob"]').waitFor({ state: "attached" }));
  // Counts come from coalesced `count` messages (at most one per second) or from the events.
  await until(dash, "lobby counts 2 users",
    () => document.querySelector('[data-channel="lobby"] [data-count="users"]')?.textContent === "2");
  log("dashboard shows alice and bob");
  // alice created lobby and bob dev while the page watched: their joins are logged, though a
  // new channel reaches a watcher of every channel as a `state` (docs/protocol.md §12).
  for (const line of ["alice joined lobby", "bob joined lobby", "bob joined dev"]) {
    await until(dash, `"${line}" in the event log`,
      (text) => (document.querySelector("#log")?.textContent || "").includes(text), line);
  }

  // A meta that looks like markup must stay text.
  const evil = '<img id="xss" src="x" onerror="window.pwned=1">';
  // A user id with every hazard a name may hold now (docs/protocol.md §1).
  const hazard = 'q"\\ <b id="xssu">x</b> 🦀 \u202eمرحبا\u202c';
  await step("connect the hazardous user to room:lobby", users.evaluate(
    ({ user }) => window.openUser(user, ["room:lobby"]), { user: hazard }));
  await until(dash, "the hazardous user id shown as text in room:lobby", (user) =>
    [...document.querySelectorAll('[data-channel="room:lobby"] [data-user]')]
      .some((li) => li.getAttribute("data-user") === user && li.textContent.includes(user)), hazard);
  if (await dash.evaluate(() => document.getElementById("xssu") !== null)) {
    throw new Error("a user id was parsed as HTML");
  }
  log("the hazardous user id is shown byte for byte, as text");

  await step("alice updates her meta", users.evaluate((note) => {
    window.sockets.alice.send(JSON.stringify({ type: "update", channel: "lobby", meta: { note } }));
  }, evil));
  await until(dash, "alice's meta shown as text", (note) => {
    const meta = document.querySelector('[data-channel="lobby"] [data-user="alice"] .member-meta');
    try { return JSON.parse(meta?.textContent).note === note; } catch (_) { return false; }
  }, evil);
  const injected = await dash.evaluate(() => document.getElementById("xss") !== null || window.pwned === 1);
  if (injected) throw new Error("user-supplied meta was parsed as HTML");

  await step("close bob's socket", users.evaluate((stepMs) => new Promise((resolve, reject) => {
    const ws = window.sockets.bob;
    const timer = setTimeout(() => reject(new Error(`bob's close not finished within ${stepMs} ms`)), stepMs);
    ws.onclose = () => { clearTimeout(timer); resolve(); };
    ws.close(1000, "bye");
  }), STEP_MS));
  log("bob closed");

  await step("bob removed from lobby", member("bob").waitFor({ state: "detached" }));
  await step("channel dev (bob was its only member) removed", dash.locator('[data-channel="dev"]').waitFor({ state: "detached" }));
  if (await member("alice").count() !== 1) throw new Error("alice vanished from lobby when bob left");
  await until(dash, "lobby counts 1 user",
    () => document.querySelector('[data-channel="lobby"] [data-count="users"]')?.textContent === "1");
  await until(dash, "bob's leave in the event log",
    () => /bob left lobby/.test(document.querySelector("#log")?.textContent || ""));
  if ((await dash.locator("#status").textContent()).trim() !== "connected") {
    throw new Error("the dashboard's own connection dropped during the test");
  }
  log("bob gone, alice stays");

  if (pageProblems.length) throw new Error(`the page reported problems:\n  ${pageProblems.join("\n  ")}`);

  await dash.bringToFront();
  await step("screenshot", dash.screenshot({ path: screenshotPath, fullPage: true }));
  log(`screenshot saved to ${screenshotPath}`);
}

let failed = false;
try {
  await main();
} catch (e) {
  failed = true;
  console.error(`dashboard test FAILED: ${e && e.message ? e.message : e}`);
  if (pageProblems.length) console.error(`page problems:\n  ${pageProblems.join("\n  ")}`);
  // What the page showed, to make the failure readable without the screenshot.
  try {
    const dash = context?.pages()[0];
    if (dash) {
      console.error(`page text:\n${(await dash.locator("body").innerText({ timeout: 1000 })).slice(0, 3000)}`);
      await dash.screenshot({ path: screenshotPath, fullPage: true, timeout: 2000 });
      console.error(`(screenshot of the failure saved to ${screenshotPath})`);
    }
  } catch (_) { /* best effort */ }
} finally {
  try { await context?.close(); } catch (_) { /* already gone */ }
  rmSync(profile, { recursive: true, force: true });
  clearTimeout(watchdog);
}
process.exit(failed ? 1 : 0);
