// rollcall.js: the browser client of rollcall's wire protocol v1 (docs/protocol.md), one
// dependency-free ES module, served by the server at GET /rollcall.js. API: clients/js/README.md.
//
// Invariants:
// - One member map per channel, replaced by every `state` (the server's whole truth) and moved
//   by `join`/`leave`/`update` (and `diff`) whose seq is the next one (protocol §5); an event
//   past the next seq means missed events, healed by one `who` whose `state` replaces the map.
// - Reconnects forever (until close()) with exponential backoff and jitter; the next URL
//   names every channel held, so the server sends a fresh `state` of each (a new baseline).
// - Silence past the server's heartbeat interval gets a `ping` command; no answer within
//   timeout - interval drops the socket (a half-open TCP connection is never seen otherwise:
//   browsers cannot see WebSocket Pings, §8).
// - A token is refreshed with getToken() before its `exp`, and after a close 4001 (§14).

const MIN_MS = 500, MAX_MS = 15000;

class Emitter {
  constructor() { this.h = {}; }
  /** Adds a listener; returns a function that removes it. */
  on(event, fn) {
    (this.h[event] ||= new Set()).add(fn);
    return () => this.h[event].delete(fn);
  }
  emit(event, ...args) {
    for (const fn of this.h[event] || []) {
      // A throwing listener must not break the protocol state: report it, carry on.
      try { fn(...args); } catch (e) { setTimeout(() => { throw e; }, 0); }
    }
  }
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
const entries = (o) => Object.entries(o && typeof o == "object" ? o : {});

/** One channel: its members (user -> {conns, meta}), counts and events. */
class Channel extends Emitter {
  constructor(client, name, joined) {
    super();
    this.c = client;
    this.name = name;
    this.j = joined; // joined (rejoined on reconnect), as opposed to only watched
    this.m = new Map();
    this.seq = -1; // no baseline yet (or lost with the connection)
    this.n = [0, 0]; // users, connections
    this.meta = undefined;
  }
  /** The live member map (user id -> {conns, meta}); read it, do not change it. */
  members() { return this.m; }
  /** Present users: from the member map, or from `count` messages in mode count. */
  count() { return this.n[0]; }
  /** Replaces this user's meta in the channel (kept, and sent again after a reconnect). */
  update(meta) {
    this.meta = meta;
    return this.c.send({ type: "update", channel: this.name, meta });
  }
  /** Leaves the channel; the client stops rejoining it. */
  leave() {
    this.c.chans.delete(this.name);
    this.m.clear();
    return this.c.send({ type: "leave", channel: this.name });
  }
  /** Publishes data to the channel (servers run with --client-publish). */
  publish(data) { return this.c.send({ type: "publish", channel: this.name, data }); }

  counted(conns) {
    const n = [this.m.size, conns];
    if (!same(n, this.n)) { this.n = n; this.emit("count", n[0], n[1]); }
  }
  conns() {
    let sum = 0;
    for (const i of this.m.values()) sum += i.conns;
    return sum;
  }
  /** A `state`: the new baseline. Differences from the old map are told as events. */
  state(msg) {
    const old = new Map(this.m);
    this.m.clear();
    for (const [user, i] of entries(msg.users)) this.m.set(user, { conns: +i.conns || 0, meta: i.meta || {} });
    this.seq = +msg.seq || 0;
    this.asked = 0;
    for (const [user, i] of this.m) {
      const was = old.get(user);
      if (!was) this.emit("join", user, i.meta, msg);
      else if (!same(was.meta, i.meta)) this.emit("update", user, i.meta, msg);
    }
    for (const user of old.keys()) if (!this.m.has(user)) this.emit("leave", user, null, msg);
    this.emit("sync", this.m);
    this.counted(this.conns());
  }
  /** True when `msg` (a presence event or a diff) is the next one to apply; asks `who` on a gap. */
  next(msg, diff) {
    const seq = +msg.seq;
    if (this.seq < 0 || !(seq > this.seq)) return false;
    // A diff covers the seqs after its `from`: a `from` past ours is a gap (protocol §5).
    if (diff ? +msg.from > this.seq : seq > this.seq + 1) {
      if (!this.asked) {
        this.asked = 1;
        this.c.send({ type: "who", channel: this.name });
      }
      return false;
    }
    this.seq = seq;
    return true;
  }
  join(user, meta, msg) {
    const was = this.m.get(user);
    this.m.set(user, { conns: Math.max(1, was ? was.conns : 1), meta: meta || {} });
    this.emit("join", user, meta || {}, msg);
  }
  gone(user, reason, msg) {
    if (this.m.delete(user)) this.emit("leave", user, reason, msg);
  }
  changed(user, meta, msg) {
    const was = this.m.get(user);
    this.m.set(user, { conns: was ? was.conns : 1, meta: meta || {} });
    this.emit("update", user, meta || {}, msg);
  }
  event(msg) {
    if (typeof msg.user != "string" || !this.next(msg)) return;
    if (msg.type == "join") this.join(msg.user, msg.meta, msg);
    else if (msg.type == "leave") this.gone(msg.user, msg.reason, msg);
    else this.changed(msg.user, msg.meta, msg);
    this.counted(this.conns());
  }
  /** A coalesced diff (events=diff): leaves, then joins, then updates. */
  diff(msg) {
    if (!this.next(msg, true)) return;
    for (const [user, i] of entries(msg.leaves)) this.gone(user, i && i.reason, msg);
    for (const [user, meta] of entries(msg.joins)) this.join(user, meta, msg);
    for (const [user, meta] of entries(msg.updates)) this.changed(user, meta, msg);
    this.counted(this.conns());
  }
}

/** The `exp` of a JWT in milliseconds, or 0 when it has none that can be read. */
function expiry(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part)).exp * 1000 || 0;
  } catch (_) { return 0; }
}

