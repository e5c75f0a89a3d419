// pusher-js 8 (unmodified, its Node build) and the `pusher` server SDK 5 against rollcall's
// Pusher mode (driven by tests/pusher.rs):
//
//   node tests/pusher/pusher_js.mjs PATH_TO_ROLLCALL
//
// The SDK plays the app's backend (it signs every subscription, as Laravel's
// /broadcasting/auth does) and calls the REST API. Scenario: connect; a presence snapshot
// with the subscriber itself in it; a second tab of the same user announced once; client
// events (sender excluded, metadata.user_id); a forged signature refused with
// pusher:subscription_error; REST trigger with socket_id exclusion, triggerBatch, channel
// lists, info and users; sign-in with sendToUser and a watchlist (online on sign-in and on change, offline); a wrong secret refused with 401; pusher-js's own pings answered
// (activity_timeout 1s: it pings, and would reconnect without a pong); terminateUserConnections;
// a graceful shutdown (close 4200) followed by an automatic reconnect and resubscription to
// the restarted server.

import Pusher from "pusher-js";
import PusherServer from "pusher";
import { run, assert, assertEqual, APP_ID, KEY, SECRET } from "./harness.mjs";

Pusher.logToConsole = !!process.env.PUSHER_LOG;

run("pusher_js", async (h) => {
  let server = await h.start(["--pusher-activity-timeout", "1s", "--leave-grace", "0s"]);
  const port = server.port;
  const backend = new PusherServer({ appId: APP_ID, key: KEY, secret: SECRET, host: "127.0.0.1", port: String(port), useTLS: false });

  /** A pusher-js client of `user`, whose subscriptions the backend signs. */
  const clients = [];
  const connect = (user, { forge = false } = {}) => {
    const client = new Pusher(KEY, {
      wsHost: "127.0.0.1", wsPort: port, forceTLS: false, enabledTransports: ["ws"],
      cluster: "mt1", disableStats: true,
      channelAuthorization: {
        customHandler: ({ socketId, channelName }, callback) => {
          const presence = channelName.startsWith("presence-")
            ? { user_id: user.id, user_info: { name: user.name } } : undefined;
          const signed = backend.authorizeChannel(socketId, channelName, presence);
          if (forge) signed.auth = `${KEY}:${"0".repeat(64)}`;
          callback(null, signed);
        },
      },
    });
    client.messages = [];
    client.connection.bind("message", (m) => client.messages.push(m));
    clients.push(client);
    return client;
  };
  const connected = (client, what) => h.until(`${what} connected`, () => client.connection.state === "connected");

  const ann = connect({ id: 1, name: "Ann" });
  await connected(ann, "ann");
  assert(/^\d+\.\d+$/.test(ann.connection.socket_id), `socket id ${ann.connection.socket_id}`);

  // Presence: the snapshot holds the subscriber itself (numeric ids become strings).
  const annRoom = ann.subscribe("presence-room");
  const annAdded = [], annRemoved = [];
  annRoom.bind("pusher:member_added", (m) => annAdded.push(m.id));
  annRoom.bind("pusher:member_removed", (m) => annRemoved.push(m.id));
  await h.until("ann subscribed", () => annRoom.subscribed);
  assertEqual(annRoom.members.count, 1, "members after ann");
  assertEqual(annRoom.members.me && String(annRoom.members.me.id), "1", "members.me");
  h.log("ann is in presence-room");

  const ben = connect({ id: "2", name: "Ben" });
  const benRoom = ben.subscribe("presence-room");
  await h.until("ben subscribed", () => benRoom.subscribed);
  assertEqual(benRoom.members.count, 2, "ben sees two members");
  await h.until("ann hears ben once", () => annAdded.length === 1);
  assertEqual(annAdded, ["2"], "member_added");

  const ben2 = connect({ id: "2", name: "Ben" });
  const ben2Room = ben2.subscribe("presence-room");
  await h.until("ben's second tab subscribed", () => ben2Room.subscribed);
  await h.never("a second tab announced", () => annAdded.length > 1);
  h.log("a second tab of ben is not announced");

  // Client events: to the others (ben's other tab too), never to the sender.
  const typing = new Map();
  for (const [name, room] of [["ann", annRoom], ["ben", benRoom], ["ben2", ben2Room]]) {
    typing.set(name, []);
    room.bind("client-typing", (data, metadata) => typing.get(name).push({ data, user: metadata && metadata.user_id }));
  }
  assert(benRoom.trigger("client-typing", { text: "hi" }), "trigger refused by pusher-js");
  await h.until("ann and ben2 hear ben typing", () => typing.get("ann").length === 1 && typing.get("ben2").length === 1);
  assertEqual(typing.get("ann")[0], { data: { text: "hi" }, user: "2" }, "client event with metadata.user_id");
  await h.never("the sender hears its own event", () => typing.get("ben").length > 0);

  // A forged signature: refused on the channel, and the connection stays.
  const eve = connect({ id: "9", name: "Eve" }, { forge: true });
  const eveChannel = eve.subscribe("private-orders");
  let refusal = null;
  eveChannel.bind("pusher:subscription_error", (status) => { refusal = status; });
  await h.until("eve's forged subscription is refused", () => refusal !== null);
  assertEqual(refusal.status, 401, "subscription_error status");
  assertEqual(eve.connection.state, "connected", "eve's connection after the refusal");

  // REST: trigger with socket_id exclusion, batches, reads.
  const got = (client) => client.messages.filter((m) => m.event === "news.posted").map((m) => m.data);
  await h.step("trigger", backend.trigger("presence-room", "news.posted", { n: 1 }, { socket_id: ann.connection.socket_id }));
  await h.until("ben hears the REST event", () => got(ben).length === 1);
  assertEqual(got(ben)[0], { n: 1 }, "data as sent");
  await h.never("ann (socket_id) hears it", () => got(ann).length > 0);
  await h.step("triggerBatch", backend.triggerBatch([
    { channel: "presence-room", name: "news.posted", data: { n: 2 } },
    { channel: "presence-room", name: "news.posted", data: "plain text" },
  ]));
  await h.until("ann hears the batch", () => got(ann).length === 2);
  assertEqual(got(ann), [{ n: 2 }, "plain text"], "batch data");

  const json = async (what, promise) => {
    const response = await h.step(what, promise);
    assertEqual(response.status, 200, `${what} status`);
    return response.json();
  };
  const channels = await json("GET /channels", backend.get({ path: "/channels", params: { filter_by_prefix: "presence-", info: "user_count" } }));
  assertEqual(channels, { channels: { "presence-room": { user_count: 2 } } }, "channels");
  const info = await json("GET /channels/presence-room", backend.get({ path: "/channels/presence-room", params: { info: "user_count,subscription_count" } }));
  assertEqual(info, { occupied: true, user_count: 2, subscription_count: 3 }, "channel info");
  const users = await json("GET users", backend.get({ path: "/channels/presence-room/users" }));
  assertEqual(users.users.map((u) => u.id).sort(), ["1", "2"], "users");

  const forger = new PusherServer({ appId: APP_ID, key: KEY, secret: "wrong", host: "127.0.0.1", port: String(port), useTLS: false });
  const refused = await forger.trigger("presence-room", "x", {}).then(() => null, (e) => e);
  assert(refused && refused.status === 401, `a wrong secret: ${refused && refused.status}`);

  // pusher-js pings after activity_timeout (1s) of silence and reconnects if no pong comes:
  // three seconds later it is still on the same socket.
  const socketBefore = ann.connection.socket_id;
  await new Promise((resolve) => setTimeout(resolve, 3000));
  assertEqual(ann.connection.socket_id, socketBefore, "socket id after 3 s of pings");
  assert(ann.messages.some((m) => m.event === "pusher:pong"), "no pusher:pong seen");
  h.log("pusher-js's pings are answered");

  // User sign-in: server-to-user events (sendToUser) and a watchlist.
  const signedIn = (user, watchlist) => {
    const client = new Pusher(KEY, {
      wsHost: "127.0.0.1", wsPort: port, forceTLS: false, enabledTransports: ["ws"], cluster: "mt1",
      userAuthentication: {
        customHandler: ({ socketId }, callback) =>
          callback(null, backend.authenticateUser(socketId, { id: user, watchlist })),
      },
    });
    clients.push(client);
    client.signin();
    return client;
  };
  const watcher = signedIn("watcher", ["dora"]);
  const watchEvents = [];
  watcher.user.watchlist.bind("online", (event) => watchEvents.push(["online", event.user_ids]));
  watcher.user.watchlist.bind("offline", (event) => watchEvents.push(["offline", event.user_ids]));
  await connected(watcher, "watcher");
  const dora = signedIn("dora", []);
  const dms = [];
  dora.user.bind("dm", (data) => dms.push(data));
  await h.until("the watcher hears dora online", () => watchEvents.length === 1);
  assertEqual(watchEvents[0], ["online", ["dora"]], "watchlist online");
  // One who signs in while dora is online hears it at once (on sign-in, §4), not bob.
  const late = signedIn("late", ["bob", "dora"]);
  const lateEvents = [];
  late.user.watchlist.bind("online", (event) => lateEvents.push(["online", event.user_ids]));
  late.user.watchlist.bind("offline", (event) => lateEvents.push(["offline", event.user_ids]));
  await h.until("the late watcher hears dora online on sign-in", () => lateEvents.length === 1);
  assertEqual(lateEvents[0], ["online", ["dora"]], "watchlist on sign-in");
  await h.until("dora's server-to-user channel", () => dora.user.serverToUserChannel?.subscribed);
  await h.step("sendToUser", backend.sendToUser("dora", "dm", { text: "hello dora" }));
  await h.until("dora gets the dm", () => dms.length === 1);
  assertEqual(dms[0], { text: "hello dora" }, "sendToUser data");
  dora.disconnect();
  await h.until("the watcher hears dora offline", () => watchEvents.length === 2);
  assertEqual(watchEvents[1], ["offline", ["dora"]], "watchlist offline");
  await h.until("the late watcher hears dora offline", () => lateEvents.length === 2);
  assertEqual(lateEvents[1], ["offline", ["dora"]], "watchlist offline (late)");
  late.disconnect();
  watcher.disconnect();
  h.log("sign-in, sendToUser and the watchlist work");

  // The app ends ben's connections (both tabs): ann hears ben leave, once.
  await h.step("terminateUserConnections", backend.terminateUserConnections("2"));
  await h.until("ann hears ben leave", () => annRemoved.length === 1);
  await h.until("ben's tabs are closed", () => ben.connection.state !== "connected" && ben2.connection.state !== "connected");
  assertEqual(annRemoved, ["2"], "member_removed");
  for (const client of [ben, ben2, eve]) client.disconnect();

  // Graceful shutdown: close 4200, pusher-js reconnects on its own to the restarted server
  // and subscribes again.
  const oldSocket = ann.connection.socket_id;
  await h.stop(server);
  server = await h.start(["--pusher-activity-timeout", "1s"], port);
  await h.until("ann reconnected with a new socket id", () => ann.connection.state === "connected" && ann.connection.socket_id !== oldSocket, 40000);
  await h.until("ann subscribed again", () => annRoom.subscribed && annRoom.members.count === 1);
  const again = await json("GET users after the restart", backend.get({ path: "/channels/presence-room/users" }));
  assertEqual(again.users, [{ id: "1" }], "users after the restart");
  h.log("reconnected after a restart");
  ann.disconnect();
});
