//! Watching: a connection that observes presence (`watch=CHANNEL`, `watch=*`, the `watch` and
//! `unwatch` commands) without being a member, and the admin token that guards it.

mod common;

use std::collections::BTreeMap;

use common::*;
use serde_json::{json, Value};

/// A client whose every received message is kept, so that `count` messages skipped while
/// waiting for an event can still be checked later.
struct Watcher {
    client: Client,
    seen: Vec<Value>,
}

impl Watcher {
    fn new(client: Client) -> Watcher {
        Watcher {
            client,
            seen: Vec::new(),
        }
    }

    /// Waits for a message matching `pred`, skipping `count`s (kept in `seen`) and failing on
    /// anything else.
    #[track_caller]
    fn expect(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let (msg, skipped) = self.client.wait_for(STEP, what, |v| pred(v));
        let unexpected: Vec<&Value> = skipped.iter().filter(|m| m["type"] != "count").collect();
        assert!(
            unexpected.is_empty(),
            "before {what}, unexpected messages: {unexpected:?}"
        );
        self.seen.extend(skipped);
        self.seen.push(msg.clone());
        msg
    }

    /// A `type` event of `channel` about `user`.
    #[track_caller]
    fn expect_event(&mut self, ty: &str, channel: &str, user: &str) -> Value {
        self.expect(&format!("{ty} of {user} in {channel}"), |v| {
            v["type"] == ty && v["channel"] == channel && v["user"] == user
        })
    }

    /// Ping round trip: messages before the pong other than `count`s.
    #[track_caller]
    fn quiet(&mut self) -> Vec<Value> {
        let before = self.client.roundtrip_ping();
        let (counts, rest): (Vec<Value>, Vec<Value>) =
            before.into_iter().partition(|m| m["type"] == "count");
        self.seen.extend(counts);
        rest
    }

    /// Reads `n` `state` messages (skipping `count`s), keyed by channel.
    #[track_caller]
    fn states(&mut self, n: usize) -> BTreeMap<String, Value> {
        let mut states = BTreeMap::new();
        for _ in 0..n {
            let state = self.expect("a state", |v| v["type"] == "state");
            let channel = state["channel"].as_str().unwrap_or_default().to_string();
            assert!(
                states.insert(channel, state.clone()).is_none(),
                "two states for one channel: {state}"
            );
        }
        states
    }
}

/// The `who` reply for `channel` on `client`.
#[track_caller]
fn who(client: &mut Client, channel: &str) -> Value {
    client.send_json(&json!({"type": "who", "channel": channel}));
    client.wait_for_type("state", STEP).0
}

