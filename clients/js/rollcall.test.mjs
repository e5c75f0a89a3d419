// Unit tests of rollcall.js's state logic in Node, without a browser or a server:
//
//   node --test clients/js/
//
// A fake WebSocket records the URLs and commands and lets each test play the server; Node's
// mock timers move the clock (backoff, heartbeat, token refresh run in virtual time).
// tests/client_js.rs runs this file as part of `cargo test`.

import { test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "./rollcall.js";

/** A WebSocket the test drives: `serve(msg)` delivers a server message, `drop(code)` ends it. */
class FakeSocket {
  static all = [];
  constructor(url) {
    this.url = new URL(url);
    this.sent = [];
    this.closedWith = null;
    FakeSocket.all.push(this);
  }
  send(text) { this.sent.push(JSON.parse(text)); }
  close(code) { this.closedWith = code; }
  serve(msg) { this.onmessage?.({ data: typeof msg == "string" ? msg : JSON.stringify(msg) }); }
  drop(code = 1006) { this.onclose?.({ code }); }
  /** The commands of type `type` sent so far. */
  commands(type) { return this.sent.filter((c) => c.type == type); }
}

const HEARTBEAT = { interval_ms: 30000, timeout_ms: 60000 };
const welcome = (user = "alice", heartbeat = HEARTBEAT) => ({ type: "welcome", conn: "0.0", user, heartbeat });
const state = (channel, seq, users) => ({ type: "state", channel, seq, users });
const member = (meta = {}, conns = 1) => ({ conns, meta });

/** A client on a fresh fake server, with mocked timers and a record of what it reported. */
function setup(t, options = {}) {
  FakeSocket.all = [];
  if (!t.timersOn) t.mock.timers.enable({ apis: ["setTimeout", "Date"], now: 1_000_000 });
  t.timersOn = true;
  const client = connect("ws://rollcall.test/", { WebSocket: FakeSocket, ...options });
  const statuses = [];
  client.on("status", (s) => statuses.push(s));
  const socket = () => FakeSocket.all[FakeSocket.all.length - 1];
  return { client, statuses, socket };
}

/** Records a channel's events as short strings. */
function record(channel) {
  const seen = [];
  channel.on("join", (user, meta, msg) => seen.push(`join ${user} ${JSON.stringify(meta)} (${msg.type})`));
  channel.on("leave", (user, reason, msg) => seen.push(`leave ${user} ${reason} (${msg.type})`));
  channel.on("update", (user, meta, msg) => seen.push(`update ${user} ${JSON.stringify(meta)} (${msg.type})`));
  channel.on("sync", (members) => seen.push(`sync ${[...members.keys()].sort().join(",")}`));
  channel.on("count", (users, conns) => seen.push(`count ${users}/${conns}`));
  return seen;
}

const names = (channel) => [...channel.members().keys()].sort();
const flush = () => new Promise((resolve) => setImmediate(resolve));

test("the URL names the user, the channels and the events mode only when asked", (t) => {
  const { socket } = setup(t, { user: "Jane Doe+1", channels: ["lobby", "room:dev"] });
  const q = socket().url.searchParams;
  assert.equal(socket().url.origin + socket().url.pathname, "ws://rollcall.test/");
  assert.equal(q.get("user"), "Jane Doe+1");
  assert.deepEqual(q.getAll("channel"), ["lobby", "room:dev"]);
  assert.equal(q.get("events"), null, "events=all is the server's default: not requested");
  assert.equal(q.get("token"), null);

  const diff = connect("http://rollcall.test/ws?x=1", { WebSocket: FakeSocket, token: "a.b.c", user: "ignored", events: "diff", watch: ["*"], admin: "s3" });
  const url = FakeSocket.all.at(-1).url;
  assert.equal(url.protocol, "ws:", "http:// becomes ws://");
  assert.deepEqual([url.searchParams.get("x"), url.searchParams.get("events"), url.searchParams.get("token")], ["1", "diff", "a.b.c"]);
  assert.equal(url.searchParams.get("user"), null, "with a token the token names the user");
  assert.deepEqual([url.searchParams.get("watch"), url.searchParams.get("admin")], ["*", "s3"]);
  diff.close();
});

test("a state is the member map; events move it in seq order; counts follow", (t) => {
  const { client, statuses, socket } = setup(t, { user: "alice", channels: ["lobby"] });
  const lobby = client.channel("lobby");
  const seen = record(lobby);
  assert.deepEqual(statuses, []);
  socket().serve(welcome());
  assert.equal(client.status, "open");
  assert.equal(client.user, "alice");
  socket().serve(state("lobby", 4, { alice: member({ a: 1 }, 2), bob: member() }));
  assert.deepEqual(names(lobby), ["alice", "bob"]);
  assert.deepEqual(lobby.members().get("alice"), { conns: 2, meta: { a: 1 } });
  assert.equal(lobby.count(), 2);
  socket().serve({ type: "join", channel: "lobby", user: "carol", meta: { x: 1 }, seq: 5 });
  socket().serve({ type: "join", channel: "lobby", user: "carol", meta: { x: 1 }, seq: 5 }); // repeat: ignored
  socket().serve({ type: "update", channel: "lobby", user: "bob", meta: { away: true }, seq: 6 });
  socket().serve({ type: "leave", channel: "lobby", user: "alice", reason: "timeout", seq: 7 });
  socket().serve({ type: "leave", channel: "other", user: "bob", reason: "left", seq: 8 }); // not held
  assert.deepEqual(names(lobby), ["bob", "carol"]);
  assert.deepEqual(lobby.members().get("bob").meta, { away: true });
  assert.equal(lobby.seq, 7);
  assert.deepEqual(seen, [
    'join alice {"a":1} (state)', "join bob {} (state)", "sync alice,bob", "count 2/3",
    'join carol {"x":1} (join)', "count 3/4",
    'update bob {"away":true} (update)',
    "leave alice timeout (leave)", "count 2/2",
  ]);
  assert.equal(socket().commands("who").length, 0, "no gap, no who");
});

test("a seq gap asks who once; its state heals the map and tells the differences", (t) => {
  const { client, socket } = setup(t, { user: "alice", channels: ["lobby"] });
  const lobby = client.channel("lobby");
  socket().serve(welcome());
  socket().serve(state("lobby", 1, { alice: member() }));
  const seen = record(lobby);
  // seq 2 (bob's join) never arrives.
  socket().serve({ type: "update", channel: "lobby", user: "bob", meta: { m: 1 }, seq: 3 });
  socket().serve({ type: "join", channel: "lobby", user: "carol", meta: {}, seq: 4 });
  assert.deepEqual(socket().commands("who"), [{ type: "who", channel: "lobby" }], "one who per gap");
  assert.deepEqual(names(lobby), ["alice"], "nothing past the gap is applied");
  socket().serve(state("lobby", 4, { alice: member(), bob: member({ m: 1 }), carol: member() }));
  assert.deepEqual(names(lobby), ["alice", "bob", "carol"]);
  socket().serve({ type: "leave", channel: "lobby", user: "carol", reason: "left", seq: 5 });
  assert.deepEqual(names(lobby), ["alice", "bob"]);
  assert.deepEqual(seen, [
    'join bob {"m":1} (state)', "join carol {} (state)", "sync alice,bob,carol", "count 3/3",
    "leave carol left (leave)", "count 2/2",
  ]);
  // A later gap asks again.
  socket().serve({ type: "leave", channel: "lobby", user: "bob", reason: "left", seq: 9 });
  assert.equal(socket().commands("who").length, 2);
});

test("diff messages are applied: leaves, joins, updates, with the seq after the diff", (t) => {
  const { client, socket } = setup(t, { user: "alice", channels: ["big"], events: "diff" });
  assert.equal(socket().url.searchParams.get("events"), "diff");
  const big = client.channel("big");
  socket().serve(welcome());
  socket().serve(state("big", 10, { alice: member(), bob: member(), dan: member({ d: 0 }) }));
  const seen = record(big);
  socket().serve({
    type: "diff", channel: "big", seq: 15,
    joins: { carol: { c: 1 }, erin: {} }, leaves: { bob: { reason: "closed" } }, updates: { dan: { d: 1 } },
  });
  assert.deepEqual(names(big), ["alice", "carol", "dan", "erin"]);
  assert.deepEqual(big.members().get("carol"), { conns: 1, meta: { c: 1 } });
  assert.deepEqual(big.members().get("dan").meta, { d: 1 });
  assert.equal(big.seq, 15);
  // An old diff (seq not past the current one) is ignored.
  socket().serve({ type: "diff", channel: "big", seq: 15, joins: { zed: {} } });
  socket().serve({ type: "diff", channel: "big", seq: 12, leaves: { alice: { reason: "left" } } });
  assert.deepEqual(names(big), ["alice", "carol", "dan", "erin"]);
  assert.deepEqual(seen, [
    "leave bob closed (diff)", 'join carol {"c":1} (diff)', "join erin {} (diff)", 'update dan {"d":1} (diff)', "count 4/4",
  ]);
  // Garbage in a diff's maps breaks nothing.
  socket().serve({ type: "diff", channel: "big", seq: 16, joins: 7, leaves: null, updates: "x" });
  assert.equal(big.seq, 16);
  // A diff from a seq past ours (changes missed): not applied, `who` asked once.
  socket().serve({ type: "diff", channel: "big", from: 17, seq: 18, joins: { zed: {} } });
  assert.equal(big.members().has("zed"), false);
  assert.equal(big.seq, 16);
  assert.equal(socket().commands("who").length, 1);
  // A diff starting before ours (one holding changes our state has) is applied.
  socket().serve({ type: "diff", channel: "big", from: 14, seq: 17, joins: { fay: {} } });
  assert.equal(big.members().has("fay"), true);
  assert.equal(big.seq, 17);
});

test("a server without events=diff: the client falls back to all", (t) => {
  const { client, socket } = setup(t, { user: "alice", channels: ["a"], events: "diff" });
  socket().drop(1006); // the upgrade refused with 400: closed before it opened
  t.mock.timers.tick(500);
  assert.equal(socket().url.searchParams.get("events"), null, "the retry asks for all");
  socket().serve(welcome());
  client.channel("b");
  assert.deepEqual(socket().commands("join").at(-1), { type: "join", channel: "b", events: "all" });
  // A join by command in mode diff that the server refuses is sent again in mode all.
  const other = setup(t, { user: "bob", events: "diff" });
  other.socket().serve(welcome("bob"));
  other.client.channel("c");
  const join = other.socket().commands("join")[0];
  assert.deepEqual(join, { type: "join", channel: "c", events: "diff", ref: { diff: "c" } });
  other.socket().serve({ type: "error", code: "bad_request", message: "events", ref: join.ref });
  assert.deepEqual(other.socket().commands("join")[1], { type: "join", channel: "c", events: "all" });
});

test("reconnects with growing, jittered delays, rejoins every channel and resyncs", (t) => {
  const { client, statuses, socket } = setup(t, { user: "alice", channels: ["lobby"] });
  const lobby = client.channel("lobby");
  socket().serve(welcome());
  socket().serve(state("lobby", 3, { alice: member(), bob: member() }));
  const meta = { status: "busy" };
  lobby.update(meta);
  const seen = record(lobby);
  const first = socket();
  first.drop(1006);
  assert.equal(client.status, "reconnecting");
  assert.equal(FakeSocket.all.length, 1, "not at once");
  client.channel("dev"); // asked for while disconnected: in the next URL
  // Attempt n waits between half and all of min(15 s, 500 ms * 2^n).
  for (const cap of [500, 1000, 2000, 4000]) {
    const before = FakeSocket.all.length;
    t.mock.timers.tick(cap / 2 - 1);
    assert.equal(FakeSocket.all.length, before, `no retry before ${cap / 2} ms`);
    t.mock.timers.tick(cap / 2 + 1);
    assert.equal(FakeSocket.all.length, before + 1, `a retry within ${cap} ms`);
    socket().drop(1006);
  }
  t.mock.timers.tick(8000);
  assert.deepEqual(socket().url.searchParams.getAll("channel"), ["lobby", "dev"]);
  socket().serve(welcome());
  assert.deepEqual(socket().commands("update"), [{ type: "update", channel: "lobby", meta }], "the meta is set again");
  // Meanwhile bob left and carol came: the fresh state tells it.
  socket().serve(state("lobby", 1, { alice: member(meta), carol: member() }));
  assert.deepEqual(names(lobby), ["alice", "carol"]);
  assert.deepEqual(seen.slice(0, 3), ['update alice {"status":"busy"} (state)', "join carol {} (state)", "leave bob null (state)"]);
  assert.deepEqual(statuses.filter((s, i) => s != statuses[i - 1]), ["open", "reconnecting", "open"]);
  // Back to the shortest delay after a success.
  socket().drop(1006);
  t.mock.timers.tick(500);
  assert.equal(client.status, "reconnecting");
  assert.equal(FakeSocket.all.length, 7);
  assert.equal(first.onmessage, null, "the old socket's callbacks are gone");
});

test("channel() joins at once when open; leave() stops rejoining; publish and ping", async (t) => {
  const { client, socket } = setup(t, { user: "alice", channels: ["lobby"] });
  const lobby = client.channel("lobby");
  assert.equal(lobby.publish({ early: true }), false, "dropped while not open");
  socket().serve(welcome());
  assert.equal(client.channel("lobby"), lobby, "one object per channel");
  client.channel("dev");
  assert.deepEqual(socket().commands("join"), [{ type: "join", channel: "dev", events: "all" }]);
  assert.equal(lobby.publish({ text: "hi" }), true);
  assert.deepEqual(socket().commands("publish"), [{ type: "publish", channel: "lobby", data: { text: "hi" } }]);
  const got = [];
  lobby.on("message", (data, from) => got.push([data, from]));
  client.on("message", (data, from) => got.push(["direct", data, from]));
  socket().serve({ type: "message", channel: "lobby", from: "bob", data: { text: "yo" } });
  socket().serve({ type: "message", channel: null, from: null, data: 1 });
  assert.deepEqual(got, [[{ text: "yo" }, "bob"], ["direct", 1, null]]);
  client.channel("dev").leave();
  assert.deepEqual(socket().commands("leave"), [{ type: "leave", channel: "dev" }]);
  const pong = client.ping();
  const ping = socket().commands("ping").at(-1);
  socket().serve({ type: "pong", id: ping.id });
  await pong;
  socket().drop(1006);
  t.mock.timers.tick(500);
  assert.deepEqual(socket().url.searchParams.getAll("channel"), ["lobby"]);
  await assert.rejects(client.ping(), /not connected/);
});

test("without channels the server's default channel is adopted and rejoined", (t) => {
  const { client, socket } = setup(t, { user: "alice" });
  const adopted = [];
  client.on("channel", (ch) => adopted.push(ch.name));
  socket().serve(welcome());
  socket().serve(state("lobby", 1, { alice: member() }));
  assert.deepEqual(adopted, ["lobby"]);
  assert.deepEqual(names(client.channel("lobby")), ["alice"]);
  socket().drop(1006);
  t.mock.timers.tick(500);
  assert.deepEqual(socket().url.searchParams.getAll("channel"), ["lobby"]);
});

test("a watcher learns channels from their states and joins none", (t) => {
  const { client, socket } = setup(t, { watch: ["*"] });
  socket().serve(welcome("anon-1"));
  socket().serve(state("a", 2, { x: member() }));
  socket().serve({ type: "count", channel: "a", users: 1200, connections: 1300, seq: 9 });
  assert.equal(client.channels().get("a").count(), 1200);
  socket().drop(1006);
  t.mock.timers.tick(500);
  assert.deepEqual(socket().url.searchParams.getAll("channel"), []);
  assert.deepEqual(socket().url.searchParams.getAll("watch"), ["*"]);
});

test("a silent server gets a ping, and is dropped when the ping stays unanswered", (t) => {
  const { client, socket } = setup(t, { user: "alice", channels: ["lobby"] });
  socket().serve(welcome("alice", { interval_ms: 1000, timeout_ms: 3000 }));
  t.mock.timers.tick(999);
  assert.equal(socket().commands("ping").length, 0, "not before the interval");
  t.mock.timers.tick(1);
  assert.equal(socket().commands("ping").length, 1);
  socket().serve({ type: "pong", id: null }); // alive: the cycle starts again
  t.mock.timers.tick(1999);
  assert.equal(client.status, "open");
  assert.equal(socket().commands("ping").length, 2, "the next silent interval, the next ping");
  // Activity other than a pong counts too; then silence.
  t.mock.timers.tick(500);
  socket().serve({ type: "count", channel: "lobby", users: 1, connections: 1, seq: 1 });
  t.mock.timers.tick(1000);
  assert.equal(socket().commands("ping").length, 3);
  const dead = socket();
  t.mock.timers.tick(1999);
  assert.equal(client.status, "open");
  t.mock.timers.tick(1);
  assert.equal(client.status, "reconnecting", "no answer within timeout - interval: gone");
  assert.equal(dead.closedWith, 1000);
  assert.equal(dead.onclose, null);
});

/** An unsigned JWT-shaped token with these claims (the client only reads `exp`). */
const token = (claims) => `h.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.s`;

test("getToken() refreshes before exp, and again after a close 4001", async (t) => {
  let issued = 0;
  const now = () => Math.floor(Date.now() / 1000);
  const getToken = async () => token({ sub: "alice", exp: now() + 10, n: ++issued });
  const { client, socket } = setup(t, { token: token({ sub: "alice", exp: 1_000_000 / 1000 + 10 }), getToken, channels: ["lobby"] });
  socket().serve(welcome());
  t.mock.timers.tick(7999);
  await flush();
  assert.equal(issued, 0, "not before 80% of the remaining life");
  t.mock.timers.tick(1);
  await flush();
  assert.equal(issued, 1);
  const refresh = socket().commands("refresh");
  assert.equal(refresh.length, 1);
  assert.match(refresh[0].token, /^h\./);
  socket().serve({ type: "refreshed", exp: now() + 10 });
  t.mock.timers.tick(8000);
  await flush();
  assert.equal(issued, 2, "each refreshed token is refreshed in turn");
  // The server closes on expiry: a new token before the next connection.
  socket().drop(4001);
  t.mock.timers.tick(500);
  await flush();
  assert.equal(issued, 3);
  const url = socket().url.searchParams.get("token");
  assert.equal(JSON.parse(Buffer.from(url.split(".")[1], "base64url")).n, 3);
  assert.equal(client.status, "reconnecting");
  // A token the client cannot read is used as it is, without refreshes.
  const plain = setup(t, { token: "opaque", getToken });
  plain.socket().serve(welcome());
  t.mock.timers.tick(60000);
  await flush();
  assert.equal(issued, 3);
});

test("close() ends everything: no reconnect, status closed", (t) => {
  const { client, statuses, socket } = setup(t, { user: "alice" });
  socket().serve(welcome());
  const ws = socket();
  client.close();
  assert.equal(ws.closedWith, 1000);
  t.mock.timers.tick(60000);
  assert.equal(FakeSocket.all.length, 1);
  assert.deepEqual(statuses, ["open", "closed"]);
});

test("hostile or odd server input never throws nor corrupts the map", (t) => {
  const { client, socket } = setup(t, { user: "alice", channels: ["lobby"] });
  const lobby = client.channel("lobby");
  socket().serve(welcome());
  socket().serve(state("lobby", 1, { alice: member() }));
  let thrown = 0;
  lobby.on("join", () => { thrown++; throw new Error("a listener's bug"); });
  for (const text of ["not json", "null", "42", "[]", '{"type":7}', '{"type":"brand-new"}', '{"type":"state"}',
    '{"type":"join","channel":"lobby","seq":2}', '{"type":"join","channel":"lobby","user":"x","seq":"NaN"}',
    '{"type":"pong","id":{"a":1}}', '{"type":"count","channel":"lobby","users":"many"}']) {
    socket().serve(text);
  }
  assert.deepEqual(names(lobby), ["alice"]);
  const hazard = 'q"\\ <b>x</b> 🦀 \u202eمرحبا';
  socket().serve({ type: "join", channel: "lobby", user: hazard, meta: { html: "<img onerror=x>" }, seq: 2 });
  assert.deepEqual(names(lobby), ["alice", hazard].sort());
  assert.equal(thrown, 1);
  assert.throws(() => t.mock.timers.tick(1), /a listener's bug/, "reported, outside the client");
  assert.equal(lobby.seq, 2);
});
