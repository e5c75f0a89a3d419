//! Cluster mode through Redis (`--redis`, `--node-ttl`, `--reuse-port`, `--node-id`): several
//! `rollcall` processes sharing one Redis behave as one presence server.
//!
//! Every test starts its own `redis-server` on a free loopback port (tests/common/redis.rs) and
//! two or three nodes of the real binary with `--node-ttl 2s`, and talks to them over real
//! sockets only: WebSocket clients, `GET /presence`, `POST /publish`, `/metrics`, signals.
//! Waits are bounded: events are read with timeouts, views are polled until a deadline.
//!
//! Without `redis-server` the tests print `SKIPPED: redis-server not installed` and pass,
//! unless `ROLLCALL_REDIS_TESTS=1` (set by `.ci/run`) demands that they run.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use common::redis::{self, RedisServer};
use common::*;
use rollcall::pusher::auth as pusher_auth;
use serde_json::{json, Value};

/// `--node-ttl` of every node: a node refreshes its liveness every TTL/3 and is declared down
/// by the others within TTL + TTL/3 + 1 s of its last refresh.
const TTL: Duration = Duration::from_secs(2);
const TTL_FLAG: &str = "2s";

/// How long a node may take from `listening on` to its `cluster live` line.
const LIVE: Duration = Duration::from_secs(10);

/// Generous deadline for polled conditions that should hold promptly (views converging after
/// an action, gauges following a change); only reached by a failing test.
const CONVERGE: Duration = Duration::from_secs(10);

fn ms_f(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

// ---------------------------------------------------------------------------------------------
// Nodes
// ---------------------------------------------------------------------------------------------

/// A node: the server process, named; a failing test shows its stderr.
struct Node {
    id: String,
    server: Server,
}

impl std::ops::Deref for Node {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.server
    }
}

impl std::ops::DerefMut for Node {
    fn deref_mut(&mut self) -> &mut Server {
        &mut self.server
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "--- node {} (pid {}) stderr:\n{}",
                self.id,
                self.server.pid(),
                self.server.stderr()
            );
        }
    }
}

/// Starts a node named `id` in the cluster of `redis`, with `extra` flags, and waits (bounded)
/// until it logs `cluster live`.
#[track_caller]
fn node(redis: &RedisServer, id: &str, extra: &[&str]) -> Node {
    let url = redis.url();
    let mut flags = vec![
        "--redis",
        url.as_str(),
        "--node-ttl",
        TTL_FLAG,
        "--node-id",
        id,
    ];
    flags.extend_from_slice(extra);
    let server = Server::start(&flags);
    server.wait_for_log("cluster live", LIVE);
    Node {
        id: id.to_string(),
        server,
    }
}

/// A metric of the node, or `None` when the series is absent.
fn metric(addr: SocketAddr, series: &str) -> Option<f64> {
    scrape(addr).samples.get(series).copied()
}

// ---------------------------------------------------------------------------------------------
// The cluster-wide view over HTTP
// ---------------------------------------------------------------------------------------------

/// `GET /presence/CHANNEL` as user → conns (empty on 404: no members).
#[track_caller]
fn channel_view(addr: SocketAddr, channel: &str) -> BTreeMap<String, u64> {
    let response = http_get(addr, &format!("/presence/{channel}"));
    if response.status == 404 {
        return BTreeMap::new();
    }
    assert_eq!(
        response.status, 200,
        "GET /presence/{channel}: {response:?}"
    );
    conns_of(&response.json())
}

/// `users` of a `state` or of a `/presence/C` answer as user → conns.
#[track_caller]
fn conns_of(view: &Value) -> BTreeMap<String, u64> {
    users_of(view)
        .iter()
        .map(|(user, entry)| {
            let conns = entry["conns"]
                .as_u64()
                .unwrap_or_else(|| panic!("member {user} without numeric conns in {view}"));
            (user.clone(), conns)
        })
        .collect()
}

fn expected(members: &[(&str, u64)]) -> BTreeMap<String, u64> {
    members
        .iter()
        .map(|(user, conns)| (user.to_string(), *conns))
        .collect()
}