#[test]
fn watch_star_sees_every_channel_without_being_a_member() {
    let server = Server::start(&[]);
    let addr = server.addr();

    let (mut alice, alice_state) = Client::join(addr, "user=alice&channel=c1");
    let (bob, _) = Client::join(addr, "user=bob&channel=c2");
    let c1_seq = seq_of(&alice_state);

    let (client, welcome) = Client::connect_welcomed(addr, "user=w&watch=*");
    assert_eq!(welcome["user"], "w", "{welcome}");
    let mut w = Watcher::new(client);
    let states = w.states(2);
    assert_eq!(
        states.keys().collect::<Vec<_>>(),
        ["c1", "c2"],
        "one state per channel with members"
    );
    assert_eq!(user_names(&states["c1"]), ["alice"], "{}", states["c1"]);
    assert_eq!(user_names(&states["c2"]), ["bob"], "{}", states["c2"]);
    assert_eq!(seq_of(&states["c1"]), c1_seq, "{}", states["c1"]);

    // The watcher joined no channel, not even the default one (`who` would answer: a
    // watcher of every channel may ask it of any channel).
    w.client
        .send_json(&json!({"type": "leave", "channel": "lobby", "ref": "l"}));
    let error = w.expect("leave lobby error", |v| v["type"] == "error");
    assert_eq!(error["code"], "not_joined", "{error}");
    assert_eq!(error["ref"], "l", "{error}");
    let rest = w.quiet();
    assert!(rest.is_empty(), "watcher got {rest:?}");

    // Nobody heard of the watcher; seq and members did not change.
    assert!(
        presence_events(&alice.roundtrip_ping()).is_empty(),
        "the watcher was announced to alice"
    );
    let c1 = who(&mut alice, "c1");
    assert_eq!(seq_of(&c1), c1_seq, "watching changed seq: {c1}");
    assert_eq!(user_names(&c1), ["alice"], "{c1}");

    // Events of existing channels.
    alice.send_json(&json!({"type": "update", "channel": "c1", "meta": {"s": 1}}));
    let update = w.expect_event("update", "c1", "alice");
    assert_eq!(update["meta"], json!({"s": 1}), "{update}");
    assert_eq!(seq_of(&update), c1_seq + 1, "{update}");
    let (_dave, dave_state) = Client::join(addr, "user=dave&channel=c1");
    assert_eq!(
        user_names(&dave_state),
        ["alice", "dave"],
        "the watcher is not in state: {dave_state}"
    );
    w.expect_event("join", "c1", "dave");

    // And of a channel created after the watch began: its `state` is the first word of it.
    let (_carol, _) = Client::join(addr, "user=carol&channel=c3");
    let state = w.expect("state of c3", |v| v["type"] == "state");
    assert_eq!(state["channel"], "c3", "{state}");
    assert_eq!(user_names(&state), ["carol"], "{state}");
    assert_eq!(seq_of(&state), 1, "{state}");

    // /presence does not list the watcher in any channel; it is an open WebSocket (counted
    // in `connections`) and a watcher, not a user.
    let presence = http_get(addr, "/presence").json();
    let channels = presence["channels"]
        .as_object()
        .unwrap_or_else(|| panic!("{presence}"));
    assert_eq!(
        channels.keys().collect::<Vec<_>>(),
        ["c1", "c2", "c3"],
        "{presence}"
    );
    for (name, channel) in channels {
        assert!(
            channel["users"].get("w").is_none(),
            "watcher listed in {name}: {presence}"
        );
    }
    assert_eq!(presence["connections"], 5, "{presence}");
    assert_eq!(presence["users"], 4, "{presence}");
    assert_eq!(presence["watchers"], 1, "{presence}");
    let m = scrape(addr);
    assert_eq!(m.get("rollcall_connections"), 5.0);
    assert_eq!(m.get("rollcall_users_online"), 4.0, "watchers are no users");
    assert_eq!(m.get("rollcall_watchers"), 1.0);
    assert_eq!(m.get("rollcall_channels"), 3.0);

    // Leaves too.
    bob.close();
    let leave = w.expect_event("leave", "c2", "bob");
    assert_eq!(leave["reason"], "closed", "{leave}");

    // Count messages for watched channels: c1 settles at 2 users, 2 connections.
    let settled = |v: &Value| {
        v["type"] == "count" && v["channel"] == "c1" && v["users"] == 2 && v["connections"] == 2
    };
    if !w.seen.iter().any(settled) {
        w.expect("a count of c1 with 2 users", settled);
    }
    let rest = w.quiet();
    assert!(rest.is_empty(), "watcher got {rest:?}");
}

#[test]
fn watch_parameters_name_channels_and_join_none() {
    let server = Server::start(&[]);
    let addr = server.addr();
    let (mut alice, _) = Client::join(addr, "user=alice&channel=c1");
    let (_bob, _) = Client::join(addr, "user=bob&channel=c2");
    let (_carol, _) = Client::join(addr, "user=carol&channel=c3");

    let (client, _) = Client::connect_welcomed(addr, "user=w&watch=c1&watch=c2");
    let mut w = Watcher::new(client);
    let states = w.states(2);
    assert_eq!(states.keys().collect::<Vec<_>>(), ["c1", "c2"]);
    w.client
        .send_json(&json!({"type": "who", "channel": "lobby"}));
    let error = w.expect("who lobby error", |v| v["type"] == "error");
    assert_eq!(error["code"], "not_joined", "{error}");

    // c3 is not watched.
    let (_dave, _) = Client::join(addr, "user=dave&channel=c3");
    let (_erin, _) = Client::join(addr, "user=erin&channel=c1");
    w.expect_event("join", "c1", "erin");
    let rest = w.quiet();
    assert!(rest.is_empty(), "unwatched c3 leaked: {rest:?}");
    assert!(
        presence_events(&alice.roundtrip_ping())
            .iter()
            .all(|e| e["user"] != "w"),
        "the watcher was announced"
    );
}

