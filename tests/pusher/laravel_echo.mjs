// Laravel Echo 2 (unmodified) on pusher-js 8 against rollcall's Pusher mode, configured the
// way Laravel's docs say (broadcaster "pusher", wsHost/wsPort, forceTLS false, ws only), with
// the `pusher` SDK as the app's backend signing /broadcasting/auth (driven by
// tests/pusher.rs):
//
//   node tests/pusher/laravel_echo.mjs PATH_TO_ROLLCALL
//
// Scenario: join().here().joining().leaving() on a presence channel, whisper and
// listenForWhisper, private().listen() of a broadcast event (with Laravel's namespace) and
// toOthers() (socket_id), and .error() on a channel the backend does not authorize and on
// one whose signature rollcall refuses.

import Echo from "laravel-echo";
import Pusher from "pusher-js";
import PusherServer from "pusher";
import { run, assertEqual, APP_ID, KEY, SECRET } from "./harness.mjs";

run("laravel_echo", async (h) => {
  const server = await h.start();
  const backend = new PusherServer({ appId: APP_ID, key: KEY, secret: SECRET, host: "127.0.0.1", port: String(server.port), useTLS: false });

  /** A browser tab of `user`: Echo as resources/js/bootstrap.js sets it up. */
  const tab = (user) => new Echo({
    broadcaster: "pusher",
    key: KEY,
    cluster: "mt1",
    wsHost: "127.0.0.1",
    wsPort: server.port,
    forceTLS: false,
    enabledTransports: ["ws", "wss"],
    Pusher,
    // The app's /broadcasting/auth: it signs the channels the user may join.
    channelAuthorization: {
      // Answered on a later turn, as an HTTP request would be.
      customHandler: ({ socketId, channelName }, callback) => setImmediate(() => {
        if (channelName === "private-admin") {
          callback(new Error("403 Forbidden"), null);
          return;
        }
        const presence = channelName.startsWith("presence-")
          ? { user_id: user.id, user_info: { id: user.id, name: user.name } } : undefined;
        const signed = backend.authorizeChannel(socketId, channelName, presence);
        // A signature for another socket: rollcall must refuse it.
        if (channelName === "private-forged") signed.auth = backend.authorizeChannel("1.1", channelName).auth;
        callback(null, signed);
      }),
    },
  });

  const ann = tab({ id: 1, name: "Ann" });
  let here = null;
  const joining = [], leaving = [], whispers = [];
  ann.join("chat.1")
    .here((users) => { here = users; })
    .joining((user) => joining.push(user))
    .leaving((user) => leaving.push(user))
    .listenForWhisper("typing", (event) => whispers.push(event));
  await h.until("ann's here()", () => here !== null);
  assertEqual(here, [{ id: 1, name: "Ann" }], "here()");

  const ben = tab({ id: 2, name: "Ben" });
  let benHere = null;
  const benChannel = ben.join("chat.1").here((users) => { benHere = users; });
  await h.until("ben's here()", () => benHere !== null);
  assertEqual(benHere.map((u) => u.name).sort(), ["Ann", "Ben"], "ben's here()");
  await h.until("ann's joining()", () => joining.length === 1);
  assertEqual(joining, [{ id: 2, name: "Ben" }], "joining()");

  benChannel.whisper("typing", { name: "Ben" });
  await h.until("ann hears the whisper", () => whispers.length === 1);
  assertEqual(whispers, [{ name: "Ben" }], "listenForWhisper()");

  // A broadcast event as Laravel sends it (its class name), and toOthers().
  const shipped = { ann: [], ben: [] };
  ann.private("App.Models.User.7").listen("OrderShipped", (event) => shipped.ann.push(event));
  ben.private("App.Models.User.7").listen("OrderShipped", (event) => shipped.ben.push(event));
  await h.until("both subscribed to the private channel", () =>
    [ann, ben].every((echo) => echo.connector.pusher.channel("private-App.Models.User.7")?.subscribed));
  await h.step("broadcast(...)->toOthers()", backend.trigger("private-App.Models.User.7", "App\\Events\\OrderShipped", { order: 5 }, { socket_id: ben.socketId() }));
  await h.until("ann gets OrderShipped", () => shipped.ann.length === 1);
  assertEqual(shipped.ann, [{ order: 5 }], "listen()");
  await h.never("ben (toOthers) gets it", () => shipped.ben.length > 0);

  // A channel the backend refuses: .error() fires.
  let failure = null;
  ann.private("admin").error((error) => { failure = error; });
  await h.until("error()", () => failure !== null);
  h.log(`error() after the backend refused: ${JSON.stringify(failure)}`);
  let refused = null;
  ann.private("forged").error((error) => { refused = error; });
  await h.until("error() after rollcall refused a forged signature", () => refused !== null);
  assertEqual([refused.type, refused.status], ["AuthError", 401], "the server's refusal");

  ben.disconnect();
  await h.until("ann's leaving()", () => leaving.length === 1);
  assertEqual(leaving, [{ id: 2, name: "Ben" }], "leaving()");
  ann.disconnect();
});