/// Polls `GET /presence/CHANNEL` on every node until each shows exactly `want` (user → conns);
/// returns how long that took. Fails with the last answers after `timeout`.
#[track_caller]
fn wait_view(
    nodes: &[(&str, SocketAddr)],
    channel: &str,
    want: &[(&str, u64)],
    timeout: Duration,
) -> Duration {
    let want = expected(want);
    let started = Instant::now();
    loop {
        let views: Vec<(&str, BTreeMap<String, u64>)> = nodes
            .iter()
            .map(|(id, addr)| (*id, channel_view(*addr, channel)))
            .collect();
        if views.iter().all(|(_, view)| *view == want) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < timeout,
            "GET /presence/{channel} did not show {want:?} on every node within {}ms; last: {views:?}",
            ms(timeout)
        );
        thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// A member that records what it hears
// ---------------------------------------------------------------------------------------------

/// A WebSocket client joined to one channel in mode `all`, that keeps every presence event of
/// the channel (for the seq checks) and applies `state`/`join`/`leave` to a member set the way
/// protocol §5 tells a client to.
struct Member {
    client: Client,
    user: String,
    channel: String,
    /// The first `state` (the join's reply).
    state: Value,
    /// Every `join`/`leave`/`update` of the channel received, in order (its own join included).
    events: Vec<Value>,
    /// Every `message` received, in order.
    messages: Vec<Value>,
    /// Every `state` received after the first (fresh states, `who` replies).
    states: Vec<Value>,
    /// The member list as the client sees it.
    members: BTreeSet<String>,
    own_join_seen: bool,
}

impl Member {
    /// Connects `user` to `channel` (mode all) on the node at `addr`: `welcome`, then `state`.
    #[track_caller]
    fn join(addr: SocketAddr, user: &str, channel: &str) -> Member {
        let query = format!("user={}&channel={}", url_encode(user), url_encode(channel));
        let (client, state) = Client::join(addr, &query);
        assert_eq!(state["channel"], channel, "{state}");
        seq_of(&state);
        let members = users_of(&state).keys().cloned().collect();
        Member {
            client,
            user: user.to_string(),
            channel: channel.to_string(),
            state,
            events: Vec::new(),
            messages: Vec::new(),
            states: Vec::new(),
            members,
            own_join_seen: false,
        }
    }

    /// Reads the next JSON message within `timeout` and records it; `None` on silence.
    #[track_caller]
    fn recv(&mut self, timeout: Duration) -> Option<Value> {
        let msg = self.client.try_recv_json(timeout)?;
        let ty = msg["type"].as_str().unwrap_or_default();
        assert_ne!(ty, "error", "{} got an error: {msg}", self.user);
        let ours = msg["channel"] == self.channel.as_str();
        match ty {
            "join" | "leave" | "update" if ours => {
                let user = msg["user"].as_str().unwrap_or_default().to_string();
                match ty {
                    "join" => {
                        self.members.insert(user);
                    }
                    "leave" => {
                        self.members.remove(&user);
                    }
                    _ => {}
                }
                self.events.push(msg.clone());
            }
            "state" if ours => {
                self.members = users_of(&msg).keys().cloned().collect();
                self.states.push(msg.clone());
            }
            "message" => self.messages.push(msg.clone()),
            _ => {}
        }
        Some(msg)
    }

    /// The next presence event of the channel, other than the member's own first `join`
    /// (which a cluster node may send right after the `state`, see the contract); other
    /// messages are recorded and skipped.
    #[track_caller]
    fn next_event(&mut self, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let Some(msg) = self.recv(remaining) else {
                panic!(
                    "{} heard no presence event within {}ms; events so far: {:?}",
                    self.user,
                    ms(timeout),
                    self.events
                );
            };
            if !matches!(msg["type"].as_str(), Some("join" | "leave" | "update"))
                || msg["channel"] != self.channel.as_str()
            {
                continue;
            }
            if msg["type"] == "join" && msg["user"] == self.user.as_str() && !self.own_join_seen {
                self.own_join_seen = true;
                continue;
            }
            return msg;
        }
    }

    /// The next presence event must be `ty` of `user`; returns it.
    #[track_caller]
    fn expect_event(&mut self, ty: &str, user: &str, timeout: Duration) -> Value {
        let event = self.next_event(timeout);
        assert!(
            event["type"] == ty && event["user"] == user,
            "{} expected `{ty}` of {user}, got {event}; events: {:?}",
            self.user,
            self.events
        );
        event
    }

    /// Reads (recording everything) until a presence event `ty` of `user` arrives; returns it.
    #[track_caller]
    fn wait_event(&mut self, ty: &str, user: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.recv(remaining) {
                Some(msg) if msg["type"] == ty && msg["user"] == user => return msg,
                Some(_) => {}
                None => panic!(
                    "{} heard no `{ty}` of {user} within {}ms; events: {:?}",
                    self.user,
                    ms(timeout),
                    self.events
                ),
            }
        }
    }

    /// The next presence event must be `leave` of `user` with `reason`; returns it.
    #[track_caller]
    fn expect_leave(&mut self, user: &str, reason: &str, timeout: Duration) -> Value {
        let event = self.expect_event("leave", user, timeout);
        assert_eq!(event["reason"], reason, "{}: {event}", self.user);
        event
    }

    /// The next `message` (presence events before it are recorded).
    #[track_caller]
    fn next_message(&mut self, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.recv(remaining) {
                Some(msg) if msg["type"] == "message" => return msg,
                Some(_) => {}
                None => panic!(
                    "{} got no message within {}ms; messages so far: {:?}",
                    self.user,
                    ms(timeout),
                    self.messages
                ),
            }
        }
    }

    /// Sends `who` and returns its `state` reply (events before it are recorded).
    #[track_caller]
    fn who(&mut self) -> Value {
        let channel = self.channel.clone();
        self.client
            .send_json(&json!({"type": "who", "channel": channel, "ref": "who"}));
        let deadline = Instant::now() + STEP;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.recv(remaining) {
                Some(msg) if msg["type"] == "state" && msg["ref"] == "who" => return msg,
                Some(_) => {}
                None => panic!("{}: no reply to who within {}ms", self.user, ms(STEP)),
            }
        }
    }

    /// `ping` round trip: every presence event the node had queued for this connection
    /// before it must be none.
    #[track_caller]
    fn expect_nothing_pending(&mut self) {
        let before = self.client.roundtrip_ping();
        let events: Vec<&Value> = before
            .iter()
            .filter(|m| matches!(m["type"].as_str(), Some("join" | "leave" | "update")))
            .collect();
        assert!(
            events.is_empty(),
            "{} expected no pending presence event, got {events:?}",
            self.user
        );
        for msg in before {
            if msg["type"] == "message" {
                self.messages.push(msg);
            }
        }
    }

    /// Reads (recording everything) until the member set is exactly `want`.
    #[track_caller]
    fn wait_members(&mut self, want: &[&str], timeout: Duration) {
        let want: BTreeSet<String> = want.iter().map(|u| u.to_string()).collect();
        let deadline = Instant::now() + timeout;
        while self.members != want {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if self.recv(remaining).is_none() {
                panic!(
                    "{} sees members {:?}, not {want:?}, after {}ms; events: {:?}; states: {:?}",
                    self.user,
                    self.members,
                    ms(timeout),
                    self.events,
                    self.states
                );
            }
        }
    }

    /// The seqs of the recorded events follow the first `state` without a gap or repeat
    /// (protocol §5), its own join included when it was sent (an own join already counted in
    /// the state's seq, which §5 tells a client to ignore, is left out).
    #[track_caller]
    fn assert_seqs_consecutive(&self) {
        let first = seq_of(&self.state);
        let seqs: Vec<u64> = self
            .events
            .iter()
            .filter(|e| {
                !(e["type"] == "join" && e["user"] == self.user.as_str() && seq_of(e) <= first)
            })
            .map(seq_of)
            .collect();
        let want: Vec<u64> = (1..=seqs.len() as u64).map(|i| first + i).collect();
        assert_eq!(
            seqs, want,
            "{}: seqs after state seq {first} are not consecutive; events: {:?}",
            self.user, self.events
        );
    }

    /// The recorded events other than its own join, as (type, user, reason).
    fn summary(&self) -> Vec<(String, String, String)> {
        self.events
            .iter()
            .filter(|e| !(e["type"] == "join" && e["user"] == self.user.as_str()))
            .map(|e| {
                (
                    e["type"].as_str().unwrap_or_default().to_string(),
                    e["user"].as_str().unwrap_or_default().to_string(),
                    e["reason"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }
}

fn ev(ty: &str, user: &str, reason: &str) -> (String, String, String) {
    (ty.to_string(), user.to_string(), reason.to_string())
}

/// A connection of `user` to `channel` in mode `none` (it hears no presence).
#[track_caller]
fn quiet(addr: SocketAddr, user: &str, channel: &str) -> Client {
    let (client, welcome) =
        Client::connect_welcomed(addr, &format!("user={user}&channel={channel}&events=none"));
    assert_eq!(welcome["user"], user, "{welcome}");
    client
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

#[test]
fn joins_and_leaves_cross_nodes_with_the_same_consecutive_seqs() {
    let Some(redis) = redis::start_or_skip("joins_and_leaves_cross_nodes") else {
        return;
    };
    let a = node(&redis, "a", &[]);
    let b = node(&redis, "b", &[]);
    assert!(
        a.stderr().contains("cluster: node a joining redis://"),
        "node a's start line; stderr:\n{}",
        a.stderr()
    );
    let nodes = [("a", a.addr()), ("b", b.addr())];

    let mut alice = Member::join(a.addr(), "alice", "room");
    wait_view(&nodes, "room", &[("alice", 1)], CONVERGE);
    let mut olga = Member::join(b.addr(), "olga", "room");
    assert!(
        users_of(&olga.state).contains_key("alice"),
        "olga's state on b lists alice of a: {}",
        olga.state
    );
    let olga_joined = alice.expect_event("join", "olga", STEP);

    // bob on b: both observers hear the join, with one seq.
    let bob = Member::join(b.addr(), "bob", "room");
    let on_a = alice.expect_event("join", "bob", STEP);
    let on_b = olga.expect_event("join", "bob", STEP);
    assert_eq!(
        seq_of(&on_a),
        seq_of(&on_b),
        "join of bob: a {on_a}, b {on_b}"
    );
    assert_eq!(
        seq_of(&on_a),
        seq_of(&olga_joined) + 1,
        "{olga_joined} then {on_a}"
    );

    // bob closes: leave `closed` on both nodes, one seq.
    bob.client.close();
    let on_a = alice.expect_leave("bob", "closed", STEP);
    let on_b = olga.expect_leave("bob", "closed", STEP);
    assert_eq!(
        seq_of(&on_a),
        seq_of(&on_b),
        "leave of bob: a {on_a}, b {on_b}"
    );

    // And the other way: dave on a, heard on b.
    let dave = Member::join(a.addr(), "dave", "room");
    let on_a = alice.expect_event("join", "dave", STEP);
    let on_b = olga.expect_event("join", "dave", STEP);
    assert_eq!(
        seq_of(&on_a),
        seq_of(&on_b),
        "join of dave: a {on_a}, b {on_b}"
    );
    dave.client.close();
    let on_a = alice.expect_leave("dave", "closed", STEP);
    let on_b = olga.expect_leave("dave", "closed", STEP);
    assert_eq!(
        seq_of(&on_a),
        seq_of(&on_b),
        "leave of dave: a {on_a}, b {on_b}"
    );

    assert_eq!(
        alice.summary(),
        vec![
            ev("join", "olga", ""),
            ev("join", "bob", ""),
            ev("leave", "bob", "closed"),
            ev("join", "dave", ""),
            ev("leave", "dave", "closed"),
        ]
    );
    assert_eq!(
        olga.summary(),
        vec![
            ev("join", "bob", ""),
            ev("leave", "bob", "closed"),
            ev("join", "dave", ""),
            ev("leave", "dave", "closed"),
        ]
    );
    alice.assert_seqs_consecutive();
    olga.assert_seqs_consecutive();
    alice.expect_nothing_pending();
    olga.expect_nothing_pending();
}

#[test]
fn a_user_on_two_nodes_is_one_member_with_summed_conns() {
    let Some(redis) = redis::start_or_skip("a_user_on_two_nodes_is_one_member") else {
        return;
    };
    let a = node(&redis, "a", &[]);
    let b = node(&redis, "b", &[]);
    let nodes = [("a", a.addr()), ("b", b.addr())];

    let mut olga = Member::join(a.addr(), "olga", "room");
    let carol_a = quiet(a.addr(), "carol", "room");
    olga.expect_event("join", "carol", STEP);
    let carol_b = quiet(b.addr(), "carol", "room");
    wait_view(&nodes, "room", &[("olga", 1), ("carol", 2)], CONVERGE);
    for (id, addr) in nodes {
        let count = http_get(addr, "/presence/room?count");
        assert_eq!(count.status, 200, "{id}: {count:?}");
        let count = count.json();
        assert_eq!(count["users"], 2, "node {id}: {count}");
        assert_eq!(count["connections"], 3, "node {id}: {count}");
    }
    // carol's second connection announced nothing: erin, joining on b after it, is next.
    let erin = quiet(b.addr(), "erin", "room");
    olga.expect_event("join", "erin", STEP);

    // One of carol's connections closes: she stays, with one connection, and no leave.
    drop(carol_a);
    wait_view(
        &nodes,
        "room",
        &[("olga", 1), ("carol", 1), ("erin", 1)],
        CONVERGE,
    );
    olga.expect_nothing_pending();
    drop(erin);
    olga.expect_leave("erin", "closed", STEP);

    // The last one closes: exactly one leave.
    drop(carol_b);
    olga.expect_leave("carol", "closed", STEP);
    wait_view(&nodes, "room", &[("olga", 1)], CONVERGE);
    let _frank = quiet(b.addr(), "frank", "room");
    olga.expect_event("join", "frank", STEP);

    assert_eq!(
        olga.summary(),
        vec![
            ev("join", "carol", ""),
            ev("join", "erin", ""),
            ev("leave", "erin", "closed"),
            ev("leave", "carol", "closed"),
            ev("join", "frank", ""),
        ]
    );
    olga.assert_seqs_consecutive();
}

#[test]
fn moving_to_another_node_within_the_leave_grace_is_silent() {
    let Some(redis) = redis::start_or_skip("moving_to_another_node_within_the_leave_grace") else {
        return;
    };
    let a = node(&redis, "a", &["--leave-grace", "2s"]);
    let b = node(&redis, "b", &["--leave-grace", "2s"]);
    let nodes = [("a", a.addr()), ("b", b.addr())];
    let mut olga = Member::join(a.addr(), "olga", "room");
    let carol_b = quiet(b.addr(), "carol", "room");
    olga.expect_event("join", "carol", STEP);

    // carol's tab on b drops (a network blip) and she is back on a within the grace: still
    // one member, never announced as leaving, even after b's grace ran out.
    drop(carol_b);
    wait_view(&nodes, "room", &[("olga", 1), ("carol", 0)], CONVERGE);
    let carol_a = quiet(a.addr(), "carol", "room");
    wait_view(&nodes, "room", &[("olga", 1), ("carol", 1)], CONVERGE);
    let _erin = quiet(b.addr(), "erin", "room");
    olga.expect_event("join", "erin", STEP);
    let graces_over = Instant::now() + Duration::from_secs(3);
    while Instant::now() < graces_over {
        olga.recv(graces_over.saturating_duration_since(Instant::now()));
    }
    wait_view(
        &nodes,
        "room",
        &[("olga", 1), ("carol", 1), ("erin", 1)],
        CONVERGE,
    );

    // Her last connection goes: the leave comes once, after a's grace, with the real reason.
    drop(carol_a);
    let dropped = Instant::now();
    olga.expect_leave("carol", "closed", CONVERGE);
    assert!(
        dropped.elapsed() >= Duration::from_millis(1_900),
        "leave {}ms after the drop, before the 2 s grace",
        ms(dropped.elapsed())
    );
    assert_eq!(
        olga.summary(),
        vec![
            ev("join", "carol", ""),
            ev("join", "erin", ""),
            ev("leave", "carol", "closed"),
        ]
    );
    olga.assert_seqs_consecutive();
}

#[test]
fn state_who_and_presence_on_one_node_include_members_of_the_other() {
    let Some(redis) = redis::start_or_skip("state_who_and_presence_include_remote_members") else {
        return;
    };
    let a = node(&redis, "a", &[]);
    let b = node(&redis, "b", &[]);

    let mut olga = Member::join(a.addr(), "olga", "room");
    // bob joins on b with a meta.
    let (mut bob, _) = Client::connect_welcomed(b.addr(), "user=bob&channel=elsewhere");
    bob.expect_type("state");
    bob.send_json(&json!({"type": "join", "channel": "room", "meta": {"team": "blue"}, "ref": 1}));
    let (reply, _) = bob.wait_for(STEP, "bob's join reply", |m| m["ref"] == 1);
    assert_eq!(reply["type"], "state", "{reply}");
    assert_eq!(reply["channel"], "room", "{reply}");
    let joined = olga.expect_event("join", "bob", STEP);
    assert_eq!(joined["meta"], json!({"team": "blue"}), "{joined}");

    // A new member on a gets a state that lists bob (only on b), with his meta.
    let mut carol = Member::join(a.addr(), "carol", "room");
    let users = users_of(&carol.state);
    assert_eq!(
        users.get("bob"),
        Some(&json!({"conns": 1, "meta": {"team": "blue"}})),
        "carol's state on a: {}",
        carol.state
    );
    assert!(users.contains_key("olga"), "{}", carol.state);
    assert!(
        users
            .keys()
            .all(|u| ["olga", "bob", "carol"].contains(&u.as_str())),
        "{}",
        carol.state
    );
    olga.expect_event("join", "carol", STEP);

    // who on a: all three, bob with his meta.
    let who = olga.who();
    assert_eq!(
        conns_of(&who),
        expected(&[("olga", 1), ("bob", 1), ("carol", 1)]),
        "{who}"
    );
    assert_eq!(
        who["users"]["bob"]["meta"],
        json!({"team": "blue"}),
        "{who}"
    );
    let who_carol = carol.who();
    assert_eq!(
        user_names(&who_carol),
        ["bob", "carol", "olga"],
        "{who_carol}"
    );
    assert_eq!(seq_of(&who_carol), seq_of(&who), "{who_carol} vs {who}");

    // GET /presence, /presence/room, /presence/room?count on a (and on b): the union.
    for (id, addr) in [("a", a.addr()), ("b", b.addr())] {
        wait_view(
            &[(id, addr)],
            "room",
            &[("olga", 1), ("bob", 1), ("carol", 1)],
            CONVERGE,
        );
        let all = http_get(addr, "/presence");
        assert_eq!(all.status, 200, "{id}: {all:?}");
        let all = all.json();
        let room = &all["channels"]["room"];
        assert_eq!(
            conns_of(room),
            expected(&[("olga", 1), ("bob", 1), ("carol", 1)]),
            "GET /presence on {id}: {all}"
        );
        assert_eq!(
            room["users"]["bob"]["meta"],
            json!({"team": "blue"}),
            "{id}: {all}"
        );
        assert_eq!(seq_of(room), seq_of(&who), "GET /presence on {id}: {all}");
        assert_eq!(
            conns_of(&all["channels"]["elsewhere"]),
            expected(&[("bob", 1)]),
            "GET /presence on {id}: {all}"
        );
        let count = http_get(addr, "/presence/room?count");
        assert_eq!(count.status, 200, "{id}: {count:?}");
        let count = count.json();
        assert_eq!(
            (&count["users"], &count["connections"]),
            (&json!(3), &json!(3)),
            "GET /presence/room?count on {id}: {count}"
        );
        assert_eq!(seq_of(&count), seq_of(&who), "{id}: {count}");
    }
    olga.assert_seqs_consecutive();
    drop(bob);
}

#[test]
fn publications_reach_subscribers_on_every_node() {
    let Some(redis) = redis::start_or_skip("publications_reach_subscribers_on_every_node") else {
        return;
    };
    let a = node(&redis, "a", &["--client-publish"]);
    let b = node(&redis, "b", &["--client-publish"]);
    let nodes = [("a", a.addr()), ("b", b.addr())];

    let mut pa = Member::join(a.addr(), "pa", "news");
    let mut sb = Member::join(b.addr(), "sb", "news");
    pa.expect_event("join", "sb", STEP);
    sb.wait_members(&["pa", "sb"], STEP);
    wait_view(&nodes, "news", &[("pa", 1), ("sb", 1)], CONVERGE);

    // POST /publish on a: delivered counts a's own connections only; b's subscriber gets it.
    let body = json!({"channel": "news", "data": {"headline": "cluster"}}).to_string();
    let published = http_post(a.addr(), "/publish", &[], body.as_bytes());
    assert_eq!(published.status, 200, "{published:?}");
    assert_eq!(published.json(), json!({"delivered": 1}), "{published:?}");
    let m1 = json!({"type": "message", "channel": "news", "from": null, "data": {"headline": "cluster"}});
    assert_eq!(sb.next_message(STEP), m1);
    assert_eq!(pa.next_message(STEP), m1);

    // A client's publish on b reaches a.
    sb.client
        .send_json(&json!({"type": "publish", "channel": "news", "data": ["hi", 2]}));
    let m2 = json!({"type": "message", "channel": "news", "from": "sb", "data": ["hi", 2]});
    assert_eq!(pa.next_message(STEP), m2);
    assert_eq!(sb.next_message(STEP), m2);

    // POST /publish on b (the `channels` form) reaches a.
    let body = json!({"channels": ["news"], "data": 3}).to_string();
    let published = http_post(b.addr(), "/publish", &[], body.as_bytes());
    assert_eq!(published.status, 200, "{published:?}");
    assert_eq!(published.json(), json!({"delivered": 1}), "{published:?}");
    let m3 = json!({"type": "message", "channel": "news", "from": null, "data": 3});
    assert_eq!(pa.next_message(STEP), m3);
    assert_eq!(sb.next_message(STEP), m3);

    // Each publication once, in order, on both nodes.
    pa.expect_nothing_pending();
    sb.expect_nothing_pending();
    for member in [&pa, &sb] {
        assert_eq!(
            member.messages,
            vec![m1.clone(), m2.clone(), m3.clone()],
            "messages of {}",
            member.user
        );
    }
}

/// Issue 16: a user id with every hazard (quotes, a backslash, markup, an emoji,
/// right-to-left text) crosses nodes in the script's notes, the snapshot and publication
/// notes byte for byte, in a channel named the Phoenix way.
#[test]
fn a_hazardous_user_id_crosses_nodes_byte_for_byte() {
    let Some(redis) = redis::start_or_skip("a_hazardous_user_id_crosses_nodes_byte_for_byte")
    else {
        return;
    };
    let a = node(&redis, "a", &["--client-publish"]);
    let b = node(&redis, "b", &["--client-publish"]);
    let hazard = "auth0|q\"b\\s</script> 🦀 \u{202e}مرحبا\u{202c}";
    let channel = "room:lobby";

    let mut olga = Member::join(b.addr(), "olga", channel);
    let mut mover = Member::join(a.addr(), hazard, channel);
    let join = olga.wait_event("join", hazard, CONVERGE);
    assert_eq!(join["channel"], channel, "{join}");
    mover.wait_members(&["olga", hazard], CONVERGE);
    wait_view(
        &[("b", b.addr())],
        channel,
        &[("olga", 1), (hazard, 1)],
        CONVERGE,
    );

    mover
        .client
        .send_json(&json!({"type": "update", "channel": channel, "meta": {"name": hazard}}));
    let update = olga.wait_event("update", hazard, STEP);
    assert_eq!(update["meta"]["name"], hazard, "{update}");
    mover
        .client
        .send_json(&json!({"type": "publish", "channel": channel, "data": 1}));
    let message = olga.next_message(STEP);
    assert_eq!(
        (&message["from"], &message["channel"]),
        (&json!(hazard), &json!(channel))
    );

    // A node that starts later learns the member from the cluster's snapshot.
    let c = node(&redis, "c", &[]);
    let late = Member::join(c.addr(), "late", channel);
    assert!(
        users_of(&late.state).contains_key(hazard),
        "the snapshot carries the id: {}",
        late.state
    );

    mover.client.close();
    olga.wait_event("leave", hazard, CONVERGE);
}

#[test]
fn a_killed_node_s_users_leave_with_node_down_within_the_ttl() {
    let Some(redis) = redis::start_or_skip("a_killed_node_s_users_leave_with_node_down") else {
        return;
    };
    let a = node(&redis, "a", &[]);
    let mut b = node(&redis, "b", &[]);
    let nodes = [("a", a.addr()), ("b", b.addr())];

    let mut olga = Member::join(a.addr(), "olga", "room");
    let _bob = quiet(b.addr(), "bob", "room");
    olga.expect_event("join", "bob", STEP);
    let _carol_a = quiet(a.addr(), "carol", "room");
    olga.expect_event("join", "carol", STEP);
    let _carol_b = quiet(b.addr(), "carol", "room");
    wait_view(
        &nodes,
        "room",
        &[("olga", 1), ("bob", 1), ("carol", 2)],
        CONVERGE,
    );
    wait_metric(
        a.addr(),
        "a sees b",
        "rollcall_cluster_nodes",
        2.0,
        CONVERGE,
    );

    let killed = Instant::now();
    b.signal("KILL");
    assert!(
        b.wait_exit(STEP).is_some(),
        "node b still runs after SIGKILL"
    );
    let leave = olga.expect_leave("bob", "node_down", CONVERGE);
    let took = killed.elapsed();
    // Contract: declared down within the TTL of its last refresh (which came before the
    // kill); 800 ms more for wheel ticks and this test's own reading on a busy machine.
    let bound = TTL;
    assert!(
        took <= bound + Duration::from_millis(800),
        "leave node_down {}ms after the kill; the contract says within {}ms: {leave}",
        ms(took),
        ms(bound)
    );
    eprintln!(
        "node_down announced {:.0}ms after the kill (bound {}ms)",
        ms_f(took),
        ms(bound)
    );

    only_bob_left(&a, &mut olga, "node_down");
    wait_metric(a.addr(), "a alone", "rollcall_cluster_nodes", 1.0, CONVERGE);
    let metrics = scrape(a.addr());
    assert!(
        !metrics.samples.keys().any(|k| k.contains("node_down")),
        "node_down is no closed_total reason:\n{}",
        metrics.response.body
    );
}

#[test]
fn a_frozen_node_declared_down_puts_its_users_back_when_it_thaws() {
    let Some(redis) = redis::start_or_skip("a_frozen_node_declared_down_puts_its_users_back")
    else {
        return;
    };
    let a = node(&redis, "a", &[]);
    let b = node(&redis, "b", &[]);
    let nodes = [("a", a.addr()), ("b", b.addr())];
    let mut olga = Member::join(a.addr(), "olga", "room");
    let _bob = quiet(b.addr(), "bob", "room");
    olga.expect_event("join", "bob", STEP);
    wait_view(&nodes, "room", &[("olga", 1), ("bob", 1)], CONVERGE);

    // Frozen past its TTL, b is declared down by a; bob's socket to b stays open meanwhile
    // (the default heartbeat is far longer than the freeze).
    b.signal("STOP");
    olga.expect_leave("bob", "node_down", CONVERGE);
    b.signal("CONT");
    // Its next refresh finds its liveness lapsed: b syncs what it holds, and bob is back.
    olga.expect_event("join", "bob", CONVERGE);
    b.wait_for_log("liveness had lapsed", STEP);
    wait_view(&nodes, "room", &[("olga", 1), ("bob", 1)], CONVERGE);
    olga.assert_seqs_consecutive();
}

#[test]
fn garbage_on_the_notes_channel_is_ignored_and_never_reaches_clients() {
    let Some(redis) = redis::start_or_skip("garbage_on_the_notes_channel_is_ignored") else {
        return;
    };
    let a = node(&redis, "a", &[]);
    let b = node(&redis, "b", &[]);
    let mut olga = Member::join(a.addr(), "olga", "room");
    // A writer that is no node (or a node of another version) publishes on the channel:
    // bytes that are no note, a join whose user holds a control character, a leave
    // for nobody far ahead of the seq, a publication of invalid JSON.
    for garbage in [
        "\u{1}\u{2}not a note",
        "J\troom\tev\nil\t2\t1\t{}",
        "J\troom\tmallory\t1\t1\t[1,2]",
        "L\troom\tnobody\t99\tclosed",
        "P\tx\troom\t\t{not json",
    ] {
        redis
            .command(&["PUBLISH", "rollcall:events", garbage])
            .expect("PUBLISH");
    }
    // Both nodes keep working: a real join on b reaches olga on a, as a `join` or, when the
    // forged leave's gap made a reload the snapshot first, in the fresh `state` it sends.
    let _bob = quiet(b.addr(), "bob", "room");
    let deadline = Instant::now() + CONVERGE;
    while !olga.members.contains("bob") {
        let remaining = deadline.saturating_duration_since(Instant::now());
        assert!(
            olga.recv(remaining).is_some(),
            "olga never heard of bob; events {:?}, states {:?}",
            olga.events,
            olga.states
        );
    }
    let expected: BTreeSet<String> = ["olga", "bob"].map(String::from).into();
    assert_eq!(olga.members, expected);
    for seen in olga.events.iter().chain(&olga.states) {
        let text = seen.to_string();
        assert!(
            !text.contains("mallory") && !text.contains("nobody") && !text.contains("il"),
            "a forged note reached a client: {text}"
        );
    }
    wait_view(
        &[("a", a.addr()), ("b", b.addr())],
        "room",
        &[("olga", 1), ("bob", 1)],
        CONVERGE,
    );
    assert!(a.stderr().contains("ignored a note"), "{}", a.stderr());
}

#[test]
fn nodes_outlive_a_redis_restart_and_converge_again() {
    let Some(mut redis) = redis::start_or_skip("nodes_outlive_a_redis_restart") else {
        return;
    };
    let port = redis.port();
    let mut a = node(&redis, "a", &[]);
    let mut b = node(&redis, "b", &[]);
    let nodes = [("a", a.addr()), ("b", b.addr())];

    let mut olga = Member::join(a.addr(), "olga", "room");
    let _bob = quiet(b.addr(), "bob", "room");
    olga.expect_event("join", "bob", STEP);
    wait_view(&nodes, "room", &[("olga", 1), ("bob", 1)], CONVERGE);
    for (id, addr) in nodes {
        assert_eq!(
            metric(addr, "rollcall_cluster_degraded"),
            Some(0.0),
            "node {id}"
        );
    }

    redis.kill();
    for (id, addr) in nodes {
        let took = wait_metric(addr, id, "rollcall_cluster_degraded", 1.0, CONVERGE);
        eprintln!("node {id} degraded {:.0}ms after redis died", ms_f(took));
    }
    for (id, server) in [("a", &a), ("b", &b)] {
        server.wait_for_log("cluster degraded", STEP);
        let stderr = server.stderr();
        let line = stderr
            .lines()
            .find(|line| line.contains("cluster degraded"))
            .unwrap_or_default();
        assert!(line.contains("WARN"), "node {id}: a WARN line: {line:?}");
    }
    assert!(a.is_running() && b.is_running(), "nodes must outlive redis");

    // Local presence and delivery keep working on each node.
    let _carol = quiet(a.addr(), "carol", "room");
    olga.wait_event("join", "carol", STEP);
    let _dave = quiet(b.addr(), "dave", "room");
    let view_b = channel_view(b.addr(), "room");
    assert_eq!(
        view_b.get("dave"),
        Some(&1),
        "b's local view while degraded: {view_b:?}"
    );
    let body = json!({"channel": "room", "data": "still here"}).to_string();
    let published = http_post(a.addr(), "/publish", &[], body.as_bytes());
    assert_eq!(published.status, 200, "{published:?}");
    assert_eq!(
        published.json(),
        json!({"delivered": 2}),
        "olga and carol on a"
    );
    let message = olga.next_message(STEP);
    assert_eq!(message["data"], "still here", "{message}");

    // Redis returns on the same port, empty: the nodes re-announce, views converge.
    let _redis = RedisServer::start_on(port);
    let restarted = Instant::now();
    let union = [("olga", 1), ("bob", 1), ("carol", 1), ("dave", 1)];
    wait_view(&nodes, "room", &union, CONVERGE);
    for (id, addr) in nodes {
        wait_metric(addr, id, "rollcall_cluster_degraded", 0.0, CONVERGE);
    }
    let took = restarted.elapsed();
    let bound = TTL / 3 + Duration::from_secs(2);
    eprintln!(
        "converged {:.0}ms after redis returned (bound {}ms)",
        ms_f(took),
        ms(bound)
    );
    assert!(
        took <= bound + Duration::from_millis(1000),
        "views converged and degraded cleared {}ms after redis returned; the contract says \
         within {}ms",
        ms(took),
        ms(bound)
    );
    // olga gets a fresh state and ends up seeing the union.
    let states_before = olga.states.len();
    olga.wait_members(&["olga", "bob", "carol", "dave"], STEP);
    if olga.states.len() == states_before {
        let deadline = Instant::now() + STEP;
        while olga.states.len() == states_before {
            let remaining = deadline.saturating_duration_since(Instant::now());
            assert!(
                olga.recv(remaining).is_some(),
                "olga got no fresh state after redis returned; events {:?}",
                olga.events
            );
        }
        olga.wait_members(&["olga", "bob", "carol", "dave"], STEP);
    }
    assert!(a.is_running() && b.is_running());
}

#[test]
fn a_node_shutting_down_announces_its_users_leaving_with_shutdown() {
    let Some(redis) = redis::start_or_skip("a_node_shutting_down_announces_shutdown") else {
        return;
    };
    let a = node(&redis, "a", &[]);
    let mut b = node(&redis, "b", &["--shutdown-timeout", "2s"]);
    let nodes = [("a", a.addr()), ("b", b.addr())];

    let mut olga = Member::join(a.addr(), "olga", "room");
    let mut bob = quiet(b.addr(), "bob", "room");
    olga.expect_event("join", "bob", STEP);
    let _carol_a = quiet(a.addr(), "carol", "room");
    olga.expect_event("join", "carol", STEP);
    let mut carol_b = quiet(b.addr(), "carol", "room");
    wait_view(
        &nodes,
        "room",
        &[("olga", 1), ("bob", 1), ("carol", 2)],
        CONVERGE,
    );

    b.signal("TERM");
    for client in [&mut bob, &mut carol_b] {
        let close = client.expect_closed(STEP);
        assert_eq!(
            close.as_ref().map(|(code, _)| *code),
            Some(1001),
            "{close:?}"
        );
    }
    olga.expect_leave("bob", "shutdown", STEP);
    let status = b.wait_exit(STEP).expect("node b exits after its shutdown");
    assert!(status.success(), "node b: {status}\n{}", b.stderr());

    only_bob_left(&a, &mut olga, "shutdown");
}

/// After node b went away: carol, who also had a connection on a, is still a member with
/// that one connection and was never announced as leaving; bob left once with `reason`; and
/// a's channel still works (dave's join reaches olga). Events came in seq order.
#[track_caller]
fn only_bob_left(a: &Server, olga: &mut Member, reason: &str) {
    wait_view(
        &[("a", a.addr())],
        "room",
        &[("olga", 1), ("carol", 1)],
        CONVERGE,
    );
    let _dave = quiet(a.addr(), "dave", "room");
    olga.expect_event("join", "dave", STEP);
    assert_eq!(
        olga.summary(),
        vec![
            ev("join", "bob", ""),
            ev("join", "carol", ""),
            ev("leave", "bob", reason),
            ev("join", "dave", ""),
        ]
    );
    olga.assert_seqs_consecutive();
}

/// The TCP connections process `pid` holds established on local port `port`: their peers'
/// ports (Linux: the process's socket inodes in /proc/PID/fd, matched in /proc/net/tcp).
fn accepted_peer_ports(pid: u32, port: u16) -> BTreeSet<u16> {
    let mut inodes = BTreeSet::new();
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for entry in dir.flatten() {
            if let Ok(target) = std::fs::read_link(entry.path()) {
                let target = target.to_string_lossy().into_owned();
                if let Some(inode) = target
                    .strip_prefix("socket:[")
                    .and_then(|rest| rest.strip_suffix(']'))
                {
                    inodes.insert(inode.to_string());
                }
            }
        }
    }
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let port_of = |hex_addr: &str| {
        hex_addr
            .rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok())
    };
    let mut peers = BTreeSet::new();
    for line in table.lines().skip(1) {
        // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 10 || fields[3] != "01" || !inodes.contains(fields[9]) {
            continue;
        }
        if port_of(fields[1]) == Some(port) {
            peers.extend(port_of(fields[2]));
        }
    }
    peers
}

#[test]
fn two_processes_share_one_port_with_reuse_port() {
    let Some(redis) = redis::start_or_skip("two_processes_share_one_port_with_reuse_port") else {
        return;
    };
    let mut a = node(&redis, "a", &["--reuse-port"]);
    let shared = a.addr();
    let shared_text = shared.to_string();
    let mut b = node(&redis, "b", &["--reuse-port", "--listen", &shared_text]);
    assert_eq!(b.addr(), shared, "b listens on a's address");
    assert!(a.is_running() && b.is_running());

    // Clients through the shared port until both processes hold some (at least 6).
    let mut members: Vec<Member> = Vec::new();
    let mut ports: Vec<u16> = Vec::new();
    let mut on_a = BTreeSet::new();
    let mut on_b = BTreeSet::new();
    while members.len() < 6 || on_a.is_empty() || on_b.is_empty() {
        assert!(
            members.len() < 40,
            "40 connections through {shared}, all to one process: a {on_a:?}, b {on_b:?}"
        );
        let mut member = Member::join(shared, &format!("u{}", members.len()), "room");
        let client_port = member
            .client
            .stream()
            .local_addr()
            .expect("client address")
            .port();
        on_a = accepted_peer_ports(a.pid(), shared.port());
        on_b = accepted_peer_ports(b.pid(), shared.port());
        assert!(
            on_a.contains(&client_port) != on_b.contains(&client_port),
            "client port {client_port} accepted by exactly one process: a {on_a:?}, b {on_b:?}"
        );
        members.push(member);
        ports.push(client_port);
    }
    let users: Vec<String> = members.iter().map(|m| m.user.clone()).collect();
    let user_refs: Vec<&str> = users.iter().map(String::as_str).collect();
    eprintln!(
        "{} clients: {} accepted by a (pid {}), {} by b (pid {})",
        members.len(),
        on_a.len(),
        a.pid(),
        on_b.len(),
        b.pid()
    );

    // A member on each process sees everyone: both nodes have the whole view.
    let i_a = ports
        .iter()
        .position(|p| on_a.contains(p))
        .expect("a member on a");
    let i_b = ports
        .iter()
        .position(|p| on_b.contains(p))
        .expect("a member on b");
    members[i_a].wait_members(&user_refs, CONVERGE);
    members[i_b].wait_members(&user_refs, CONVERGE);

    // Every answer through the shared port, whichever process gives it, lists every user.
    let want: BTreeMap<String, u64> = users.iter().map(|u| (u.clone(), 1)).collect();
    let deadline = Instant::now() + CONVERGE;
    while channel_view(shared, "room") != want {
        assert!(
            Instant::now() < deadline,
            "GET /presence/room never showed {want:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
    for i in 0..10 {
        let view = channel_view(shared, "room");
        assert_eq!(view, want, "answer {i} through the shared port");
        let all = http_get(shared, "/presence").json();
        assert_eq!(
            conns_of(&all["channels"]["room"]),
            want,
            "answer {i}: {all}"
        );
    }
    assert!(a.is_running() && b.is_running(), "both processes still run");
}

#[test]
fn idle_connections_cause_no_redis_traffic() {
    let Some(redis) = redis::start_or_skip("idle_connections_cause_no_redis_traffic") else {
        return;
    };
    let a = node(
        &redis,
        "a",
        &["--heartbeat-interval", "1s", "--heartbeat-timeout", "3s"],
    );
    const N: usize = 50;
    let mut clients: Vec<Client> = (0..N)
        .map(|i| quiet(a.addr(), &format!("idle{i}"), "idle"))
        .collect();
    // The cluster-wide view counts them all once the joins went through Redis.
    let deadline = Instant::now() + CONVERGE;
    loop {
        let count = http_get(a.addr(), "/presence/idle?count").json();
        if count["users"] == N && count["connections"] == N {
            break;
        }
        assert!(Instant::now() < deadline, "{count}");
        thread::sleep(Duration::from_millis(50));
    }

    // Let the joins' own commands reach Redis: its command total stops moving (bounded).
    let deadline = Instant::now() + STEP;
    let mut last = redis.commands_total();
    loop {
        for client in clients.iter_mut() {
            assert!(matches!(
                client.next(Duration::from_millis(1)),
                Incoming::Timeout
            ));
        }
        let now = redis.commands_total();
        if now == last || Instant::now() >= deadline {
            break;
        }
        last = now;
    }

    let series = "rollcall_cluster_redis_commands_total";
    let node_before = scrape(a.addr()).get(series);
    let redis_before = redis.commands_total();
    let pings_before: u32 = clients.iter().map(|c| c.pings_seen).sum();
    let started = Instant::now();
    // 3 s of idleness: the clients only answer the heartbeat's pings.
    while started.elapsed() < Duration::from_secs(3) {
        for client in clients.iter_mut() {
            match client.next(Duration::from_millis(1)) {
                Incoming::Timeout => {}
                other => panic!("an idle client got {other:?}"),
            }
        }
    }
    let node_after = scrape(a.addr()).get(series);
    let redis_after = redis.commands_total();
    let window = started.elapsed();
    let pings: u32 = clients.iter().map(|c| c.pings_seen).sum::<u32>() - pings_before;

    // One refresh per TTL/3, plus two for the window's edges, a few commands each. Redis also
    // counts the commands a script runs (INFO commandstats, total_commands_processed), so its
    // side gets a little more per refresh than the node's own count.
    const NODE_COMMANDS_PER_REFRESH: f64 = 5.0;
    const REDIS_COMMANDS_PER_REFRESH: f64 = 8.0;
    let refreshes = (window.as_secs_f64() / (TTL / 3).as_secs_f64()).floor() + 2.0;
    let node_allowed = refreshes * NODE_COMMANDS_PER_REFRESH;
    let redis_allowed = refreshes * REDIS_COMMANDS_PER_REFRESH;
    let node_sent = node_after - node_before;
    let redis_ran = redis_after.saturating_sub(redis_before) as f64;
    eprintln!(
        "{}ms idle with {N} connections, {pings} pings: node sent {node_sent} commands \
         (allowed {node_allowed}), redis ran {redis_ran} (allowed {redis_allowed})",
        ms(window)
    );
    assert!(
        pings as usize >= N,
        "the heartbeat pinged each idle connection during the window: {pings} pings"
    );
    // The window is long enough to tell: one command per ping answered would exceed the bound.
    assert!(
        f64::from(pings) > redis_allowed,
        "{pings} pings in {}ms: too few to tell per-connection traffic from {redis_allowed} \
         commands of refreshes",
        ms(window)
    );
    assert!(
        node_sent >= 1.0 && redis_ran >= 1.0,
        "the node refreshed during {}ms: sent {node_sent}, redis ran {redis_ran}",
        ms(window)
    );
    assert!(
        node_sent <= node_allowed,
        "node sent {node_sent} commands in {}ms with {N} idle connections; refreshes allow \
         {node_allowed}",
        ms(window)
    );
    assert!(
        redis_ran <= redis_allowed,
        "redis ran {redis_ran} commands in {}ms with {N} idle connections; refreshes allow \
         {redis_allowed}: {:?}",
        ms(window),
        redis.command_calls()
    );
    // Nobody timed out: the heartbeat kept them, without Redis.
    let count = http_get(a.addr(), "/presence/idle?count").json();
    assert_eq!(count["users"], N, "{count}");
    assert_eq!(scrape(a.addr()).closed("timeout"), 0.0);
}

#[test]
fn a_bad_redis_url_exits_2_and_a_single_node_has_no_cluster_metrics() {
    for url in [
        "http://127.0.0.1:6379",
        "redis://127.0.0.1:notaport",
        "nonsense",
    ] {
        let run = run_cli(
            &["--listen", "127.0.0.1:0", "--redis", url],
            Duration::from_secs(5),
        );
        assert_eq!(run.code, Some(2), "--redis {url}: {run:?}");
        assert!(run.stderr.contains("--redis"), "--redis {url}: {run:?}");
        assert!(
            !run.stderr.contains("unknown option"),
            "--redis is a known flag: {run:?}"
        );
    }
    let single = Server::start(&[]);
    let metrics = scrape(single.addr());
    assert!(
        !metrics
            .samples
            .keys()
            .any(|k| k.starts_with("rollcall_cluster_")),
        "no cluster series without --redis:\n{}",
        metrics.response.body
    );
}

// ---------------------------------------------------------------------------------------------
// Pusher apps across nodes
// ---------------------------------------------------------------------------------------------

const PUSHER_APP: &str = "77:cluster-key:cluster-secret";

/// A raw Pusher client of the test app on `addr`.
struct PusherClient {
    client: Client,
    socket: String,
}

impl PusherClient {
    #[track_caller]
    fn connect(addr: SocketAddr) -> PusherClient {
        let mut client = Client::connect_target(addr, "/app/cluster-key?protocol=7");
        let established = client.recv_json(STEP);
        assert_eq!(
            established["event"], "pusher:connection_established",
            "{established}"
        );
        let data = nested(&established);
        let socket = data["socket_id"].as_str().expect("socket_id").to_owned();
        PusherClient { client, socket }
    }

    /// Subscribes to `channel` as `user` (signed as the app's backend signs) and returns
    /// the subscription's answer.
    #[track_caller]
    fn join(&mut self, channel: &str, user: &str) -> Value {
        let data = json!({"user_id": user, "user_info": {"name": user}}).to_string();
        let text = format!("{}:{channel}:{data}", self.socket);
        let auth = format!("cluster-key:{}", pusher_auth::sign("cluster-secret", &text));
        self.client
            .send_json(&json!({"event": "pusher:subscribe", "data": {
            "channel": channel, "auth": auth, "channel_data": data}}));
        let reply = self.client.recv_json(STEP);
        assert_eq!(
            reply["event"], "pusher_internal:subscription_succeeded",
            "{reply}"
        );
        reply
    }

    /// The next message whose event is `event`, within `timeout` (others are skipped).
    #[track_caller]
    fn wait_event(&mut self, event: &str, timeout: Duration) -> Value {
        let (found, _) = self
            .client
            .wait_for(timeout, event, |m| m["event"] == event);
        found
    }
}

/// A Pusher internal event's `data`: a JSON document in a string.
fn nested(message: &Value) -> Value {
    serde_json::from_str(message["data"].as_str().unwrap_or_default()).unwrap_or(Value::Null)
}

/// A REST API request to node `addr`, signed as the SDKs sign (`body` for a POST).
#[track_caller]
fn pusher_rest(addr: SocketAddr, path: &str, body: Option<&Value>) -> HttpResponse {
    let app = rollcall::pusher::App::parse(PUSHER_APP).expect("app");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let body = body.map(Value::to_string);
    let bytes = body.as_deref().unwrap_or_default().as_bytes();
    let method = if body.is_some() { "POST" } else { "GET" };
    let query = rollcall::pusher::rest::signed_query(&app, method, path, &[], bytes, now);
    let target = format!("{path}?{query}");
    match body {
        Some(_) => http_post(addr, &target, &[], bytes),
        None => http_get(addr, &target),
    }
}

/// Waits until node `addr` lists exactly `users` in presence-room (the cluster converged).
#[track_caller]
fn wait_pusher_users(addr: SocketAddr, users: &[&str]) {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let listed = pusher_rest(addr, "/apps/77/channels/presence-room/users", None).json();
        let mut ids: Vec<String> = listed["users"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|user| user["id"].as_str().map(str::to_owned))
            .collect();
        ids.sort();
        if ids == users {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "users {ids:?}, expected {users:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Issue 17: presence of a Pusher app across nodes is per user (a user on two nodes is one
/// member, announced once and removed once), includes the subscriber in its own snapshot,
/// carries REST and client events to every node with socket_id exclusion wherever the socket
/// is, and a killed node's users leave within the node TTL.
#[test]
fn pusher_presence_across_nodes_is_per_user() {
    let Some(redis) = redis::start_or_skip("pusher_presence_across_nodes_is_per_user") else {
        return;
    };
    let flags = ["--pusher-app", PUSHER_APP];
    let mut a = node(&redis, "a", &flags);
    let b = node(&redis, "b", &flags);

    let mut bob = PusherClient::connect(b.addr());
    bob.join("presence-room", "bob");
    wait_pusher_users(a.addr(), &["bob"]);
    let mut ann = PusherClient::connect(a.addr());
    let snapshot = nested(&ann.join("presence-room", "ann"));
    let mut ids = snapshot["presence"]["ids"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ids.sort_by_key(|id| id.to_string());
    assert_eq!(
        ids,
        [json!("ann"), json!("bob")],
        "the snapshot holds ann herself: {snapshot}"
    );
    let added = bob.wait_event("pusher_internal:member_added", CONVERGE);
    assert_eq!(nested(&added)["user_id"], "ann");

    // Ann's second tab, on the other node: no news for anyone, nor for ann herself.
    let mut ann2 = PusherClient::connect(b.addr());
    ann2.join("presence-room", "ann");
    let mut carol = PusherClient::connect(a.addr());
    carol.join("presence-room", "carol");
    for client in [&mut bob, &mut ann, &mut ann2] {
        let next = client.wait_event("pusher_internal:member_added", CONVERGE);
        assert_eq!(
            nested(&next)["user_id"],
            "carol",
            "ann's second tab was announced: {next}"
        );
    }

    // A REST event on a, skipping bob (on b): ann, ann2 and carol hear it, bob does not.
    let body = json!({"name": "news", "channel": "presence-room", "data": "{\"n\":1}", "socket_id": bob.socket});
    let response = pusher_rest(a.addr(), "/apps/77/events", Some(&body));
    assert_eq!(response.status, 200, "{response:?}");
    for client in [&mut ann, &mut ann2, &mut carol] {
        let event = client.wait_event("news", CONVERGE);
        assert_eq!(event["data"], "{\"n\":1}", "{event}");
    }
    // A client event from carol (on a) reaches b, with her user_id; then bob's next event
    // is that one: the REST event skipped him.
    carol
        .client
        .send_json(&json!({"event": "client-typing", "channel": "presence-room", "data": {}}));
    let (typing, skipped) = bob
        .client
        .wait_for(CONVERGE, "client-typing", |m| m["event"] == "client-typing");
    assert_eq!(typing["user_id"], "carol", "{typing}");
    assert!(
        skipped.iter().all(|m| m["event"] != "news"),
        "bob was skipped by socket_id: {skipped:?}"
    );

    // Node a dies: carol (only there) leaves within the TTL; ann stays (her tab on b).
    let killed = Instant::now();
    a.signal("KILL");
    assert!(
        a.wait_exit(STEP).is_some(),
        "node a still runs after SIGKILL"
    );
    let (removed, others) = bob.client.wait_for(CONVERGE, "member_removed", |m| {
        m["event"] == "pusher_internal:member_removed"
    });
    assert_eq!(nested(&removed)["user_id"], "carol", "{removed}");
    assert!(
        killed.elapsed() <= TTL + Duration::from_millis(800),
        "carol removed {}ms after the kill",
        ms(killed.elapsed())
    );
    assert!(
        others
            .iter()
            .all(|m| m["event"] != "pusher_internal:member_removed"),
        "ann was removed too: {others:?}"
    );
    // Ann's last tab goes: bob hears it once.
    ann2.client.close();
    let removed = bob.wait_event("pusher_internal:member_removed", CONVERGE);
    assert_eq!(nested(&removed)["user_id"], "ann");
    bob.client.expect_silence(Duration::from_millis(300));
    drop(b);
}

/// Members joining on node a reach an `events=diff` client on node b as coalesced diffs
/// with chained seqs: the first change of a quiet channel at once, the rest of the window in
/// one diff, where a join and leave on a cancel out.
#[test]
fn diffs_cross_nodes_coalesced_with_chained_seqs() {
    let Some(redis) = redis::start_or_skip("diffs_cross_nodes") else {
        return;
    };
    // A window long enough for every note of the burst to cross Redis inside it.
    let a = node(&redis, "a", &["--diff-interval", "1s"]);
    let b = node(&redis, "b", &["--diff-interval", "1s"]);
    let (mut dora, _) = Client::connect_welcomed(b.addr(), "user=dora&channel=room&events=diff");
    dora.expect_type("state");
    // In a cluster the joiner's state is read before its own note comes back (§15): its join
    // reaches it as a diff, which opens a window on b; let it close, so the channel is quiet.
    let own = dora.expect_type("diff");
    assert_eq!(own["joins"], json!({"dora": {}}), "{own}");
    let start = seq_of(&own);
    dora.expect_silence(Duration::from_millis(1_200));

    let _u1 = quiet(a.addr(), "u1", "room");
    let first = dora.expect_type("diff");
    assert_eq!(
        (&first["from"], &first["seq"]),
        (&json!(start), &json!(start + 1)),
        "{first}"
    );
    assert_eq!(
        first["joins"],
        json!({"u1": {}}),
        "at once: the channel was quiet"
    );

    let _u2 = quiet(a.addr(), "u2", "room");
    let u3 = quiet(a.addr(), "u3", "room");
    u3.close();
    let second = dora.recv_json(Duration::from_secs(3));
    assert_eq!(
        second,
        json!({"type": "diff", "channel": "room", "from": start + 1, "seq": start + 4,
            "joins": {"u2": {}}, "leaves": {}, "updates": {}}),
        "u3 came and went within the window; the seq still counts its join and leave"
    );
    dora.expect_silence(Duration::from_millis(1_200));
}