#[test]
fn watch_and_unwatch_commands() {
    let server = Server::start(&[]);
    let addr = server.addr();
    let (mut bob, _) = Client::join(addr, "user=bob&channel=c2");
    let (x, _) = Client::join(addr, "user=x&channel=c1");
    let mut x = Watcher::new(x);

    x.client
        .send_json(&json!({"type": "watch", "channel": "c2", "ref": "w1"}));
    let state = x.expect("state of c2", |v| v["type"] == "state");
    assert_eq!(state["channel"], "c2", "{state}");
    assert_eq!(state["ref"], "w1", "{state}");
    assert_eq!(user_names(&state), ["bob"], "{state}");
    let c2_seq = seq_of(&state);

    bob.send_json(&json!({"type": "update", "channel": "c2", "meta": {"n": 1}}));
    bob.expect_type("update");
    let update = x.expect_event("update", "c2", "bob");
    assert_eq!(seq_of(&update), c2_seq + 1, "{update}");
    let c2 = who(&mut bob, "c2");
    assert_eq!(user_names(&c2), ["bob"], "watching is not joining: {c2}");

    // unwatch: no more events of c2.
    x.client
        .send_json(&json!({"type": "unwatch", "channel": "c2", "ref": "u1"}));
    let rest = x.quiet();
    assert!(
        rest.iter().all(|m| m["type"] != "error"),
        "unwatch failed: {rest:?}"
    );
    bob.send_json(&json!({"type": "update", "channel": "c2", "meta": {"n": 2}}));
    bob.expect_type("update");
    let rest = x.quiet();
    assert!(rest.is_empty(), "events after unwatch: {rest:?}");

    // unwatch of something not watched.
    for channel in ["c2", "nope", "*"] {
        x.client
            .send_json(&json!({"type": "unwatch", "channel": channel, "ref": channel}));
        let error = x.expect("unwatch error", |v| v["type"] == "error");
        assert_eq!(error["code"], "not_joined", "unwatch {channel}: {error}");
        assert_eq!(error["ref"], channel, "{error}");
    }
    // c1 is joined but not watched.
    x.client
        .send_json(&json!({"type": "unwatch", "channel": "c1", "ref": "c1"}));
    let error = x.expect("unwatch c1 error", |v| v["type"] == "error");
    assert_eq!(error["code"], "not_joined", "unwatch c1: {error}");

    // Watching a channel that does not exist yet.
    x.client
        .send_json(&json!({"type": "watch", "channel": "future", "ref": 2}));
    let state = x.expect("state of future", |v| v["type"] == "state");
    assert_eq!(
        state,
        json!({"type": "state", "channel": "future", "seq": 0, "users": {}, "ref": 2}),
        "empty watched channel"
    );
    let (_y, _) = Client::join(addr, "user=y&channel=future");
    let join = x.expect_event("join", "future", "y");
    assert_eq!(seq_of(&join), 1, "{join}");

    // watch "*" by command, then unwatch it.
    x.client
        .send_json(&json!({"type": "watch", "channel": "*", "ref": "all"}));
    let states = x.states(3);
    assert_eq!(states.keys().collect::<Vec<_>>(), ["c1", "c2", "future"]);
    // A channel created later shows up as a `state` (a new baseline, §12).
    let (_z, _) = Client::join(addr, "user=z&channel=later");
    let later = x.expect("state of later", |v| v["type"] == "state");
    assert_eq!(later["channel"], "later", "{later}");
    assert_eq!(user_names(&later), ["z"], "{later}");
    x.client
        .send_json(&json!({"type": "unwatch", "channel": "*"}));
    let rest = x.quiet();
    assert!(
        rest.iter().all(|m| m["type"] != "error"),
        "unwatch * failed: {rest:?}"
    );
    let (_q, _) = Client::join(addr, "user=q&channel=later2");
    let rest = x.quiet();
    assert!(rest.is_empty(), "events after unwatch *: {rest:?}");

    // Bad watch commands.
    for bad in [
        json!({"type": "watch", "ref": 1}),
        json!({"type": "watch", "channel": "bad name", "ref": 1}),
        json!({"type": "unwatch", "channel": 5, "ref": 1}),
    ] {
        x.client.send_json(&bad);
        let error = x.expect("error", |v| v["type"] == "error");
        assert_eq!(error["code"], "bad_request", "{bad}: {error}");
    }
}

