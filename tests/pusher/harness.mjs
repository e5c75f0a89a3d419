// Shared by the Pusher compatibility scenarios (driven by tests/pusher.rs): starts and stops
// the rollcall binary, bounds every wait, and reports failures the same way.
//
// A scenario calls `run(name, async (h) => { ... })`: `h.start(flags)` starts a server (on a
// given port, to restart one where its clients reconnect), `h.until(what, fn)` polls a
// condition (bounded), `h.step(what, promise)` names a step for the failure message. Exit
// status 0 on success; on failure "<name> FAILED: <step>: <reason>" on stderr and status 1.

import { spawn } from "node:child_process";

export const STEP_MS = 8000;
const WATCHDOG_MS = 90000;

export const APP_ID = "4321";
export const KEY = "rollcall-key";
export const SECRET = "rollcall-secret";

const log = (text) => console.log(`[+${Math.round(performance.now())}ms] ${text}`);

class Harness {
  constructor(bin) {
    this.bin = bin;
    this.servers = [];
    this.log = log;
  }

  /** Starts the server with the test app and `flags`; resolves once it listens. */
  start(flags = [], port = 0) {
    const args = ["--listen", `127.0.0.1:${port}`, "--pusher-app", `${APP_ID}:${KEY}:${SECRET}`, ...flags];
    const child = spawn(this.bin, args, { env: { ...process.env, RUST_LOG: "info" }, stdio: ["ignore", "ignore", "pipe"] });
    const server = { child, lines: [], exited: null };
    this.servers.push(server);
    child.on("exit", (code, signal) => { server.exited = { code, signal }; });
    return this.step(`start the server ${args.join(" ")}`, new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no 'listening on' line")), STEP_MS);
      let buffered = "";
      child.stderr.on("data", (chunk) => {
        buffered += chunk;
        const lines = buffered.split("\n");
        buffered = lines.pop();
        for (const line of lines) {
          server.lines.push(line);
          const found = /listening on (\S+)/.exec(line);
          if (found) {
            clearTimeout(timer);
            const address = found[1].replace(/^ws:\/\//, "").replace(/\/$/, "");
            server.port = Number(address.split(":").pop());
            resolve(server);
          }
        }
      });
      child.on("exit", () => { clearTimeout(timer); reject(new Error(`exited: ${server.lines.join("\n")}`)); });
    }));
  }

  /** Sends SIGTERM and waits for the server to exit. */
  async stop(server) {
    server.child.kill("SIGTERM");
    await this.until("the server exits after SIGTERM", () => server.exited !== null, STEP_MS);
  }

  async step(what, promise) {
    try {
      return await promise;
    } catch (e) {
      throw new Error(`${what}: ${e && e.message ? e.message : e}`);
    }
  }

  /** Polls `fn` every 20 ms until it is truthy, at most `ms`. */
  async until(what, fn, ms = STEP_MS) {
    const deadline = Date.now() + ms;
    for (;;) {
      let value;
      try { value = await fn(); } catch (_) { value = false; }
      if (value) return value;
      if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /** Waits `ms` and checks that `fn` stayed falsy all along (for "nothing arrives"). */
  async never(what, fn, ms = 300) {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      if (await fn()) throw new Error(`${what}: it happened`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  stopAll() {
    for (const server of this.servers) {
      if (server.exited === null) server.child.kill("SIGKILL");
    }
  }

  serverLog() {
    return this.servers.map((s) => s.lines.join("\n")).join("\n---\n");
  }
}

export function assert(condition, message) {
  if (!condition) throw new Error(message);
}

export function assertEqual(actual, expected, what) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${what}: expected ${e}, got ${a}`);
}

export async function run(name, scenario) {
  const bin = process.argv[2];
  if (!bin) {
    console.error(`usage: node ${name}.mjs PATH_TO_ROLLCALL`);
    process.exit(2);
  }
  const watchdog = setTimeout(() => {
    console.error(`${name} FAILED: not finished within ${WATCHDOG_MS} ms`);
    process.exit(1);
  }, WATCHDOG_MS);
  const h = new Harness(bin);
  let failed = false;
  try {
    await scenario(h);
    log(`${name}: every step passed`);
  } catch (e) {
    failed = true;
    console.error(`${name} FAILED: ${e && e.message ? e.message : e}`);
    console.error(`server log:\n${h.serverLog()}`);
  } finally {
    h.stopAll();
    clearTimeout(watchdog);
  }
  process.exit(failed ? 1 : 0);
}