class Client extends Emitter {
  constructor(url, o) {
    super();
    this.url = url;
    this.o = o;
    this.WS = o.WebSocket || globalThis.WebSocket;
    this.mode = o.events || "all";
    this.tok = o.token;
    this.chans = new Map();
    this.t = {}; // timers by name
    this.pongs = new Map();
    this.ids = 0;
    this.tries = 0;
    this.status = "";
    for (const name of o.channels || []) this.channel(name);
    this.open();
  }

  /** The channel `name`, joined at once (or at the next connection) if not held yet. */
  channel(name) {
    let ch = this.chans.get(name);
    if (!ch) {
      this.chans.set(name, ch = new Channel(this, name, 1));
      this.join(name);
    }
    return ch;
  }
  /** The channels held or watched, by name. */
  channels() { return this.chans; }

  /** Joins by command (a channel not in this socket's URL); a diff join carries a ref to fall
   * back on when the server refuses the mode. */
  join(name) {
    if (!this.live) return;
    const ev = this.sent.ev;
    this.send({ type: "join", channel: name, events: ev, ref: ev == "diff" ? { diff: name } : undefined });
  }

  /** Sends a command; false when the connection is not open (the command is dropped). */
  send(cmd) {
    if (!this.live) return false;
    this.ws.send(JSON.stringify(cmd));
    return true;
  }

  /** Sends a `ping`; resolves when its `pong` arrives (replies come in command order). */
  ping() {
    const id = ++this.ids;
    return new Promise((resolve, reject) => {
      if (!this.send({ type: "ping", id })) return reject(new Error("not connected"));
      this.pongs.set(id, resolve);
    });
  }

  /** Closes the connection for good. */
  close() {
    this.stop();
    this.say("closed");
  }

  say(status) {
    if (status != this.status) this.emit("status", this.status = status);
  }

  later(name, ms, fn) {
    clearTimeout(this.t[name]);
    this.t[name] = setTimeout(fn, ms);
  }