#[test]
fn watching_requires_the_admin_token_when_one_is_set() {
    let server = Server::start(&["--admin-token", "T0k"]);
    let addr = server.addr();
    let (_m, _) = Client::join(addr, "user=m&channel=c1");

    for target in [
        "/?user=w&watch=*",
        "/?user=w&watch=c1",
        "/?user=w&watch=*&admin=wrong",
        "/?user=w&watch=*&admin=T0",
        "/?user=w&channel=c2&watch=c1",
    ] {
        let resp = upgrade_attempt(addr, upgrade_request(target).as_bytes());
        assert_eq!(resp.status, 401, "upgrade {target}: {resp:?}");
    }

    let (client, _) = Client::connect_welcomed(addr, "user=w&watch=*&admin=T0k");
    let mut w = Watcher::new(client);
    let states = w.states(1);
    assert_eq!(user_names(&states["c1"]), ["m"]);

    // A member without admin may not watch by command.
    let (mut p, _) = Client::join(addr, "user=p&channel=c1");
    for channel in ["c1", "*"] {
        p.send_json(&json!({"type": "watch", "channel": channel, "ref": channel}));
        let (error, _) = p.wait_for_type("error", STEP);
        assert_eq!(error["code"], "forbidden", "watch {channel}: {error}");
        assert_eq!(error["ref"], channel, "{error}");
    }

    // A connection opened with the admin token (and no watch parameter) may.
    let (mut q, _) = Client::join(addr, "user=q&channel=c2&admin=T0k");
    q.send_json(&json!({"type": "watch", "channel": "c1", "ref": 9}));
    let (state, _) = q.wait_for_type("state", STEP);
    assert_eq!(state["channel"], "c1", "{state}");
    assert_eq!(state["ref"], 9, "{state}");
    // The `*` watcher saw q create c2 (a `state` of the new channel).
    w.client.wait_for(STEP, "state of c2 with q", |v| {
        v["type"] == "state" && v["channel"] == "c2" && v["users"].get("q").is_some()
    });
}

#[test]
fn star_watcher_hears_the_last_member_leave() {
    let server = Server::start(&[]);
    let addr = server.addr();
    let (mut a, _) = Client::join(addr, "user=a&channel=c1");
    let (b, _) = Client::join(addr, "user=b&channel=c2");
    let (client, _) = Client::connect_welcomed(addr, "user=w&watch=*");
    let mut w = Watcher::new(client);
    w.states(2);

    // By command, then by closing: each was its channel's only member.
    a.send_json(&json!({"type": "leave", "channel": "c1"}));
    a.roundtrip_ping();
    let leave = w.expect_event("leave", "c1", "a");
    assert_eq!(leave["reason"], "left", "{leave}");
    b.close();
    let leave = w.expect_event("leave", "c2", "b");
    assert_eq!(leave["reason"], "closed", "{leave}");
}

#[test]
fn star_watcher_gets_a_fresh_state_when_a_channel_is_created_again() {
    let server = Server::start(&[]);
    let addr = server.addr();
    let (mut a, _) = Client::join(addr, "user=a&channel=Y");
    let (client, _) = Client::connect_welcomed(addr, "user=w&watch=*");
    let mut w = Watcher::new(client);
    let states = w.states(1);
    assert_eq!(seq_of(&states["Y"]), 1, "{}", states["Y"]);

    // a was Y's only member: the channel goes, and comes back with a new seq.
    a.send_json(&json!({"type": "leave", "channel": "Y"}));
    let leave = w.expect_event("leave", "Y", "a");
    assert_eq!(seq_of(&leave), 2, "{leave}");
    a.send_json(&json!({"type": "join", "channel": "Y", "ref": 1}));
    a.wait_for_type("state", STEP);
    let anew = w.expect("a fresh state of Y", |v| v["type"] == "state");
    assert_eq!(anew["channel"], "Y", "{anew}");
    assert_eq!(user_names(&anew), ["a"], "{anew}");
    assert_eq!(seq_of(&anew), 1, "{anew}");
    let (_b, _) = Client::join(addr, "user=b&channel=Y");
    let join = w.expect_event("join", "Y", "b");
    assert_eq!(
        seq_of(&join),
        seq_of(&anew) + 1,
        "{join}: follows the fresh state"
    );

    // §5's recovery works for watchers: `who` answers them.
    w.client
        .send_json(&json!({"type": "who", "channel": "Y", "ref": "w"}));
    let state = w.expect("who Y", |v| v["type"] == "state");
    assert_eq!(state["ref"], "w", "{state}");
    assert_eq!(user_names(&state), ["a", "b"], "{state}");
    assert_eq!(seq_of(&state), 2, "{state}");
    // `who` of a channel without members: an empty state.
    w.client
        .send_json(&json!({"type": "who", "channel": "empty", "ref": "e"}));
    let state = w.expect("who empty", |v| v["type"] == "state");
    assert_eq!(
        state,
        json!({"type": "state", "channel": "empty", "seq": 0, "users": {}, "ref": "e"})
    );
}

