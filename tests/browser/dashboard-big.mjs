// Real-browser test of the dashboard with one big channel (driven by tests/dashboard.rs,
// which fills channel `big` with 5,000 members through `rollcall-load hold` first):
//
//   node tests/browser/dashboard-big.mjs http://127.0.0.1:PORT/ CHANNEL MEMBERS SCREENSHOT.png
//
// Opens the dashboard in Debian's Chromium (through playwright-core) and checks: the channel's
// count shows MEMBERS within COUNT_MS of the navigation; the connections chart is drawn (a
// line of several points, its scale at least MEMBERS); the page has fewer than MAX_ELEMENTS
// elements; the member list is a bounded page with a filter box, and filtering for one member
// lists exactly that one; then saves a screenshot.
//
// Every wait is bounded. Exit status 0 on success; on failure a message starting with
// "dashboard-big test FAILED" on stderr and status 1.

import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const COUNT_MS = 5000;
const STEP_MS = 10000;
const WATCHDOG_MS = 60000;
const MAX_ELEMENTS = 3000;
const CHROMIUM = process.env.ROLLCALL_CHROMIUM || "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
  "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
];

const [pageUrl, channel, membersArg, screenshotPath] = process.argv.slice(2);
const members = Number(membersArg);
if (!pageUrl || !channel || !(members > 0) || !screenshotPath) {
  console.error("usage: node dashboard-big.mjs DASHBOARD_URL CHANNEL MEMBERS SCREENSHOT.png");
  process.exit(2);
}

const watchdog = setTimeout(() => {
  console.error(`dashboard-big test FAILED: not finished within ${WATCHDOG_MS} ms`);
  process.exit(1);
}, WATCHDOG_MS);

const log = (text) => console.log(`[dashboard-big.mjs +${Math.round(performance.now())}ms] ${text}`);
const profile = mkdtempSync(join(tmpdir(), "rollcall-chromium-"));
const pageProblems = [];
let context;

async function step(what, promise) {
  try {
    return await promise;
  } catch (e) {
    throw new Error(`${what}: ${e && e.message ? e.message.split("\n")[0] : e}`);
  }
}

function until(page, what, fn, arg, timeout = STEP_MS) {
  return step(what, page.waitForFunction(fn, arg, { timeout, polling: 50 }));
}

async function main() {
  context = await step("launch Chromium", chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true, timeout: 20000,
    viewport: { width: 1100, height: 760 },
  }));
  context.setDefaultTimeout(STEP_MS);
  const dash = context.pages()[0] ?? await context.newPage();
  dash.on("pageerror", (e) => pageProblems.push(`page error: ${e.message}`));
  dash.on("console", (m) => { if (m.type() === "error") pageProblems.push(`console error: ${m.text()}`); });

  const started = Date.now();
  await step(`open ${pageUrl}`, dash.goto(pageUrl, { timeout: STEP_MS }));
  const card = `[data-channel="${channel}"]`;
  await until(dash, `${channel} counts ${members} users within ${COUNT_MS} ms`, ({ card, members }) =>
    document.querySelector(`${card} [data-count="users"]`)?.textContent === String(members),
  { card, members }, COUNT_MS);
  const countMs = Date.now() - started;
  log(`${channel} shows ${members} users ${countMs} ms after the navigation`);

  await until(dash, "the connections chart drawn with several points, scaled past the members", (members) => {
    const svg = document.querySelector("#chart-online");
    const line = svg?.querySelector("polyline");
    const points = (line?.getAttribute("points") || "").trim().split(/\s+/).filter(Boolean);
    const scale = Number([...svg.querySelectorAll("text")].map((t) => t.textContent)[0]);
    return points.length >= 3 && scale >= members;
  }, members);
  await until(dash, `the sparkline of ${channel} drawn`, (card) =>
    (document.querySelector(`${card} svg.spark polyline`)?.getAttribute("points") || "").split(" ").length >= 2, card);

  const elements = await dash.evaluate(() => document.getElementsByTagName("*").length);
  if (elements >= MAX_ELEMENTS) throw new Error(`the page has ${elements} elements, ${MAX_ELEMENTS} at most`);
  const listed = await dash.locator(`${card} [data-user]`).count();
  if (listed < 1 || listed > 100) throw new Error(`${channel} lists ${listed} members: not one bounded page`);
  log(`${elements} elements in the page; ${listed} members listed`);

  const filter = dash.locator(`${card} input.filter`);
  if (!await filter.isVisible()) throw new Error("no filter box on the big channel");
  const last = await dash.evaluate(({ card }) => {
    const li = document.querySelector(`${card} [data-user]`);
    return li && li.getAttribute("data-user");
  }, { card });
  const wanted = last.replace(/-\d+$/, `-${members - 1}`);
  await step("type in the filter box", filter.fill(wanted));
  await until(dash, `only ${wanted} listed after filtering`, ({ card, wanted }) => {
    const users = [...document.querySelectorAll(`${card} [data-user]`)].map((li) => li.getAttribute("data-user"));
    return users.length === 1 && users[0] === wanted;
  }, { card, wanted });
  await step("clear the filter box", filter.fill(""));
  await until(dash, "a full page listed again", ({ card, listed }) =>
    document.querySelectorAll(`${card} [data-user]`).length === listed, { card, listed });
  log(`filtering for ${wanted} lists that member alone`);

  if (pageProblems.length) throw new Error(`the page reported problems:\n  ${pageProblems.join("\n  ")}`);
  await step("screenshot", dash.screenshot({ path: screenshotPath }));
  log(`screenshot saved to ${screenshotPath}`);
}

let failed = false;
try {
  await main();
} catch (e) {
  failed = true;
  console.error(`dashboard-big test FAILED: ${e && e.message ? e.message : e}`);
  if (pageProblems.length) console.error(`page problems:\n  ${pageProblems.join("\n  ")}`);
  try {
    const dash = context?.pages()[0];
    if (dash) await dash.screenshot({ path: screenshotPath, timeout: 2000 });
  } catch (_) { /* best effort */ }
} finally {
  try { await context?.close(); } catch (_) { /* already gone */ }
  rmSync(profile, { recursive: true, force: true });
  clearTimeout(watchdog);
}
process.exit(failed ? 1 : 0);