  /** Drops the socket and every timer; no callback of the old socket runs again. */
  stop() {
    for (const t of Object.values(this.t)) clearTimeout(t);
    const ws = this.ws;
    this.ws = this.live = this.pinged = null;
    for (const ch of this.chans.values()) ch.seq = -1;
    this.pongs.clear();
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(1000); } catch (_) { /* closing already */ }
    }
  }

  target() {
    const o = this.o, u = new URL(this.url, globalThis.location && location.href);
    u.protocol = u.protocol.replace("http", "ws");
    const q = u.searchParams, joined = [...this.chans.values()].filter((c) => c.j);
    // A server without events=diff refuses the upgrade (400): every failure before the socket
    // opens flips between diff and all, so either kind of server is reached.
    const ev = this.mode == "diff" && this.alt ? "all" : this.mode;
    if (this.tok) q.set("token", this.tok);
    else if (o.user != null) q.set("user", o.user);
    for (const c of joined) q.append("channel", c.name);
    for (const w of o.watch || []) q.append("watch", w);
    if (o.admin) q.set("admin", o.admin);
    if (ev != "all") q.set("events", ev);
    return { u: String(u), ev, names: new Set(joined.map((c) => c.name)) };
  }

  open() {
    this.say(this.tries ? "reconnecting" : "connecting");
    const sent = this.sent = this.target();
    let ws;
    try { ws = this.ws = new this.WS(sent.u); } catch (e) { return this.retry(); }
    ws.onmessage = (e) => this.recv(e.data);
    ws.onclose = (e) => this.closed(e.code);
    ws.onerror = () => {};
  }

  closed(code) {
    if (this.mode == "diff" && !this.live) this.alt = !this.alt;
    this.stop();
    this.retry(code == 4001);
  }

  /** Schedules the next attempt: exponential backoff, the delay drawn in its upper half. */
  retry(expired) {
    this.say("reconnecting");
    const cap = Math.min(MAX_MS, MIN_MS * 2 ** this.tries++);
    this.later("retry", cap / 2 + Math.random() * cap / 2, async () => {
      const exp = expiry(this.tok || "");
      if (this.o.getToken && (expired || (exp && exp - Date.now() < 5000))) {
        try { this.tok = await this.o.getToken(); } catch (_) { return this.retry(); }
      }
      if (this.status != "closed") this.open();
    });
  }

  recv(text) {
    this.rx = Date.now();
    // An answer to a liveness ping: the silence is over, the next one is counted from now.
    if (this.pinged) {
      this.pinged = 0;
      this.beat();
    }
    let m;
    try { m = JSON.parse(text); } catch (_) { return; }
    if (!m || typeof m != "object") return;
    let ch = this.chans.get(m.channel);
    switch (m.type) {
      case "welcome": return this.welcome(m);
      case "state":
        if (typeof m.channel != "string") return;
        if (!ch) {
          // The server's default channel (no channel asked), or a watched one (§12).
          this.chans.set(m.channel, ch = new Channel(this, m.channel, !this.o.watch));
          this.emit("channel", ch);
        }
        return ch.state(m);
      case "join": case "leave": case "update": return ch && ch.event(m);
      case "diff": return ch && ch.diff(m);
      case "count":
        if (ch) { ch.n = [+m.users || 0, +m.connections || 0]; ch.emit("count", ch.n[0], ch.n[1]); }
        return;
      case "message": return ch ? ch.emit("message", m.data, m.from) : this.emit("message", m.data, m.from);
      case "pong": {
        const done = this.pongs.get(m.id);
        this.pongs.delete(m.id);
        return done && done();
      }
      case "refreshed": return this.refreshAt(m.exp * 1000);
      case "error":
        // A join in mode diff that this server does not know: join in mode all instead.
        if (m.code == "bad_request" && m.ref && m.ref.diff) {
          this.sent.ev = "all";
          this.send({ type: "join", channel: m.ref.diff, events: "all" });
        }
        return this.emit("error", m);
    }
  }

  welcome(m) {
    this.live = true;
    this.tries = 0;
    this.user = m.user;
    this.hb = m.heartbeat;
    this.say("open");
    for (const ch of this.chans.values()) {
      // Channels asked for while this socket was opening, and metas set before a reconnect.
      if (ch.j && !this.sent.names.has(ch.name)) this.join(ch.name);
      if (ch.meta !== undefined) this.send({ type: "update", channel: ch.name, meta: ch.meta });
    }
    this.beat();
    this.refreshAt(expiry(this.tok || ""));
  }

  /** Liveness (§8): after interval_ms of silence a `ping`; its grace passed, a reconnect. */
  beat() {
    const hb = this.hb;
    if (!hb || !(hb.interval_ms > 0)) return;
    const now = Date.now(), every = hb.interval_ms;
    const grace = Math.max(1000, hb.timeout_ms - every);
    if (this.pinged) { // nothing arrived since (recv clears it)
      if (now - this.pinged >= grace) return this.closed(1006);
      return this.later("beat", grace - (now - this.pinged), () => this.beat());
    }
    if (now - this.rx >= every) {
      this.pinged = now;
      this.send({ type: "ping", id: null });
      return this.later("beat", grace, () => this.beat());
    }
    this.later("beat", every - (now - this.rx), () => this.beat());
  }

  /** Asks getToken() for a new token at 80% of the current one's remaining life. */
  refreshAt(exp) {
    if (!this.o.getToken || !exp) return;
    this.later("refresh", Math.max(1000, (exp - Date.now()) * 0.8), async () => {
      try {
        this.tok = await this.o.getToken();
        this.send({ type: "refresh", token: this.tok });
      } catch (_) { this.refreshAt(Date.now() + 6000); }
    });
  }
}

/**
 * Connects to a rollcall server. `url`: ws(s):// or http(s):// (relative URLs resolve against
 * the page). Options: user, token, getToken, channels, events ("all", "diff", "count",
 * "none"), watch (channel names or "*"), admin (the admin token, for watching).
 */
export function connect(url, options = {}) {
  return new Client(url, options);
}