#[test]
fn watchers_of_named_channels_may_ask_who_of_those_only() {
    let server = Server::start(&[]);
    let addr = server.addr();
    let (_a, _) = Client::join(addr, "user=a&channel=c1");
    let (_b, _) = Client::join(addr, "user=b&channel=c2");
    let (client, _) = Client::connect_welcomed(addr, "user=w&watch=c1");
    let mut w = Watcher::new(client);
    w.states(1);
    w.client
        .send_json(&json!({"type": "who", "channel": "c1", "ref": 1}));
    let state = w.expect("who c1", |v| v["type"] == "state");
    assert_eq!(user_names(&state), ["a"], "{state}");
    w.client
        .send_json(&json!({"type": "who", "channel": "c2", "ref": 2}));
    let error = w.expect("who c2 error", |v| v["type"] == "error");
    assert_eq!(error["code"], "not_joined", "{error}");
}

#[test]
fn watchers_are_counted_apart_from_users() {
    let server = Server::start(&[]);
    let addr = server.addr();
    let (_w1, _) = Client::connect_welcomed(addr, "user=w1&watch=*");
    let (mut w2, _) = Client::connect_welcomed(addr, "user=w2&watch=c1");
    w2.expect_type("state");

    let presence = http_get(addr, "/presence").json();
    assert_eq!(
        presence,
        json!({"connections": 2, "users": 0, "watchers": 2, "channels": {}}),
        "two watchers and no members"
    );
    let metrics = scrape(addr);
    assert_eq!(metrics.get("rollcall_users_online"), 0.0);
    assert_eq!(metrics.get("rollcall_watchers"), 2.0);

    // A watcher that joins a channel becomes a user (and stays a watcher).
    w2.send_json(&json!({"type": "join", "channel": "c2", "ref": 1}));
    w2.wait_for_type("state", STEP);
    let presence = http_get(addr, "/presence").json();
    assert_eq!(presence["users"], 1, "{presence}");
    assert_eq!(presence["watchers"], 2, "{presence}");
    let (_m, _) = Client::join(addr, "user=m&channel=c1");
    let metrics = scrape(addr);
    assert_eq!(metrics.get("rollcall_users_online"), 2.0);
    assert_eq!(metrics.get("rollcall_connections"), 3.0);

    // A watcher that goes away leaves the counts as they were without it.
    drop(w2);
    let deadline = std::time::Instant::now() + STEP;
    while scrape(addr).get("rollcall_watchers") != 1.0 {
        assert!(std::time::Instant::now() < deadline, "w2 still counted");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(scrape(addr).get("rollcall_users_online"), 1.0);
}

#[test]
fn watching_is_capped_like_joining() {
    let server = Server::start(&["--max-channels-per-conn", "3"]);
    let addr = server.addr();
    let resp = upgrade_attempt(
        addr,
        upgrade_request("/?user=w&watch=a&watch=b&watch=c&watch=d").as_bytes(),
    );
    assert_eq!(resp.status, 400, "{resp:?}");
    assert!(resp.body.contains("at most 3"), "{resp:?}");

    let (_m, _) = Client::join(addr, "user=m&channel=m");
    let (client, _) = Client::connect_welcomed(addr, "user=w&watch=a&watch=*");
    let mut w = Watcher::new(client);
    w.states(2);
    let mut watch = |channel: &str| {
        w.client
            .send_json(&json!({"type": "watch", "channel": channel, "ref": channel}));
        w.expect(&format!("reply to watch {channel}"), |v| {
            v["ref"] == channel
        })
    };
    assert_eq!(watch("b")["type"], "state");
    // Watching again what is watched passes.
    assert_eq!(watch("a")["type"], "state");
    assert_eq!(watch("*")["type"], "state");
    let error = watch("c");
    assert_eq!(error["code"], "too_large", "{error}");
    assert_eq!(
        scrape(addr).get("rollcall_channels"),
        3.0,
        "m, a and b only"
    );
}
