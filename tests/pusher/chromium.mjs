// pusher-js 8 (its browser build, pusher.min.js, unmodified) in headless Chromium against
// rollcall's Pusher mode (driven by tests/pusher.rs; needs tests/browser's playwright-core
// and Debian's Chromium, as the dashboard test does):
//
//   node tests/pusher/chromium.mjs PATH_TO_ROLLCALL
//
// The page connects and joins a presence channel (signed by the `pusher` SDK in Node, as an
// app's /broadcasting/auth would); a Node pusher-js client joins too. Checked: the browser's
// snapshot holds itself, it hears the Node client arrive, receives a REST event and a client
// event (with its metadata.user_id), its own client event reaches Node, and a forged
// signature is refused with pusher:subscription_error.

import { readFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "../browser/node_modules/playwright-core/index.mjs";
import Pusher from "pusher-js";
import PusherServer from "pusher";
import { run, assertEqual, APP_ID, KEY, SECRET, STEP_MS } from "./harness.mjs";

const CHROMIUM = process.env.ROLLCALL_CHROMIUM || "/usr/bin/chromium";
const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
  "--no-first-run", "--disable-component-update", "--disable-sync"];

run("chromium", async (h) => {
  const server = await h.start();
  const port = server.port;
  const backend = new PusherServer({ appId: APP_ID, key: KEY, secret: SECRET, host: "127.0.0.1", port: String(port), useTLS: false });
  const profile = mkdtempSync(join(tmpdir(), "rollcall-pusher-chromium-"));
  const context = await h.step("launch Chromium", chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, args: ARGS, headless: true, timeout: 20000,
  }));
  try {
    const page = context.pages()[0] ?? await context.newPage();
    const problems = [];
    page.on("pageerror", (e) => problems.push(e.message));
    // The app's backend, reached from the page as its fetch("/broadcasting/auth") would be.
    await page.exposeFunction("authorize", (socketId, channel, forge) => {
      const presence = { user_id: "web", user_info: { name: "Browser" } };
      const signed = backend.authorizeChannel(socketId, channel, channel.startsWith("presence-") ? presence : undefined);
      if (forge) signed.auth = `${KEY}:${"0".repeat(64)}`;
      return signed;
    });
    await page.setContent("<!doctype html><title>pusher-js in Chromium</title>");
    await page.addScriptTag({ content: readFileSync(new URL("./node_modules/pusher-js/dist/web/pusher.min.js", import.meta.url), "utf8") });
    await page.evaluate(({ key, port }) => {
      window.seen = { added: [], news: [], typing: [], refused: null };
      const pusher = new window.Pusher(key, {
        wsHost: "127.0.0.1", wsPort: port, forceTLS: false, enabledTransports: ["ws"], cluster: "mt1",
        channelAuthorization: {
          customHandler: ({ socketId, channelName }, callback) =>
            window.authorize(socketId, channelName, channelName === "private-forged").then((signed) => callback(null, signed)),
        },
      });
      window.pusher = pusher;
      window.room = pusher.subscribe("presence-room");
      window.room.bind("pusher:member_added", (member) => window.seen.added.push(member.id));
      window.room.bind("news", (data) => window.seen.news.push(data));
      window.room.bind("client-typing", (data, metadata) => window.seen.typing.push([data, metadata.user_id]));
      pusher.subscribe("private-forged").bind("pusher:subscription_error", (status) => { window.seen.refused = status; });
    }, { key: KEY, port });
    await h.step("the page subscribed", page.waitForFunction(() => window.room.subscribed, null, { timeout: STEP_MS }));
    assertEqual(await page.evaluate(() => window.room.members.me && window.room.members.me.id), "web", "members.me in Chromium");

    const node = new Pusher(KEY, {
      wsHost: "127.0.0.1", wsPort: port, forceTLS: false, enabledTransports: ["ws"], cluster: "mt1",
      channelAuthorization: {
        customHandler: ({ socketId, channelName }, callback) =>
          callback(null, backend.authorizeChannel(socketId, channelName, { user_id: "node", user_info: {} })),
      },
    });
    const nodeRoom = node.subscribe("presence-room");
    const heard = [];
    nodeRoom.bind("client-typing", (data, metadata) => heard.push([data, metadata.user_id]));
    await h.until("the Node client subscribed", () => nodeRoom.subscribed);
    await h.step("the page hears node arrive", page.waitForFunction(() => window.seen.added.includes("node"), null, { timeout: STEP_MS }));

    await h.step("trigger", backend.trigger("presence-room", "news", { n: 1 }));
    nodeRoom.trigger("client-typing", { from: "node" });
    await h.step("the page gets the REST event and the client event", page.waitForFunction(
      () => window.seen.news.length === 1 && window.seen.typing.length === 1, null, { timeout: STEP_MS }));
    assertEqual(await page.evaluate(() => window.seen), {
      added: ["node"], news: [{ n: 1 }], typing: [[{ from: "node" }, "node"]],
      refused: await page.evaluate(() => window.seen.refused),
    }, "what the page saw");
    await page.evaluate(() => window.room.trigger("client-typing", { from: "web" }));
    await h.until("Node hears the page's client event", () => heard.length === 1);
    assertEqual(heard[0], [{ from: "web" }, "web"], "the page's client event");
    await h.step("the forged signature is refused in Chromium", page.waitForFunction(
      () => window.seen.refused && window.seen.refused.status === 401, null, { timeout: STEP_MS }));
    if (problems.length) throw new Error(`page errors: ${problems.join("; ")}`);
    node.disconnect();
  } finally {
    await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  }
});
