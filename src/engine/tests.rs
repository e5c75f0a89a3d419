//! The engine in virtual time: inputs with a `now`, effects checked, no sockets.
//!
//! A [`Harness`] owns an engine and a virtual clock. Every `Deliver` is parsed and filed in
//! the inbox of each recipient; every `Arm` is kept until [`Harness::advance`] passes its
//! deadline and feeds it back; every other effect (Ping, Close, Drop, GoingAway) is kept in
//! order for [`Harness::effects`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use serde_json::{json, Value};

use super::{Actions, Effect, Engine, Handler, Opened, Presence, Recipients, Timer};
use crate::config::Config;
use crate::dialect::{Dialect, Frame};
use crate::ids::Key;
use crate::model::{Counts, EventsMode, Json, LeaveReason};
use crate::rate::RateLimit;
use crate::roster::ConnId;
use crate::token;
use crate::wheel::Millis;

/// Unix milliseconds at the loop's time 0.
const ORIGIN_MS: u64 = 1_700_000_000_000;
/// The same, in Unix seconds (token times).
#[cfg(feature = "tokens")]
const ORIGIN_S: u64 = ORIGIN_MS / 1000;
const SECRET: &str = "test-secret";
const MAX_META: usize = 1024;

struct Harness {
    engine: Engine,
    now: Millis,
    /// Deadlines armed and not yet fed back, in the order they were armed.
    armed: Vec<(Millis, Timer)>,
    inboxes: HashMap<ConnId, Vec<Value>>,
    /// Every `Deliver` since the last look, as the engine made it.
    deliveries: Vec<(Recipients, String)>,
    /// Every other effect but `Arm`, in order.
    effects: Vec<Effect>,
    next_slot: u32,
}

impl Harness {
    fn new() -> Harness {
        Harness::with(Config::default())
    }

    fn with(config: Config) -> Harness {
        config.validate().expect("a valid test config");
        let mut harness = Harness {
            engine: Engine::new(&config, ORIGIN_MS, 7, None),
            now: 0,
            armed: Vec::new(),
            inboxes: HashMap::new(),
            deliveries: Vec::new(),
            effects: Vec::new(),
            next_slot: 0,
        };
        harness.pump();
        harness
    }

    /// Opens a v1 connection of `user` with URL-like options: `channel=C`, `watch=C`,
    /// `events=MODE`, `admin`, `token=JWT` (joined by `&`).
    fn open(&mut self, user: &str, query: &str) -> ConnId {
        self.open_as(Dialect::V1, user, query)
    }

    fn open_as(&mut self, dialect: Dialect, user: &str, query: &str) -> ConnId {
        let id = Key {
            slot: self.next_slot,
            generation: 0,
        };
        self.next_slot += 1;
        self.open_at(id, dialect, user, query);
        id
    }

    fn open_at(&mut self, id: ConnId, dialect: Dialect, user: &str, query: &str) {
        let mut opened = Opened {
            user: user.to_owned(),
            dialect,
            events: EventsMode::All,
            channels: Vec::new(),
            default_channel: true,
            meta: None,
            watch: Vec::new(),
            admin: false,
            claims: None,
            #[cfg(feature = "pusher")]
            pusher_app: (dialect == Dialect::Pusher).then_some(0),
            #[cfg(not(feature = "pusher"))]
            pusher_app: None,
        };
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "channel" => opened.channels.push(value.to_owned()),
                "watch" => opened.watch.push(value.to_owned()),
                "events" => opened.events = EventsMode::parse(value).expect("an events mode"),
                "admin" => opened.admin = true,
                "token" => {
                    let unix_ms = self.engine.unix_millis(self.now);
                    let claims = token::verify(value, SECRET.as_bytes(), unix_ms, 5, MAX_META)
                        .expect("a valid test token");
                    assert_eq!(claims.subject, user, "the token names the user");
                    opened.claims = Some(claims);
                }
                other => panic!("unknown option {other}"),
            }
        }
        self.engine.open(id, opened, self.now);
        self.pump();
    }

    /// The connection sends one v1 text frame.
    fn command(&mut self, id: ConnId, text: &str) {
        let decoded = Dialect::V1.decode(Frame::Text(text), MAX_META);
        self.engine.on_frame(id, decoded, self.now);
        self.pump();
    }

    /// The connection ended (the socket layer noticed); returns what the engine reported.
    fn end(&mut self, id: ConnId, reason: LeaveReason) -> Option<LeaveReason> {
        let reported = self.engine.end(id, reason, self.now);
        self.pump();
        reported
    }

    fn heard(&mut self, id: ConnId) {
        self.engine.heard(id, self.now);
        self.pump();
    }

    /// Moves the clock `ms` on, feeding every deadline that falls due, in deadline order
    /// (in arming order within one time).
    fn advance(&mut self, ms: Millis) {
        let until = self.now + ms;
        while let Some(index) = self.next_due(until) {
            let (at, timer) = self.armed.remove(index);
            self.now = self.now.max(at);
            self.engine.on_timer(timer, self.now);
            self.pump();
        }
        self.now = until;
    }

    fn next_due(&self, until: Millis) -> Option<usize> {
        let due = self
            .armed
            .iter()
            .enumerate()
            .filter(|(_, (at, _))| *at <= until);
        due.min_by_key(|(index, (at, _))| (*at, *index))
            .map(|(index, _)| index)
    }

    /// The times `timer` is armed for (not yet fed back).
    fn deadlines(&self, timer: Timer) -> Vec<Millis> {
        let armed = self.armed.iter().filter(|(_, armed)| *armed == timer);
        armed.map(|(at, _)| *at).collect()
    }

    /// Files the engine's effects.
    fn pump(&mut self) {
        let mut effects = Vec::new();
        self.engine.take_effects(self.now, &mut effects);
        for effect in effects {
            match effect {
                Effect::Deliver { to, text } => {
                    let value: Value = serde_json::from_str(&text).expect("a JSON delivery");
                    for id in to.as_slice() {
                        self.inboxes.entry(*id).or_default().push(value.clone());
                    }
                    self.deliveries.push((to, text));
                }
                Effect::Arm { timer, at } => self.armed.push((at, timer)),
                other => self.effects.push(other),
            }
        }
    }

    /// What `id` received since the last look.
    fn received(&mut self, id: ConnId) -> Vec<Value> {
        std::mem::take(self.inboxes.entry(id).or_default())
    }

    /// The effects other than `Deliver` and `Arm` since the last look.
    fn effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// The `Deliver` effects since the last look.
    fn deliveries(&mut self) -> Vec<(Recipients, String)> {
        std::mem::take(&mut self.deliveries)
    }

    /// Forgets everything received and done so far (after a test's setup).
    fn clear(&mut self) {
        self.inboxes.clear();
        self.deliveries.clear();
        self.effects.clear();
    }

    /// Asserts that none of `ids` received anything since the last look.
    fn assert_silent(&mut self, ids: &[ConnId]) {
        for &id in ids {
            assert_eq!(
                self.received(id),
                Vec::<Value>::new(),
                "conn {id} got something"
            );
        }
    }
}

fn state(channel: &str, seq: u64, users: Value) -> Value {
    json!({"type": "state", "channel": channel, "seq": seq, "users": users})
}

fn join(channel: &str, user: &str, seq: u64) -> Value {
    json!({"type": "join", "channel": channel, "user": user, "meta": {}, "seq": seq})
}

fn leave(channel: &str, user: &str, reason: &str, seq: u64) -> Value {
    json!({"type": "leave", "channel": channel, "user": user, "reason": reason, "seq": seq})
}

fn update(channel: &str, user: &str, meta: Value, seq: u64) -> Value {
    json!({"type": "update", "channel": channel, "user": user, "meta": meta, "seq": seq})
}

fn count(channel: &str, users: u64, connections: u64, seq: u64) -> Value {
    json!({"type": "count", "channel": channel, "users": users, "connections": connections, "seq": seq})
}

fn error(code: &str, message: &str) -> Value {
    json!({"type": "error", "code": code, "message": message})
}

fn with_ref(mut message: Value, reference: Value) -> Value {
    message["ref"] = reference;
    message
}

/// A user present through `conns` connections with no meta.
fn member(conns: u64) -> Value {
    json!({"conns": conns, "meta": {}})
}

/// An HS256 token of `user` expiring `ttl_s` seconds after the loop's origin.
#[cfg(feature = "tokens")]
fn token_of(user: &str, ttl_s: u64, extra: Value) -> String {
    let mut claims = json!({"sub": user, "exp": ORIGIN_S + ttl_s});
    if let (Some(claims), Value::Object(extra)) = (claims.as_object_mut(), extra) {
        claims.extend(extra);
    }
    token::sign(&claims, SECRET.as_bytes())
}

/// A server requiring tokens, with a heartbeat slow enough not to matter.
#[cfg(feature = "tokens")]
fn token_config() -> Config {
    Config {
        token_secret: Some(SECRET.to_owned()),
        heartbeat_interval: Duration::from_secs(600),
        heartbeat_timeout: Duration::from_secs(1200),
        ..Config::default()
    }
}

fn data(value: Value) -> Json {
    Json::from_value(&value)
}

// --- join -----------------------------------------------------------------------------------

#[test]
fn a_join_gets_the_state_and_the_others_get_a_join_with_the_next_seq() {
    let mut h = Harness::new();
    let a = h.open("alice", "channel=room");
    assert_eq!(
        h.received(a),
        [state("room", 1, json!({"alice": member(1)}))]
    );
    let b = h.open("bob", "channel=room");
    assert_eq!(
        h.received(b),
        [state(
            "room",
            2,
            json!({"alice": member(1), "bob": member(1)})
        )]
    );
    assert_eq!(h.received(a), [join("room", "bob", 2)]);
}

/// `members` and the snapshot list a channel's members by user id, whatever order they
/// joined in (the host's queries and `GET /presence` promise it).
#[test]
fn members_come_by_user_id() {
    let mut h = Harness::new();
    for user in ["zoe", "ada", "mia"] {
        h.open(user, "channel=room");
    }
    let users = |members: &[crate::model::Member]| -> Vec<String> {
        members.iter().map(|member| member.user.clone()).collect()
    };
    assert_eq!(users(&h.engine.members("room")), ["ada", "mia", "zoe"]);
    let snapshot = h.engine.snapshot();
    assert_eq!(
        users(&snapshot.channels["room"].members),
        ["ada", "mia", "zoe"]
    );
}

#[test]
fn a_join_command_with_meta_replies_with_its_ref() {
    let mut h = Harness::new();
    let a = h.open("alice", "channel=lobby");
    h.clear();
    h.command(
        a,
        r#"{"type":"join","channel":"dev","meta":{"role":"lead"},"ref":1}"#,
    );
    let users = json!({"alice": {"conns": 1, "meta": {"role": "lead"}}});
    assert_eq!(h.received(a), [with_ref(state("dev", 1, users), json!(1))]);
}

#[test]
fn joining_again_replies_again_and_tells_nobody() {
    let mut h = Harness::new();
    let a = h.open("alice", "channel=room");
    let b = h.open("bob", "channel=room");
    h.clear();
    h.command(a, r#"{"type":"join","channel":"room","ref":"again"}"#);
    let users = json!({"alice": member(1), "bob": member(1)});
    assert_eq!(
        h.received(a),
        [with_ref(state("room", 2, users), json!("again"))]
    );
    h.assert_silent(&[b]);
}

#[test]
fn a_second_connection_of_a_present_user_is_silent_until_the_last_one_goes() {
    let mut h = Harness::new();
    let b = h.open("bob", "channel=room");
    h.clear();
    let a1 = h.open("alice", "channel=room");
    let a2 = h.open("alice", "channel=room");
    assert_eq!(h.received(b), [join("room", "alice", 2)]);
    assert_eq!(
        h.received(a2),
        [state(
            "room",
            2,
            json!({"alice": member(2), "bob": member(1)})
        )]
    );
    assert_eq!(h.end(a1, LeaveReason::Closed), Some(LeaveReason::Closed));
    h.assert_silent(&[b, a2]);
    h.end(a2, LeaveReason::Closed);
    assert_eq!(h.received(b), [leave("room", "alice", "closed", 3)]);
}

#[test]
fn a_join_with_a_new_meta_by_another_connection_is_an_update_for_the_others() {
    let mut h = Harness::new();
    let a1 = h.open("alice", "channel=room");
    let b = h.open("bob", "channel=room");
    let a2 = h.open("alice", "channel=lobby");
    h.clear();
    h.command(a2, r#"{"type":"join","channel":"room","meta":{"s":2}}"#);
    let users = json!({"alice": {"conns": 2, "meta": {"s": 2}}, "bob": member(1)});
    assert_eq!(h.received(a2), [state("room", 3, users)]);
    let expected = update("room", "alice", json!({"s": 2}), 3);
    assert_eq!(h.received(a1), vec![expected.clone()]);
    assert_eq!(h.received(b), [expected]);
}

#[test]
fn a_count_mode_join_gets_a_count_and_is_announced_as_present() {
    let mut h = Harness::new();
    let a = h.open("alice", "channel=room");
    h.clear();
    let c = h.open("carol", "channel=room&events=count");
    assert_eq!(h.received(c), [count("room", 2, 2, 2)]);
    assert_eq!(h.received(a), [join("room", "carol", 2)]);
    h.command(
        c,
        r#"{"type":"join","channel":"radio","events":"count","ref":"r"}"#,
    );
    assert_eq!(
        h.received(c),
        [with_ref(count("radio", 1, 1, 1), json!("r"))]
    );
}

#[test]
fn a_none_mode_join_gets_nothing_but_is_announced() {
    let mut h = Harness::new();
    let a = h.open("alice", "channel=room");
    h.clear();
    let b = h.open("bob", "channel=room&events=none");
    h.command(
        b,
        r#"{"type":"join","channel":"quiet","events":"none","ref":1}"#,
    );
    assert_eq!(h.received(b), Vec::<Value>::new());
    assert_eq!(h.received(a), [join("room", "bob", 2)]);
    assert_eq!(
        h.engine.channel_counts_named("quiet"),
        Counts {
            users: 1,
            connections: 1,
            seq: 1
        }
    );
}

#[test]
fn a_join_command_without_events_uses_the_url_mode() {
    let mut h = Harness::new();
    let c = h.open("carol", "channel=room&events=count");
    h.clear();
    h.command(c, r#"{"type":"join","channel":"other"}"#);
    assert_eq!(h.received(c), [count("other", 1, 1, 1)]);
}

#[test]
fn a_connection_that_asks_for_nothing_joins_the_default_channel() {
    let mut h = Harness::new();
    let a = h.open("alice", "");
    assert_eq!(
        h.received(a),
        [state("lobby", 1, json!({"alice": member(1)}))]
    );

    let mut h = Harness::with(Config {
        default_channel: "hall".to_owned(),
        ..Config::default()
    });
    let a = h.open("alice", "");
    assert_eq!(
        h.received(a),
        [state("hall", 1, json!({"alice": member(1)}))]
    );
    assert_eq!(h.engine.roster().find("lobby"), None);
}

#[test]
fn a_connection_that_only_watches_joins_no_default_channel() {
    let mut h = Harness::new();
    let w = h.open("dash", "watch=room");
    assert_eq!(h.received(w), [state("room", 0, json!({}))]);
    assert_eq!(h.engine.roster().find("lobby"), None);
    assert_eq!(h.engine.roster().users_online(), 0);
}

// --- leave, update, who ---------------------------------------------------------------------

#[test]
fn leave_tells_the_others_with_reason_left_and_a_second_leave_is_not_joined() {
    let mut h = Harness::new();
    let a = h.open("alice", "channel=room");
    let b = h.open("bob", "channel=room");
    h.clear();
    h.command(b, r#"{"type":"leave","channel":"room"}"#);
    assert_eq!(h.received(a), [leave("room", "bob", "left", 3)]);
    h.assert_silent(&[b]);
    h.command(b, r#"{"type":"leave","channel":"room","ref":2}"#);
    let refused = with_ref(error("not_joined", "not joined to channel room"), json!(2));
    assert_eq!(h.received(b), [refused]);
    h.assert_silent(&[a]);
}

#[test]
fn leave_is_announced_at_once_even_with_a_leave_grace() {
    let mut h = Harness::with(Config {
        leave_grace: Duration::from_secs(5),
        ..Config::default()
    });
    let a = h.open("alice", "channel=room");
    let b = h.open("bob", "channel=room");
    h.clear();
    h.command(b, r#"{"type":"leave","channel":"room"}"#);
    assert_eq!(h.received(a), [leave("room", "bob", "left", 3)]);
    let graces = h
        .armed
        .iter()
        .filter(|(_, timer)| matches!(timer, Timer::Grace(_)));
    assert_eq!(graces.count(), 0, "no grace for an explicit leave");
}

#[test]
fn a_connection_that_ends_leaves_with_its_reason() {
    let mut h = Harness::new();
    let a = h.open("alice", "channel=room");
    let b = h.open("bob", "channel=room");
    h.clear();
    assert_eq!(
        h.end(b, LeaveReason::SlowConsumer),
        Some(LeaveReason::SlowConsumer)
    );
    assert_eq!(h.received(a), [leave("room", "bob", "slow_consumer", 3)]);
    assert_eq!(h.end(b, LeaveReason::Closed), None, "already ended");
}

#[test]
fn update_goes_to_every_all_subscriber_including_the_updater() {
    let mut h = Harness::new();
    let a = h.open("alice", "channel=room");
    let b = h.open("bob", "channel=room");
    let c = h.open("carol", "channel=room&events=count");
    h.clear();
    h.command(
        b,
        r#"{"type":"update","channel":"room","meta":{"status":"away"}}"#,
    );
    let expected = update("room", "bob", json!({"status": "away"}), 4);
    assert_eq!(h.received(a), vec![expected.clone()]);
    assert_eq!(h.received(b), [expected]);
    h.assert_silent(&[c]);
}

#[test]
fn an_identical_meta_changes_nothing() {
    let mut h = Harness::new();
    let a = h.open("alice", "channel=room");
    let b = h.open("bob", "channel=room");
    h.command(b, r#"{"type":"update","channel":"room","meta":{"s":1}}"#);
    h.clear();
    h.command(b, r#"{"type":"update","channel":"room","meta":{"s":1}}"#);
    h.assert_silent(&[a, b]);
    assert_eq!(h.engine.seq_named("room"), 3);
}

#[test]
fn meta_is_per_channel() {
    let mut h = Harness::new();
    let a = h.open("alice", "channel=room&channel=dev");
    h.command(a, r#"{"type":"update","channel":"room","meta":{"s":1}}"#);
    h.clear();
    h.command(a, r#"{"type":"who","channel":"dev"}"#);
    assert_eq!(
        h.received(a),
        [state("dev", 1, json!({"alice": member(1)}))]
    );
}

#[test]
fn update_of_a_channel_not_joined_is_not_joined() {
    let mut h = Harness::new();
    let a = h.open("alice", "channel=room");
    let b = h.open("bob", "channel=dev");
    h.clear();
    h.command(
        b,
        r#"{"type":"update","channel":"room","meta":{"s":1},"ref":"u"}"#,
    );
    let refused = with_ref(
        error("not_joined", "not joined to channel room"),
        json!("u"),
    );
    assert_eq!(h.received(b), [refused]);
    h.assert_silent(&[a]);
}

#[test]
fn who_replies_with_the_state_and_its_ref_or_not_joined() {
    let mut h = Harness::new();
    let a = h.open("alice", "channel=room&events=none");
    h.command(a, r#"{"type":"who","channel":"room","ref":"w1"}"#);
    let users = json!({"alice": member(1)});
    assert_eq!(
        h.received(a),
        [with_ref(state("room", 1, users), json!("w1"))]
    );
    h.command(a, r#"{"type":"who","channel":"dev","ref":"w2"}"#);
    let refused = with_ref(
        error("not_joined", "not joined to channel dev"),
        json!("w2"),
    );
    assert_eq!(h.received(a), [refused]);
}

// --- publish, ping, refused frames ----------------------------------------------------------

#[test]
fn a_publication_reaches_every_subscriber_whatever_its_mode_but_no_watcher() {
    let mut h = Harness::with(Config {
        client_publish: true,
        ..Config::default()
    });
    let a = h.open("alice", "channel=room");
    let b = h.open("bob", "channel=room&events=count");
    let c = h.open("carol", "channel=room&events=none");
    let w = h.open("dash", "watch=room");
    h.clear();
    h.command(
        a,
        r#"{"type":"publish","channel":"room","data":{"text":"hi"}}"#,
    );
    let message =
        json!({"type": "message", "channel": "room", "from": "alice", "data": {"text": "hi"}});
    for id in [a, b, c] {
        assert_eq!(h.received(id), vec![message.clone()]);
    }
    h.assert_silent(&[w]);
}

#[test]
fn publish_is_forbidden_without_client_publish_before_membership_is_checked() {
    let mut h = Harness::new();
    let a = h.open("alice", "channel=room");
    let b = h.open("bob", "channel=room");
    h.clear();
    let forbidden = error(
        "forbidden",
        "publishing is disabled on this server (--client-publish)",
    );
    h.command(a, r#"{"type":"publish","channel":"room","data":1}"#);
    assert_eq!(h.received(a), vec![forbidden.clone()]);
    h.command(
        a,
        r#"{"type":"publish","channel":"elsewhere","data":1,"ref":9}"#,
    );
    assert_eq!(h.received(a), [with_ref(forbidden, json!(9))]);
    h.assert_silent(&[b]);
}

#[test]
fn publish_to_a_channel_not_joined_is_not_joined() {
    let mut h = Harness::with(Config {
        client_publish: true,
        ..Config::default()
    });
    let a = h.open("alice", "channel=room");
    let b = h.open("bob", "channel=elsewhere");
    h.clear();
    h.command(a, r#"{"type":"publish","channel":"elsewhere","data":null}"#);
    assert_eq!(
        h.received(a),
        [error("not_joined", "not joined to channel elsewhere")]
    );
    h.assert_silent(&[b]);
}

#[test]
fn a_host_publication_comes_from_null_and_counts_its_recipients() {
    let mut h = Harness::new();
    let a = h.open("alice", "channel=room");
    let b = h.open("bob", "channel=room&events=none");
    let c = h.open("carol", "channel=other");
    h.clear();
    let delivered = h.engine.publish("room", None, &data(json!([1, 2])), h.now);
    h.pump();
    assert_eq!(delivered, 2);
    let message = json!({"type": "message", "channel": "room", "from": null, "data": [1, 2]});
    assert_eq!(h.received(a), vec![message.clone()]);
    assert_eq!(h.received(b), [message]);
    h.assert_silent(&[c]);
    assert_eq!(h.engine.publish("nowhere", None, &data(json!(1)), h.now), 0);
}

#[test]
fn ping_gets_a_pong_with_its_id_and_ref() {
    let mut h = Harness::new();
    let a = h.open("alice", "");
    h.clear();
    h.command(a, r#"{"type":"ping","id":42,"ref":"p"}"#);
    assert_eq!(
        h.received(a),
        [json!({"type": "pong", "id": 42, "ref": "p"})]
    );
    h.command(a, r#"{"type":"ping"}"#);
    assert_eq!(h.received(a), [json!({"type": "pong", "id": null})]);
}

#[test]
fn refused_frames_get_an_error_and_the_connection_stays() {
    let mut h = Harness::new();
    let a = h.open("alice", "");
    h.clear();
    let binary = Dialect::V1.decode(Frame::Binary(b"\x01"), MAX_META);
    h.engine.on_frame(a, binary, h.now);
    h.pump();
    let message = "binary frames are not part of the protocol; send JSON text";
    assert_eq!(h.received(a), [error("bad_request", message)]);
    h.command(a, r#"{"type":"dance","ref":3}"#);
    let unknown = error("unknown_type", "unknown command type \"dance\"");
    assert_eq!(h.received(a), [with_ref(unknown, json!(3))]);
    assert_eq!(h.effects(), []);
    assert_eq!(h.engine.open_connections(), 1);
}

// --- watching -------------------------------------------------------------------------------

#[test]
fn a_watcher_gets_a_state_then_the_events_and_counts() {
    let mut h = Harness::new();
    let w = h.open("dash", "watch=room");
    assert_eq!(h.received(w), [state("room", 0, json!({}))]);
    let a = h.open("alice", "channel=room");
    assert_eq!(
        h.received(w),
        [join("room", "alice", 1), count("room", 1, 1, 1)]
    );
    h.command(a, r#"{"type":"leave","channel":"room"}"#);
    assert_eq!(h.received(w), [leave("room", "alice", "left", 2)]);
    h.advance(999);
    assert_eq!(
        h.received(w),
        Vec::<Value>::new(),
        "the count waits for its second"
    );
    h.advance(1);
    assert_eq!(h.received(w), [count("room", 0, 0, 2)]);
}

#[test]
fn a_watcher_is_no_member_and_is_not_counted() {
    let mut h = Harness::new();
    let _w = h.open("dash", "watch=room");
    let a = h.open("alice", "channel=room");
    assert_eq!(
        h.received(a),
        [state("room", 1, json!({"alice": member(1)}))]
    );
    let counts = Counts {
        users: 1,
        connections: 1,
        seq: 1,
    };
    assert_eq!(h.engine.channel_counts_named("room"), counts);
    assert_eq!(h.engine.roster().users_online(), 1);
    assert_eq!(h.engine.watchers(), 1);
    assert_eq!(h.engine.open_connections(), 2);
}

#[test]
fn a_watch_command_replies_with_its_ref_and_a_watcher_may_ask_who() {
    let mut h = Harness::new();
    let _a = h.open("alice", "channel=room");
    let w = h.open("dash", "watch=other");
    h.clear();
    h.command(w, r#"{"type":"watch","channel":"room","ref":"x"}"#);
    let users = json!({"alice": member(1)});
    assert_eq!(
        h.received(w),
        [with_ref(state("room", 1, users.clone()), json!("x"))]
    );
    h.command(w, r#"{"type":"who","channel":"room","ref":"y"}"#);
    assert_eq!(
        h.received(w),
        [with_ref(state("room", 1, users), json!("y"))]
    );
    h.command(w, r#"{"type":"who","channel":"elsewhere"}"#);
    assert_eq!(
        h.received(w),
        [error("not_joined", "not joined to channel elsewhere")]
    );
}

#[test]
fn a_star_watcher_gets_a_fresh_state_when_a_channel_is_created() {
    let mut h = Harness::new();
    let w = h.open("dash", "watch=*");
    assert_eq!(h.received(w), Vec::<Value>::new());
    let _a = h.open("alice", "channel=room");
    assert_eq!(
        h.received(w),
        [
            state("room", 1, json!({"alice": member(1)})),
            count("room", 1, 1, 1)
        ]
    );
    let _b = h.open("bob", "channel=room");
    assert_eq!(h.received(w), [join("room", "bob", 2)]);
}

#[test]
fn a_star_watcher_gets_the_state_of_every_channel_with_members() {
    let mut h = Harness::new();
    let _a = h.open("alice", "channel=room");
    let _b = h.open("bob", "channel=dev");
    let _idle = h.open("idle", "watch=empty");
    let w = h.open("dash", "watch=*");
    let mut states = h.received(w);
    states.sort_by_key(|state| state["channel"].to_string());
    assert_eq!(
        states,
        [
            state("dev", 1, json!({"bob": member(1)})),
            state("room", 1, json!({"alice": member(1)})),
        ]
    );
}

#[test]
fn a_watcher_that_is_also_a_subscriber_hears_each_event_once() {
    let mut h = Harness::new();
    let w = h.open("dash", "channel=room&watch=room");
    let own = state("room", 1, json!({"dash": member(1)}));
    assert_eq!(h.received(w), [own.clone(), own]);
    let _a = h.open("alice", "channel=room");
    assert_eq!(
        h.received(w),
        [join("room", "alice", 2), count("room", 2, 2, 2)],
        "one join (as a subscriber), and the count (as a watcher)"
    );
}

#[test]
fn watching_past_the_cap_is_too_large() {
    let mut h = Harness::with(Config {
        max_channels_per_conn: 2,
        ..Config::default()
    });
    let w = h.open("dash", "watch=a&watch=b");
    h.clear();
    h.command(w, r#"{"type":"watch","channel":"c","ref":1}"#);
    let refused = error("too_large", "a connection may watch at most 2 channels");
    assert_eq!(h.received(w), [with_ref(refused, json!(1))]);
    assert_eq!(h.engine.roster().find("c"), None);
    h.command(w, r#"{"type":"watch","channel":"a"}"#);
    assert_eq!(
        h.received(w),
        [state("a", 0, json!({}))],
        "watching again is allowed"
    );
}

#[test]
fn watching_needs_the_admin_token_when_the_server_has_one() {
    let mut h = Harness::with(Config {
        admin_token: Some("adm".to_owned()),
        ..Config::default()
    });
    let a = h.open("alice", "channel=lobby");
    let d = h.open("dash", "watch=*&admin");
    h.clear();
    h.command(a, r#"{"type":"watch","channel":"room","ref":"w"}"#);
    let refused = error(
        "forbidden",
        "watching needs admin=TOKEN in the connection URL",
    );
    assert_eq!(h.received(a), [with_ref(refused, json!("w"))]);
    h.command(d, r#"{"type":"watch","channel":"room"}"#);
    assert_eq!(h.received(d), [state("room", 0, json!({}))]);
}

#[test]
fn unwatch_stops_the_events_and_unwatching_what_is_not_watched_is_not_joined() {
    let mut h = Harness::new();
    let w = h.open("dash", "watch=room");
    h.clear();
    h.command(w, r#"{"type":"unwatch","channel":"dev","ref":1}"#);
    assert_eq!(
        h.received(w),
        [with_ref(error("not_joined", "not watching dev"), json!(1))]
    );
    h.command(w, r#"{"type":"unwatch","channel":"*"}"#);
    assert_eq!(h.received(w), [error("not_joined", "not watching *")]);
    h.command(w, r#"{"type":"unwatch","channel":"room"}"#);
    assert_eq!(h.received(w), Vec::<Value>::new());
    assert_eq!(h.engine.watchers(), 0);
    let _a = h.open("alice", "channel=room");
    assert_eq!(h.received(w), Vec::<Value>::new());
    h.command(w, r#"{"type":"unwatch","channel":"room"}"#);
    assert_eq!(h.received(w), [error("not_joined", "not watching room")]);
}

// --- limits ---------------------------------------------------------------------------------

#[test]
fn joining_past_the_channels_per_connection_cap_is_too_large() {
    let mut h = Harness::with(Config {
        max_channels_per_conn: 2,
        ..Config::default()
    });
    let a = h.open("alice", "channel=x&channel=y");
    h.clear();
    h.command(a, r#"{"type":"join","channel":"z","ref":1}"#);
    let refused = error("too_large", "a connection may join at most 2 channels");
    assert_eq!(h.received(a), [with_ref(refused, json!(1))]);
    assert_eq!(
        h.engine.roster().find("z"),
        None,
        "a rejected join does not join"
    );
    h.command(a, r#"{"type":"join","channel":"x"}"#);
    assert_eq!(h.received(a), [state("x", 1, json!({"alice": member(1)}))]);
    h.command(a, r#"{"type":"leave","channel":"y"}"#);
    h.command(a, r#"{"type":"join","channel":"z"}"#);
    assert_eq!(h.received(a), [state("z", 1, json!({"alice": member(1)}))]);
}

#[test]
fn joining_a_full_channel_is_too_large_unless_the_user_is_a_member() {
    let mut h = Harness::with(Config {
        max_members_per_channel: Some(1),
        ..Config::default()
    });
    let a = h.open("alice", "channel=room");
    let b = h.open("bob", "channel=lobby");
    h.clear();
    h.command(b, r#"{"type":"join","channel":"room","ref":1}"#);
    let full = error("too_large", "channel room is full (1 members)");
    assert_eq!(h.received(b), [with_ref(full.clone(), json!(1))]);
    let c = h.open("carol", "channel=room");
    assert_eq!(
        h.received(c),
        [full],
        "a URL channel that is full gets an error"
    );
    let a2 = h.open("alice", "channel=room");
    assert_eq!(
        h.received(a2),
        [state("room", 1, json!({"alice": member(2)}))]
    );
    h.assert_silent(&[a]);
}

#[cfg(feature = "tokens")]
#[test]
fn a_token_allows_only_its_channels_and_lends_its_meta() {
    let mut h = Harness::with(token_config());
    let extra = json!({"channels": ["lobby", "chat.*"], "meta": {"name": "Alice"}});
    let token = token_of("alice", 3600, extra);
    let a = h.open("alice", &format!("token={token}"));
    let alice = json!({"alice": {"conns": 1, "meta": {"name": "Alice"}}});
    assert_eq!(h.received(a), [state("lobby", 1, alice.clone())]);
    h.command(a, r#"{"type":"join","channel":"chat.dev"}"#);
    assert_eq!(h.received(a), [state("chat.dev", 1, alice)]);
    h.command(a, r#"{"type":"join","channel":"secret","ref":1}"#);
    let refused = error(
        "forbidden",
        "channel secret is not allowed by the connection's token",
    );
    assert_eq!(h.received(a), [with_ref(refused, json!(1))]);
    assert_eq!(h.engine.roster().find("secret"), None);
}

#[cfg(feature = "tokens")]
#[test]
fn a_token_that_does_not_allow_the_default_channel_joins_nothing() {
    let mut h = Harness::with(token_config());
    let token = token_of("alice", 3600, json!({"channels": ["room"]}));
    let a = h.open("alice", &format!("token={token}"));
    assert_eq!(h.received(a), Vec::<Value>::new());
    assert_eq!(h.engine.roster().channel_count(), 0);
}

// --- rate limit -----------------------------------------------------------------------------

fn rate_limited() -> Value {
    error(
        "rate_limited",
        "more than 1 commands per second (bursts of 2)",
    )
}

#[test]
fn commands_past_the_rate_limit_are_refused_then_a_flood_is_closed_with_1008() {
    let mut h = Harness::with(Config {
        rate_limit: Some(RateLimit {
            per_second: 1,
            burst: 2,
        }),
        ..Config::default()
    });
    let a = h.open("alice", "channel=room");
    let b = h.open("bob", "channel=room");
    h.clear();
    for n in 1..=5 {
        h.command(b, &format!(r#"{{"type":"ping","id":{n}}}"#));
    }
    let pong = |n: u64| json!({"type": "pong", "id": n});
    assert_eq!(
        h.received(b),
        [pong(1), pong(2), rate_limited(), rate_limited()]
    );
    assert_eq!(
        h.effects(),
        [Effect::Close {
            conn: b,
            code: 1008,
            reason: "rate limit exceeded".to_owned(),
            leave: LeaveReason::Error,
        }]
    );
    assert_eq!(h.received(a), [leave("room", "bob", "error", 3)]);
    h.command(b, r#"{"type":"ping"}"#);
    assert_eq!(h.received(b), Vec::<Value>::new());
}

#[test]
fn a_refused_command_does_not_run_and_credits_come_back_with_time() {
    let mut h = Harness::with(Config {
        rate_limit: Some(RateLimit {
            per_second: 1,
            burst: 2,
        }),
        ..Config::default()
    });
    let a = h.open("alice", "channel=lobby");
    h.command(a, r#"{"type":"ping"}"#);
    h.command(a, r#"{"type":"ping"}"#);
    h.clear();
    h.command(a, r#"{"type":"join","channel":"room"}"#);
    assert_eq!(h.received(a), [rate_limited()]);
    assert_eq!(h.engine.roster().find("room"), None);
    h.advance(960);
    h.command(a, r#"{"type":"ping"}"#);
    assert_eq!(
        h.received(a),
        [rate_limited()],
        "960 ms earn 0.96 of a credit"
    );
    h.advance(64);
    h.command(a, r#"{"type":"ping"}"#);
    assert_eq!(h.received(a), [json!({"type": "pong", "id": null})]);
    assert_eq!(h.effects(), []);
}

// --- tokens ---------------------------------------------------------------------------------

#[cfg(feature = "tokens")]
#[test]
fn an_expired_token_closes_with_4001_when_exp_and_the_leeway_have_passed() {
    let mut h = Harness::with(token_config());
    let a = h.open(
        "alice",
        &format!("token={}", token_of("alice", 60, json!({}))),
    );
    let b = h.open(
        "bob",
        &format!("token={}", token_of("bob", 3600, json!({}))),
    );
    assert_eq!(h.deadlines(Timer::TokenExpiry(a)), [65_000]);
    h.clear();
    h.advance(64_999);
    assert_eq!(h.effects(), []);
    h.advance(1);
    assert_eq!(
        h.effects(),
        [Effect::Close {
            conn: a,
            code: 4001,
            reason: "token expired".to_owned(),
            leave: LeaveReason::Expired,
        }]
    );
    assert_eq!(h.received(b), [leave("lobby", "alice", "expired", 3)]);
}

#[cfg(feature = "tokens")]
#[test]
fn a_refresh_is_answered_and_moves_the_expiry_later() {
    let mut h = Harness::with(token_config());
    let a = h.open(
        "alice",
        &format!("token={}", token_of("alice", 60, json!({}))),
    );
    h.clear();
    h.advance(30_000);
    let refresh = token_of("alice", 120, json!({}));
    h.command(
        a,
        &format!(r#"{{"type":"refresh","token":"{refresh}","ref":5}}"#),
    );
    let refreshed = json!({"type": "refreshed", "exp": ORIGIN_S + 120, "ref": 5});
    assert_eq!(h.received(a), [refreshed]);
    assert_eq!(
        h.deadlines(Timer::TokenExpiry(a)),
        [65_000],
        "a later expiry adds no entry: the old one re-arms itself when it fires"
    );
    h.advance(35_000);
    assert_eq!(h.effects(), [], "the old deadline no longer applies");
    assert_eq!(h.deadlines(Timer::TokenExpiry(a)), [125_000]);
    h.advance(59_999);
    assert_eq!(h.effects(), []);
    h.advance(1);
    assert_eq!(
        h.effects(),
        [Effect::Close {
            conn: a,
            code: 4001,
            reason: "token expired".to_owned(),
            leave: LeaveReason::Expired,
        }]
    );
}

#[cfg(feature = "tokens")]
#[test]
fn a_refresh_token_of_another_user_or_a_bad_one_is_refused() {
    let mut h = Harness::with(token_config());
    let a = h.open(
        "alice",
        &format!("token={}", token_of("alice", 60, json!({}))),
    );
    h.clear();
    let other = token_of("mallory", 3600, json!({}));
    h.command(
        a,
        &format!(r#"{{"type":"refresh","token":"{other}","ref":6}}"#),
    );
    let refused = error("forbidden", "wrong_subject: the refresh token was refused");
    assert_eq!(h.received(a), [with_ref(refused, json!(6))]);
    let forged = token::sign(&json!({"sub": "alice", "exp": ORIGIN_S + 3600}), b"other");
    h.command(a, &format!(r#"{{"type":"refresh","token":"{forged}"}}"#));
    let refused = error("forbidden", "bad_signature: the refresh token was refused");
    assert_eq!(h.received(a), [refused]);
    assert_eq!(h.deadlines(Timer::TokenExpiry(a)), [65_000]);
    h.advance(65_000);
    assert!(matches!(
        h.effects()[..],
        [Effect::Close { code: 4001, .. }]
    ));
}

#[test]
fn refresh_on_a_server_without_tokens_is_a_bad_request() {
    let mut h = Harness::new();
    let a = h.open("alice", "");
    h.clear();
    h.command(a, r#"{"type":"refresh","token":"x.y.z"}"#);
    let refused = error("bad_request", "this server does not use connection tokens");
    assert_eq!(h.received(a), [refused]);
}

#[cfg(feature = "tokens")]
#[test]
fn an_admin_watcher_without_a_token_arms_no_expiry() {
    let mut h = Harness::with(Config {
        admin_token: Some("adm".to_owned()),
        ..token_config()
    });
    let d = h.open("anon-1", "watch=*&admin");
    assert_eq!(h.deadlines(Timer::TokenExpiry(d)), Vec::<Millis>::new());
}

#[cfg(feature = "tokens")]
#[test]
fn a_refresh_to_an_earlier_expiry_or_after_no_expiry_arms_it() {
    let mut h = Harness::with(Config {
        admin_token: Some("adm".to_owned()),
        ..token_config()
    });
    let a = h.open(
        "alice",
        &format!("token={}", token_of("alice", 600, json!({}))),
    );
    let d = h.open("anon-1", "watch=*&admin");
    h.clear();
    let sooner = token_of("alice", 60, json!({}));
    h.command(a, &format!(r#"{{"type":"refresh","token":"{sooner}"}}"#));
    assert_eq!(h.deadlines(Timer::TokenExpiry(a)), [605_000, 65_000]);
    let first = token_of("anon-1", 120, json!({}));
    h.command(d, &format!(r#"{{"type":"refresh","token":"{first}"}}"#));
    assert_eq!(h.deadlines(Timer::TokenExpiry(d)), [125_000]);
    h.clear();
    h.advance(65_000);
    assert!(matches!(
        h.effects()[..],
        [Effect::Close { code: 4001, .. }]
    ));
}

// --- heartbeat ------------------------------------------------------------------------------

#[test]
fn a_silent_connection_is_pinged_after_the_interval_and_dropped_after_the_timeout() {
    let mut h = Harness::new();
    let a = h.open("alice", "channel=room");
    let b = h.open("bob", "channel=room");
    h.clear();
    h.advance(29_999);
    assert_eq!(h.effects(), []);
    h.advance(1);
    assert_eq!(h.effects(), [Effect::Ping(a), Effect::Ping(b)]);
    h.heard(b);
    h.advance(29_999);
    assert_eq!(h.effects(), []);
    h.advance(1);
    assert_eq!(
        h.effects(),
        [
            Effect::Drop {
                conn: a,
                leave: LeaveReason::Timeout
            },
            Effect::Ping(b)
        ]
    );
    assert_eq!(h.received(b), [leave("room", "alice", "timeout", 3)]);
    assert_eq!(h.end(a, LeaveReason::Closed), None, "the session is gone");
}

#[test]
fn hearing_from_a_connection_postpones_the_ping_and_the_drop() {
    let mut h = Harness::new();
    let a = h.open("alice", "");
    h.clear();
    h.advance(20_000);
    h.heard(a);
    h.advance(29_999);
    assert_eq!(h.effects(), []);
    h.advance(1);
    assert_eq!(h.effects(), [Effect::Ping(a)], "30 s after the last byte");
    h.advance(29_999);
    assert_eq!(h.effects(), []);
    h.advance(1);
    assert_eq!(
        h.effects(),
        [Effect::Drop {
            conn: a,
            leave: LeaveReason::Timeout
        }],
        "60 s after the last byte"
    );
}

// --- leave grace ----------------------------------------------------------------------------

fn grace_config() -> Config {
    Config {
        leave_grace: Duration::from_secs(5),
        ..Config::default()
    }
}

#[test]
fn a_reconnect_within_the_leave_grace_is_silent() {
    let mut h = Harness::with(grace_config());
    let a = h.open("alice", "channel=room");
    let b = h.open("bob", "channel=room");
    h.clear();
    h.advance(1_000);
    h.end(b, LeaveReason::Closed);
    assert_eq!(h.received(a), Vec::<Value>::new());
    h.command(a, r#"{"type":"who","channel":"room"}"#);
    let in_grace = json!({"alice": member(1), "bob": member(0)});
    assert_eq!(h.received(a), [state("room", 2, in_grace)]);
    h.advance(3_000);
    let b2 = h.open("bob", "channel=room");
    let back = json!({"alice": member(1), "bob": member(1)});
    assert_eq!(h.received(b2), [state("room", 2, back)]);
    h.advance(10_000);
    assert_eq!(h.received(a), Vec::<Value>::new());
    assert_eq!(h.engine.seq_named("room"), 2);
}

#[test]
fn after_the_leave_grace_the_leave_is_sent_with_the_original_reason() {
    let mut h = Harness::with(grace_config());
    let a = h.open("alice", "channel=room");
    let b = h.open("bob", "channel=room");
    h.clear();
    h.end(b, LeaveReason::Timeout);
    h.advance(4_999);
    assert_eq!(h.received(a), Vec::<Value>::new());
    h.advance(1);
    assert_eq!(h.received(a), [leave("room", "bob", "timeout", 3)]);
}

// --- counts ---------------------------------------------------------------------------------

#[test]
fn counts_are_sent_at_most_once_per_channel_per_second_with_the_latest_numbers() {
    let mut h = Harness::new();
    let c = h.open("carol", "channel=radio&events=count");
    assert_eq!(h.received(c), [count("radio", 1, 1, 1)]);
    h.advance(100);
    h.open("alice", "channel=radio");
    h.advance(100);
    h.open("bob", "channel=radio");
    let radio = h.engine.roster().find("radio").expect("radio");
    assert_eq!(
        h.deadlines(Timer::Counts(radio)),
        [1_000],
        "one flush scheduled"
    );
    h.advance(799);
    assert_eq!(h.received(c), Vec::<Value>::new());
    h.advance(1);
    assert_eq!(h.received(c), [count("radio", 3, 3, 3)]);
    h.advance(500);
    h.open("dave", "channel=radio");
    h.advance(499);
    assert_eq!(h.received(c), Vec::<Value>::new());
    h.advance(1);
    assert_eq!(h.received(c), [count("radio", 4, 4, 4)]);
    h.advance(5_000);
    assert_eq!(h.received(c), Vec::<Value>::new(), "nothing changed");
}

// --- diffs ----------------------------------------------------------------------------------

fn diff(channel: &str, from: u64, seq: u64, joins: Value, leaves: Value, updates: Value) -> Value {
    json!({"type": "diff", "channel": channel, "from": from, "seq": seq,
        "joins": joins, "leaves": leaves, "updates": updates})
}

#[test]
fn diffs_fold_a_ticks_changes_per_user_and_a_quiet_channel_hears_at_once() {
    let mut h = Harness::new();
    let d = h.open("dana", "channel=room&events=diff");
    assert_eq!(
        h.received(d),
        [state("room", 1, json!({"dana": {"conns": 1, "meta": {}}}))]
    );
    let room = h.engine.roster().find("room").expect("room");
    assert_eq!(
        h.deadlines(Timer::Diff(room)),
        [100],
        "dana's own join opened a window"
    );
    h.advance(50);
    let a = h.open("alice", "channel=room");
    h.advance(10);
    let b = h.open("bob", "channel=room");
    h.advance(10);
    h.command(b, r#"{"type":"leave","channel":"room"}"#);
    h.command(a, r#"{"type":"update","channel":"room","meta":{"s":1}}"#);
    h.open("carl", "channel=room");
    h.end(h_conn_of_carl(&h), LeaveReason::Closed);
    assert_eq!(
        h.received(d),
        Vec::<Value>::new(),
        "nothing before the tick"
    );
    h.advance(29);
    assert_eq!(h.received(d), Vec::<Value>::new());
    h.advance(1);
    // alice joined then updated (a join with the new meta); bob and carl joined and left.
    assert_eq!(
        h.received(d),
        [diff(
            "room",
            1,
            7,
            json!({"alice": {"s": 1}}),
            json!({}),
            json!({})
        )]
    );
    assert_eq!(h.deadlines(Timer::Diff(room)), [200], "the next window");
    h.advance(100);
    assert_eq!(h.received(d), Vec::<Value>::new(), "nothing changed");
    assert_eq!(
        h.deadlines(Timer::Diff(room)),
        Vec::<Millis>::new(),
        "quiet again"
    );
    h.advance(300);
    h.command(a, r#"{"type":"leave","channel":"room"}"#);
    assert_eq!(
        h.received(d),
        [diff(
            "room",
            7,
            8,
            json!({}),
            json!({"alice": {"reason": "left"}}),
            json!({})
        )],
        "a quiet channel's change goes out at once"
    );
    h.advance(10);
    h.open("alice", "channel=room");
    h.advance(100);
    assert_eq!(
        h.received(d),
        [diff(
            "room",
            8,
            9,
            json!({"alice": {}}),
            json!({}),
            json!({})
        )]
    );
}

/// Carl is the last connection opened (slot order).
fn h_conn_of_carl(h: &Harness) -> ConnId {
    Key {
        slot: h.next_slot - 1,
        generation: 0,
    }
}

#[test]
fn a_leave_then_a_join_is_an_update_and_a_cancelled_tick_still_carries_the_seq() {
    let mut h = Harness::new();
    let b = h.open("bob", "channel=room");
    let d = h.open("dana", "channel=room&events=diff");
    h.advance(1_000);
    h.clear();
    h.open("xena", "channel=room");
    assert_eq!(
        h.received(d),
        [diff(
            "room",
            2,
            3,
            json!({"xena": {}}),
            json!({}),
            json!({})
        )],
        "at once: the channel was quiet"
    );
    h.end(b, LeaveReason::Timeout);
    h.open("bob", "channel=room");
    h.advance(100);
    assert_eq!(
        h.received(d),
        [diff("room", 3, 5, json!({}), json!({}), json!({"bob": {}}))],
        "bob stays, with his new meta"
    );
    let e = h.open("eve", "channel=room");
    h.end(e, LeaveReason::Closed);
    h.advance(100);
    assert_eq!(
        h.received(d),
        [diff("room", 5, 7, json!({}), json!({}), json!({}))],
        "eve came and went: nothing to apply, but the seq moved on"
    );
}

#[test]
fn a_diff_is_encoded_once_for_every_listener_and_watchers_can_ask_for_diffs() {
    let mut h = Harness::new();
    let d1 = h.open("d1", "channel=room&events=diff");
    let d2 = h.open("d2", "channel=room&events=diff");
    let w = h.open("dash", "watch=*&events=diff");
    let all = h.open("old", "channel=room");
    h.advance(1_000);
    h.clear();
    for user in ["u1", "u2", "u3"] {
        h.open(user, "channel=room");
    }
    h.advance(100);
    let diffs: Vec<_> = h
        .deliveries()
        .into_iter()
        .filter(|(_, text)| text.contains(r#""type":"diff""#))
        .collect();
    assert_eq!(
        diffs.len(),
        2,
        "the first at once, the rest in one: {diffs:?}"
    );
    let (to, text) = &diffs[1];
    let mut to = to.as_slice().to_vec();
    to.sort();
    assert_eq!(to, [d1, d2, w], "one text for every listener");
    let sent: Value = serde_json::from_str(text).expect("json");
    assert_eq!(
        sent,
        diff(
            "room",
            4,
            6,
            json!({"u2": {}, "u3": {}}),
            json!({}),
            json!({})
        )
    );
    let heard_by_all: Vec<Value> = h.received(all);
    assert_eq!(
        heard_by_all,
        [
            join("room", "u1", 4),
            join("room", "u2", 5),
            join("room", "u3", 6)
        ]
    );
    assert!(
        h.received(w).iter().all(|m| m["type"] != "join"),
        "the diff watcher hears no single events"
    );
}

/// Joiners in mode diff within an open window get their state at the window's end, after
/// the diff and at its seq, one text for all of them; a member who came and went within the
/// window is in neither (a state taken in between would have kept it forever).
#[test]
fn diff_joiners_within_a_window_share_one_state_at_its_end() {
    let mut h = Harness::new();
    let d = h.open("dana", "channel=room&events=diff");
    h.clear();
    h.advance(10);
    let x = h.open("xena", "channel=room");
    h.advance(10);
    let j1 = h.open("j1", "channel=room&events=diff");
    let j2 = h.open("j2", "channel=room&events=diff");
    let gone = h.open("j3", "channel=room&events=diff");
    assert_eq!(h.received(j1), Vec::<Value>::new(), "no state yet");
    h.end(gone, LeaveReason::Closed);
    h.advance(10);
    h.end(x, LeaveReason::Closed);
    h.deliveries();
    h.advance(69);
    assert_eq!(h.deliveries(), Vec::new(), "nothing before the tick");
    h.advance(1);
    let sent = h.deliveries();
    let texts: Vec<Value> = sent
        .iter()
        .map(|(_, text)| serde_json::from_str(text).expect("json"))
        .collect();
    let joins = json!({"j1": {}, "j2": {}});
    assert_eq!(
        texts,
        [
            diff("room", 1, 7, joins, json!({}), json!({})),
            state(
                "room",
                7,
                json!({"dana": {"conns": 1, "meta": {}}, "j1": {"conns": 1, "meta": {}},
                    "j2": {"conns": 1, "meta": {}}})
            ),
        ],
        "the diff first, then the state at its seq"
    );
    assert_eq!(sent[0].0.as_slice(), [d], "the joiners hear no diff");
    let mut to = sent[1].0.as_slice().to_vec();
    to.sort();
    assert_eq!(
        to,
        [j1, j2],
        "one state for both, none for the one that left"
    );
}

// --- shutdown -------------------------------------------------------------------------------

#[test]
fn a_shutdown_sends_every_connection_away_and_stops_commands_and_events() {
    let mut h = Harness::new();
    let a = h.open("alice", "channel=room");
    let b = h.open("bob", "channel=room");
    let w = h.open("dash", "watch=*");
    h.clear();
    h.engine.begin_shutdown(h.now);
    h.pump();
    assert!(h.engine.is_shutting_down());
    assert_eq!(
        h.effects(),
        [
            Effect::GoingAway(a),
            Effect::GoingAway(b),
            Effect::GoingAway(w)
        ]
    );
    h.command(a, r#"{"type":"ping"}"#);
    h.command(b, r#"{"type":"leave","channel":"room"}"#);
    h.assert_silent(&[a, b, w]);
    assert_eq!(h.engine.seq_named("room"), 2, "the leave did not run");
    assert_eq!(h.end(b, LeaveReason::Closed), Some(LeaveReason::Shutdown));
    h.assert_silent(&[a, w]);
    h.engine.begin_shutdown(h.now);
    h.pump();
    assert_eq!(h.effects(), [], "only once");
}

// --- stale ids ------------------------------------------------------------------------------

#[test]
fn a_stale_id_does_nothing() {
    let mut h = Harness::new();
    let a = h.open("alice", "channel=room");
    let b = h.open("bob", "channel=room");
    h.clear();
    h.end(a, LeaveReason::Closed);
    assert_eq!(h.received(b), [leave("room", "alice", "closed", 3)]);
    let reused = Key {
        slot: a.slot,
        generation: a.generation + 1,
    };
    h.open_at(reused, Dialect::V1, "carol", "channel=room");
    h.clear();
    h.command(a, r#"{"type":"leave","channel":"room"}"#);
    h.heard(a);
    h.engine.on_timer(Timer::Heartbeat(a), 60_000);
    h.engine.on_timer(Timer::TokenExpiry(a), 60_000);
    h.pump();
    assert_eq!(h.end(a, LeaveReason::Closed), None);
    assert!(!h.engine.disconnect_connection(a, h.now));
    assert!(!h.engine.send_to_connection(a, &data(json!(1))));
    h.pump();
    assert_eq!(h.effects(), []);
    h.assert_silent(&[a, b, reused]);
    assert_eq!(h.engine.seq_named("room"), 4, "carol is still in");
    assert_eq!(h.engine.connections_of("carol"), [reused]);
}

// --- dialects -------------------------------------------------------------------------------

#[test]
fn an_echo_connection_gets_no_welcome_and_joins_nothing() {
    let mut h = Harness::new();
    let id = Key {
        slot: 3,
        generation: 1,
    };
    assert_eq!(h.engine.welcome(Dialect::Echo, id, "eve"), None);
    let welcome = h
        .engine
        .welcome(Dialect::V1, id, "eve")
        .expect("a v1 welcome");
    assert_eq!(
        serde_json::from_str::<Value>(&welcome).expect("JSON"),
        json!({"type": "welcome", "conn": "3.1", "user": "eve",
               "heartbeat": {"interval_ms": 30_000, "timeout_ms": 60_000}})
    );
    let e = h.open_as(Dialect::Echo, "eve", "channel=room&watch=*");
    assert_eq!(h.deliveries(), []);
    assert_eq!(h.engine.dialect(e), Some(Dialect::Echo));
    assert_eq!(h.engine.roster().channel_count(), 0);
    assert_eq!(h.engine.watchers(), 0);
    let _a = h.open("alice", "channel=room");
    h.assert_silent(&[e]);
}

#[test]
fn a_broadcast_is_encoded_once_per_dialect_in_use() {
    let mut h = Harness::new();
    let a = h.open("alice", "channel=room");
    let b = h.open("bob", "channel=room");
    let c = h.open("carol", "channel=room");
    let v = h.open("eve", "channel=lobby");
    let e = h.open_as(Dialect::Echo, "eve", "");
    h.clear();
    let d = h.open("dave", "channel=room");
    let deliveries = h.deliveries();
    assert_eq!(deliveries.len(), 2, "{deliveries:?}");
    assert_eq!(deliveries[0].0, Recipients::One(d));
    let mut told = deliveries[1].0.as_slice().to_vec();
    told.sort();
    assert_eq!(told, [a, b, c], "one Deliver for every v1 recipient");
    assert_eq!(h.engine.send_to_user("eve", &data(json!("hi"))), 1);
    h.pump();
    let deliveries = h.deliveries();
    assert_eq!(deliveries.len(), 1, "none for the echo connection");
    assert_eq!(deliveries[0].0, Recipients::One(v));
    h.assert_silent(&[e]);
}

// --- the host -------------------------------------------------------------------------------

#[test]
fn send_to_user_reaches_every_connection_of_the_user() {
    let mut h = Harness::new();
    let a1 = h.open("alice", "channel=room");
    let a2 = h.open("alice", "channel=dev");
    let b = h.open("bob", "channel=room");
    h.clear();
    assert_eq!(h.engine.send_to_user("alice", &data(json!({"n": 1}))), 2);
    h.pump();
    let message = json!({"type": "message", "channel": null, "from": null, "data": {"n": 1}});
    assert_eq!(h.received(a1), vec![message.clone()]);
    assert_eq!(h.received(a2), [message]);
    h.assert_silent(&[b]);
    assert_eq!(h.engine.send_to_user("nobody", &data(json!(1))), 0);
}

#[test]
fn disconnect_user_closes_each_connection_with_1000() {
    let mut h = Harness::new();
    let a1 = h.open("alice", "channel=room");
    let a2 = h.open("alice", "channel=room");
    let b = h.open("bob", "channel=room");
    h.clear();
    assert_eq!(h.engine.disconnect_user("alice", h.now), 2);
    h.pump();
    let closed = |conn| Effect::Close {
        conn,
        code: 1000,
        reason: "disconnected by the server".to_owned(),
        leave: LeaveReason::Closed,
    };
    assert_eq!(h.effects(), [closed(a1), closed(a2)]);
    assert_eq!(h.received(b), [leave("room", "alice", "closed", 3)]);
    assert_eq!(h.engine.connections_of("alice"), []);
    assert_eq!(h.engine.disconnect_user("alice", h.now), 0);
}

#[derive(Clone, Default)]
struct Recorder(Rc<RefCell<Vec<String>>>);

impl Handler for Recorder {
    fn on_presence(&mut self, change: Presence<'_>, _actions: &mut Actions) {
        let line = match change {
            Presence::Join {
                channel,
                user,
                meta,
            } => format!("join {channel} {user} {meta}"),
            Presence::Leave {
                channel,
                user,
                reason,
            } => format!("leave {channel} {user} {reason}"),
            Presence::Update {
                channel,
                user,
                meta,
            } => format!("update {channel} {user} {meta}"),
        };
        self.0.borrow_mut().push(line);
    }

    fn on_message(
        &mut self,
        channel: &str,
        from: Option<&str>,
        data: &str,
        _actions: &mut Actions,
    ) {
        let line = format!("message {channel} {} {data}", from.unwrap_or("-"));
        self.0.borrow_mut().push(line);
    }
}

#[test]
fn the_host_handler_is_told_of_presence_and_publications() {
    let mut h = Harness::with(Config {
        client_publish: true,
        ..Config::default()
    });
    let recorder = Recorder::default();
    h.engine.set_handler(Box::new(recorder.clone()));
    let _a = h.open("alice", "channel=room");
    let b = h.open("bob", "channel=room");
    let b2 = h.open("bob", "channel=room");
    h.command(b, r#"{"type":"update","channel":"room","meta":{"s":1}}"#);
    h.command(b, r#"{"type":"publish","channel":"room","data":{"t":1}}"#);
    h.engine.publish("room", None, &data(json!(7)), h.now);
    h.end(b, LeaveReason::Closed);
    h.end(b2, LeaveReason::Timeout);
    assert_eq!(
        *recorder.0.borrow(),
        [
            "join room alice {}",
            "join room bob {}",
            "update room bob {\"s\":1}",
            "message room bob {\"t\":1}",
            "message room - 7",
            "leave room bob timeout",
        ]
    );
}

/// Acts on every join of `bob`: sets his meta, greets him, tells the room.
struct Usher;

impl Handler for Usher {
    fn on_presence(&mut self, change: Presence<'_>, actions: &mut Actions) {
        if let Presence::Join { channel, user, .. } = change {
            if user == "bob" {
                actions
                    .update(user, channel, &json!({"seat": 7}))
                    .expect("valid");
                actions
                    .send_to_user(user, &json!("welcome"))
                    .expect("valid");
                actions
                    .publish(channel, &json!({"seated": user}))
                    .expect("valid");
                actions
                    .update("nobody", channel, &json!({}))
                    .expect("valid");
            }
        }
    }
}

#[test]
fn hook_actions_run_in_order_once_the_input_that_called_the_hook_is_done() {
    let mut h = Harness::new();
    h.engine.set_handler(Box::new(Usher));
    let a = h.open("alice", "channel=room");
    h.clear();
    let b = h.open("bob", "channel=room");
    let message = |channel: Value, data: Value| json!({"type": "message", "channel": channel, "from": null, "data": data});
    assert_eq!(
        h.received(a),
        [
            join("room", "bob", 2),
            update("room", "bob", json!({"seat": 7}), 3),
            message(json!("room"), json!({"seated": "bob"})),
        ]
    );
    assert_eq!(
        h.received(b),
        [
            state(
                "room",
                2,
                json!({"alice": {"conns": 1, "meta": {}}, "bob": {"conns": 1, "meta": {}}})
            ),
            update("room", "bob", json!({"seat": 7}), 3),
            message(Value::Null, json!("welcome")),
            message(json!("room"), json!({"seated": "bob"})),
        ],
        "the join's reply first: the actions ran after it"
    );
}

#[test]
fn hook_actions_check_their_arguments_at_the_call() {
    let mut actions = Actions::default();
    assert!(matches!(
        actions.publish("bad channel", &json!(1)),
        Err(crate::HandleError::InvalidName(_))
    ));
    assert_eq!(
        actions.publish_json("room", "{not json"),
        Err(crate::HandleError::InvalidJson)
    );
    assert_eq!(
        actions.update("bob", "room", &json!([1])),
        Err(crate::HandleError::InvalidJson)
    );
    assert_eq!(
        actions.disconnect_connection("7"),
        Err(crate::HandleError::InvalidConnection("7".to_owned()))
    );
}

/// Pusher connections in virtual time: subscriptions, presence by user, client events,
/// REST triggers, heartbeats, shutdown, namespaces.
#[cfg(feature = "pusher")]
mod pusher {
    use super::*;
    use crate::pusher::{auth, PusherSettings};

    /// Every Pusher connection pays for its slot in the socket table (the README's memory
    /// figures count it).
    #[test]
    fn a_pusher_socket_takes_4_bytes() {
        let slot = std::mem::size_of::<Option<crate::engine::pusher::PusherSocket>>();
        assert_eq!(slot, 4);
    }

    const KEY: &str = "app-key";
    const APP_SECRET: &str = "app-secret";

    fn harness() -> Harness {
        let apps =
            PusherSettings::parse_list(&format!("1:{KEY}:{APP_SECRET},2:other:x")).expect("apps");
        let settings = PusherSettings {
            apps,
            ..PusherSettings::default()
        };
        let config = Config::default()
            .pusher(settings)
            .heartbeat_interval(Duration::from_secs(30))
            .heartbeat_timeout(Duration::from_secs(60));
        Harness::with(config)
    }

    impl Harness {
        /// Opens a Pusher connection of app 1.
        fn socket(&mut self) -> ConnId {
            self.open_as(Dialect::Pusher, "", "")
        }

        fn pusher(&mut self, id: ConnId, frame: Value) {
            let text = frame.to_string();
            let decoded = Dialect::Pusher.decode(Frame::Text(&text), MAX_META);
            self.engine.on_frame(id, decoded, self.now);
            self.pump();
        }

        /// Subscribes with the app's own signature (as its backend would sign).
        fn subscribe(&mut self, id: ConnId, channel: &str, channel_data: Option<&str>) {
            let socket = self.engine.socket_id(id);
            let mut text = format!("{socket}:{channel}");
            if let Some(data) = channel_data {
                text = format!("{text}:{data}");
            }
            let auth = format!("{KEY}:{}", auth::sign(APP_SECRET, &text));
            let mut data = json!({"channel": channel, "auth": auth});
            if let Some(channel_data) = channel_data {
                data["channel_data"] = json!(channel_data);
            }
            self.pusher(id, json!({"event": "pusher:subscribe", "data": data}));
        }

        fn join_presence(&mut self, id: ConnId, channel: &str, user: Value) -> Value {
            let data = json!({"user_id": user, "user_info": {"name": "N"}}).to_string();
            self.subscribe(id, channel, Some(&data));
            let mut got = self.received(id);
            assert_eq!(got.len(), 1, "{got:?}");
            got.remove(0)
        }
    }

    /// A Pusher internal event's `data`, a JSON document in a string.
    fn nested(message: &Value) -> Value {
        serde_json::from_str(message["data"].as_str().expect("a string")).expect("JSON")
    }

    fn events(messages: &[Value]) -> Vec<&str> {
        messages
            .iter()
            .filter_map(|m| m["event"].as_str())
            .collect()
    }

    #[test]
    fn the_welcome_names_a_socket_id_that_finds_the_connection() {
        let mut h = harness();
        let id = h.socket();
        let welcome = h
            .engine
            .welcome(Dialect::Pusher, id, "")
            .expect("a welcome");
        let welcome: Value = serde_json::from_str(&welcome).expect("JSON");
        assert_eq!(welcome["event"], "pusher:connection_established");
        let data = nested(&welcome);
        assert_eq!(data["activity_timeout"], 30);
        let socket = data["socket_id"].as_str().expect("a socket id");
        assert_eq!(h.engine.socket_by_id(socket), Some(id));
        assert_eq!(
            h.engine.roster().users_online(),
            0,
            "no user before a presence channel"
        );
    }

    #[test]
    fn public_and_private_subscriptions_and_rest_events() {
        let mut h = harness();
        let (a, b) = (h.socket(), h.socket());
        h.pusher(
            a,
            json!({"event": "pusher:subscribe", "data": {"channel": "news"}}),
        );
        let got = h.received(a);
        assert_eq!(
            got,
            [
                json!({"event": "pusher_internal:subscription_succeeded", "channel": "news", "data": "{}"})
            ]
        );

        h.pusher(b, json!({"event": "pusher:subscribe", "data": {"channel": "private-x", "auth": format!("{KEY}:00")}}));
        let refused = h.received(b);
        assert_eq!(
            refused[0]["event"], "pusher:subscription_error",
            "{refused:?}"
        );
        assert_eq!(refused[0]["data"]["status"], 401);
        h.pusher(
            b,
            json!({"event": "pusher:subscribe", "data": {"channel": "private-x"}}),
        );
        assert_eq!(
            h.received(b)[0]["data"]["type"],
            "AuthError",
            "no auth at all"
        );
        h.subscribe(b, "private-x", None);
        assert_eq!(
            events(&h.received(b)),
            ["pusher_internal:subscription_succeeded"]
        );
        h.subscribe(b, "news", None);
        h.clear();

        let socket_a = h.engine.socket_id(a);
        let delivered = h.engine.pusher_trigger(
            0,
            &["news".into(), "private-x".into()],
            "ev",
            r#""hi""#,
            Some(&socket_a),
            h.now,
        );
        h.pump();
        assert_eq!(delivered, 2, "b twice; a is excluded");
        assert!(h.received(a).is_empty());
        assert_eq!(
            h.received(b),
            [
                json!({"event": "ev", "channel": "news", "data": "hi"}),
                json!({"event": "ev", "channel": "private-x", "data": "hi"})
            ]
        );
        let channels = h.engine.pusher_channels(0, "");
        let names: Vec<_> = channels
            .iter()
            .map(|c| (c.name.as_str(), c.subscriptions))
            .collect();
        assert_eq!(names, [("news", 2), ("private-x", 1)]);
        assert!(
            h.engine.pusher_channels(1, "").is_empty(),
            "app 2 sees none of app 1's"
        );

        h.pusher(
            a,
            json!({"event": "pusher:unsubscribe", "data": {"channel": "news"}}),
        );
        assert!(h.received(a).is_empty(), "no reply to an unsubscribe");
        assert_eq!(
            h.engine.pusher_channel(0, "news").map(|c| c.subscriptions),
            Some(1)
        );
    }

    #[test]
    fn presence_announces_each_user_once_across_sockets() {
        let mut h = harness();
        let (bob, alice1, alice2) = (h.socket(), h.socket(), h.socket());
        let first = h.join_presence(bob, "presence-room", json!("bob"));
        assert_eq!(first["event"], "pusher_internal:subscription_succeeded");
        assert_eq!(nested(&first)["presence"]["ids"], json!(["bob"]));

        // Laravel sends numeric ids: they become strings.
        let joined = h.join_presence(alice1, "presence-room", json!(7));
        let presence = &nested(&joined)["presence"];
        assert_eq!(
            (presence["count"].clone(), presence["hash"]["7"].clone()),
            (json!(2), json!({"name": "N"}))
        );
        let added = h.received(bob);
        assert_eq!(events(&added), ["pusher_internal:member_added"]);
        assert_eq!(
            nested(&added[0]),
            json!({"user_id": "7", "user_info": {"name": "N"}})
        );

        h.join_presence(alice2, "presence-room", json!("7"));
        assert!(
            h.received(bob).is_empty(),
            "a second socket of user 7 is no news"
        );
        assert!(h.received(alice1).is_empty());

        h.end(alice1, LeaveReason::Closed);
        assert!(h.received(bob).is_empty(), "user 7 is still there");
        h.end(alice2, LeaveReason::Closed);
        let removed = h.received(bob);
        assert_eq!(events(&removed), ["pusher_internal:member_removed"]);
        assert_eq!(nested(&removed[0]), json!({"user_id": "7"}));
        assert_eq!(h.engine.pusher_users(0, "presence-room"), ["bob"]);
    }

    #[test]
    fn each_app_has_its_own_limits() {
        let mut settings = PusherSettings {
            apps: PusherSettings::parse_list(&format!("1:{KEY}:{APP_SECRET}")).expect("apps"),
            ..PusherSettings::default()
        };
        settings
            .set_app_limit("1:client_events=off")
            .expect("a limit");
        settings
            .set_app_limit("1:activity_timeout=2m")
            .expect("a limit");
        let mut h = Harness::with(Config::default().pusher(settings));
        let id = h.socket();
        let welcome = h
            .engine
            .welcome(Dialect::Pusher, id, "")
            .expect("a welcome");
        let welcome: Value = serde_json::from_str(&welcome).expect("JSON");
        assert_eq!(nested(&welcome)["activity_timeout"], 120);
        h.join_presence(id, "presence-room", json!("ann"));
        h.pusher(
            id,
            json!({"event": "client-x", "channel": "presence-room", "data": {}}),
        );
        let refused = h.received(id);
        assert_eq!(refused[0]["event"], "pusher:error", "{refused:?}");
    }

    #[test]
    fn the_leave_grace_hides_a_reload_from_the_members() {
        let apps = PusherSettings::parse_list(&format!("1:{KEY}:{APP_SECRET}")).expect("apps");
        let settings = PusherSettings {
            apps,
            ..PusherSettings::default()
        };
        let config = Config::default()
            .pusher(settings)
            .leave_grace(Duration::from_secs(5));
        let mut h = Harness::with(config);
        let (bob, ann) = (h.socket(), h.socket());
        h.join_presence(bob, "presence-room", json!("bob"));
        h.join_presence(ann, "presence-room", json!("ann"));
        h.clear();
        // Ann reloads the page: her socket drops, a new one subscribes within the grace.
        h.end(ann, LeaveReason::Closed);
        h.advance(1_000);
        let reloaded = h.socket();
        h.join_presence(reloaded, "presence-room", json!("ann"));
        h.advance(10_000);
        let heard = h.received(bob);
        assert!(
            events(&heard)
                .iter()
                .all(|e| !e.starts_with("pusher_internal:member")),
            "a reload is no news: {heard:?}"
        );
        // Gone for good: removed once the grace has run.
        h.end(reloaded, LeaveReason::Closed);
        h.advance(4_000);
        assert!(
            h.received(bob).iter().all(|m| m["event"] == "pusher:ping"),
            "not yet"
        );
        h.advance(2_000);
        let removed = h.received(bob);
        assert_eq!(
            events(&removed).last(),
            Some(&"pusher_internal:member_removed"),
            "{removed:?}"
        );
    }

    #[test]
    fn presence_refusals_change_nothing() {
        let mut h = harness();
        let (bob, other) = (h.socket(), h.socket());
        h.join_presence(bob, "presence-room", json!("bob"));
        // Signed for one user_id, sent with another: the signature fails.
        let signed = json!({"user_id": "eve"}).to_string();
        let socket = h.engine.socket_id(other);
        let auth = format!(
            "{KEY}:{}",
            auth::sign(APP_SECRET, &format!("{socket}:presence-room:{signed}"))
        );
        let tampered = json!({"user_id": "bob"}).to_string();
        h.pusher(other, json!({"event": "pusher:subscribe", "data": {"channel": "presence-room", "auth": auth, "channel_data": tampered}}));
        assert_eq!(h.received(other)[0]["event"], "pusher:subscription_error");
        // Signed for another app's key.
        let foreign = format!(
            "other:{}",
            auth::sign("x", &format!("{socket}:presence-room:{signed}"))
        );
        h.pusher(other, json!({"event": "pusher:subscribe", "data": {"channel": "presence-room", "auth": foreign, "channel_data": signed}}));
        assert_eq!(h.received(other)[0]["data"]["status"], 401);
        // One connection is one user.
        h.join_presence(other, "presence-a", json!("carol"));
        let error = h.join_presence(other, "presence-b", json!("dave"));
        assert_eq!(error["event"], "pusher:subscription_error");
        assert!(h.received(bob).is_empty(), "bob heard of none of it");
        assert_eq!(h.engine.pusher_users(0, "presence-room"), ["bob"]);
    }

    #[test]
    fn client_events_skip_the_sender_and_carry_the_user_id() {
        let mut h = harness();
        let (a, b) = (h.socket(), h.socket());
        h.join_presence(a, "presence-room", json!("ann"));
        h.join_presence(b, "presence-room", json!("ben"));
        h.clear();
        h.pusher(
            a,
            json!({"event": "client-typing", "channel": "presence-room", "data": {"n": 1}}),
        );
        assert!(h.received(a).is_empty(), "the sender hears nothing");
        assert_eq!(
            h.received(b),
            [
                json!({"event": "client-typing", "channel": "presence-room", "data": {"n": 1}, "user_id": "ann"})
            ]
        );
        // Public channels take none; nor does a channel the sender is not in.
        h.pusher(
            a,
            json!({"event": "pusher:subscribe", "data": {"channel": "news"}}),
        );
        h.clear();
        for channel in ["news", "private-elsewhere"] {
            h.pusher(
                a,
                json!({"event": "client-x", "channel": channel, "data": {}}),
            );
            let got = h.received(a);
            assert_eq!(got[0]["event"], "pusher:error", "{channel}: {got:?}");
        }
        // Ten a second; the eleventh is refused with 4301, and the connection stays.
        h.advance(1_000);
        for _ in 0..10 {
            h.pusher(
                a,
                json!({"event": "client-x", "channel": "presence-room", "data": {}}),
            );
        }
        assert_eq!(h.received(b).len(), 10);
        h.pusher(
            a,
            json!({"event": "client-x", "channel": "presence-room", "data": {}}),
        );
        assert_eq!(
            h.received(a),
            [
                json!({"event": "pusher:error", "data": {"code": 4301, "message": "more than 10 client events a second"}})
            ]
        );
        assert!(h.effects().is_empty(), "never closed for it");
        h.advance(1_000);
        h.pusher(
            a,
            json!({"event": "client-x", "channel": "presence-room", "data": {}}),
        );
        assert_eq!(h.received(b).len(), 1, "a second later it flows again");
        assert_eq!(
            h.engine.client_event_limits(),
            1,
            "only the sender has a bucket"
        );
        // Quiet since, its bucket full again: its next heartbeat deadline drops it.
        h.advance(29_000);
        h.heard(a);
        h.heard(b);
        h.advance(29_000);
        assert_eq!(
            h.engine.client_event_limits(),
            0,
            "dropped once full, at a heartbeat deadline"
        );
        h.clear();
        h.pusher(
            a,
            json!({"event": "client-x", "channel": "presence-room", "data": {}}),
        );
        assert_eq!(h.received(b).len(), 1, "still connected, and heard");
        h.end(a, LeaveReason::Closed);
        assert_eq!(
            h.engine.client_event_limits(),
            0,
            "it ends with its connection"
        );
    }

    #[test]
    fn a_silent_socket_is_pinged_then_closed_with_4201() {
        let mut h = harness();
        let id = h.socket();
        h.advance(30_000);
        assert_eq!(
            h.received(id),
            [json!({"event": "pusher:ping", "data": {}})]
        );
        assert_eq!(h.effects(), [Effect::Ping(id)], "a WebSocket Ping too");
        h.pusher(id, json!({"event": "pusher:ping", "data": {}}));
        assert_eq!(
            h.received(id),
            [json!({"event": "pusher:pong", "data": {}})]
        );
        h.advance(90_000);
        let told = h.received(id);
        assert!(told.iter().any(|m| m["data"]["code"] == 4201), "{told:?}");
        assert!(h
            .effects()
            .iter()
            .any(|e| matches!(e, Effect::Close { code: 4201, .. })));
    }

    #[test]
    fn shutdown_says_4200_and_terminate_4009() {
        let mut h = harness();
        let (a, b) = (h.socket(), h.socket());
        h.join_presence(a, "presence-room", json!("ann"));
        h.clear();
        assert_eq!(h.engine.pusher_terminate(0, "ann", h.now), 1);
        h.pump();
        assert_eq!(h.received(a)[0]["data"]["code"], 4009);
        assert!(h
            .effects()
            .iter()
            .any(|e| matches!(e, Effect::Close { conn, code: 4009, .. } if *conn == a)));
        assert_eq!(
            h.engine.pusher_terminate(1, "ann", h.now),
            0,
            "another app's user"
        );
        h.engine.begin_shutdown(h.now);
        h.pump();
        assert_eq!(
            h.received(b),
            [
                json!({"event": "pusher:error", "data": {"code": 4200, "message": "server shutting down"}})
            ]
        );
        assert_eq!(h.effects(), [Effect::GoingAway(b)]);
    }

    #[test]
    fn cache_channels_give_a_new_subscriber_the_last_event() {
        let mut h = harness();
        let (a, b) = (h.socket(), h.socket());
        h.pusher(
            a,
            json!({"event": "pusher:subscribe", "data": {"channel": "cache-scores"}}),
        );
        assert_eq!(
            events(&h.received(a)),
            [
                "pusher_internal:subscription_succeeded",
                "pusher:cache_miss"
            ]
        );
        h.engine.pusher_trigger(
            0,
            &["cache-scores".into()],
            "score",
            r#""3-1""#,
            None,
            h.now,
        );
        h.pump();
        h.subscribe(b, "private-cache-other", None);
        h.pusher(
            b,
            json!({"event": "pusher:subscribe", "data": {"channel": "cache-scores"}}),
        );
        let got = h.received(b);
        assert_eq!(
            got[2..],
            [
                json!({"event": "pusher_internal:subscription_succeeded", "channel": "cache-scores", "data": "{}"}),
                json!({"event": "score", "channel": "cache-scores", "data": "3-1"})
            ]
        );
        assert_eq!(
            events(&got[..2]),
            [
                "pusher_internal:subscription_succeeded",
                "pusher:cache_miss"
            ]
        );
        h.advance(crate::pusher::cache::CACHE_TTL_MS);
        let c = h.socket();
        h.pusher(
            c,
            json!({"event": "pusher:subscribe", "data": {"channel": "cache-scores"}}),
        );
        assert_eq!(
            events(&h.received(c))[1],
            "pusher:cache_miss",
            "forgotten after 30 min"
        );
    }

    impl Harness {
        /// `pusher:signin` with the app's own signature over `user_data`.
        fn signin(&mut self, id: ConnId, user_data: &Value) {
            let text = user_data.to_string();
            let socket = self.engine.socket_id(id);
            let auth = format!(
                "{KEY}:{}",
                auth::sign(APP_SECRET, &format!("{socket}::user::{text}"))
            );
            self.pusher(
                id,
                json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": text}}),
            );
        }
    }

    #[test]
    fn signin_server_to_user_channels_and_watchlists() {
        let mut h = harness();
        let (ann, bob1, bob2) = (h.socket(), h.socket(), h.socket());
        // Ann watches bob before he is online: told nothing yet.
        h.signin(ann, &json!({"id": "ann", "watchlist": ["bob", "carl"]}));
        let got = h.received(ann);
        assert_eq!(events(&got), ["pusher:signin_success"]);
        assert_eq!(
            got[0]["data"]["user_data"],
            json!({"id": "ann", "watchlist": ["bob", "carl"]}).to_string()
        );
        // Bob signs in on two sockets: ann hears "online" once.
        h.signin(bob1, &json!({"id": "bob"}));
        h.signin(bob2, &json!({"id": "bob"}));
        let online = h.received(ann);
        assert_eq!(online.len(), 1, "{online:?}");
        assert_eq!(
            nested(&online[0]),
            json!({"events": [{"name": "online", "user_ids": ["bob"]}]})
        );
        // His own channel: his sockets may subscribe, ann may not.
        for id in [bob1, bob2] {
            h.pusher(id, json!({"event": "pusher:subscribe", "data": {"channel": "#server-to-user-bob", "auth": ""}}));
        }
        h.pusher(ann, json!({"event": "pusher:subscribe", "data": {"channel": "#server-to-user-bob", "auth": ""}}));
        assert_eq!(h.received(ann)[0]["event"], "pusher:subscription_error");
        h.clear();
        let sent = h.engine.pusher_trigger(
            0,
            &["#server-to-user-bob".into()],
            "dm",
            r#""hi""#,
            None,
            h.now,
        );
        h.pump();
        assert_eq!(sent, 2, "both of bob's sockets");
        // A later watcher hears who is online at once.
        let dan = h.socket();
        h.signin(dan, &json!({"id": "dan", "watchlist": ["bob"]}));
        let got = h.received(dan);
        assert_eq!(
            events(&got),
            ["pusher:signin_success", "pusher_internal:watchlist_events"]
        );
        // Bob goes: offline once his last signed-in socket does.
        h.end(bob1, LeaveReason::Closed);
        assert!(h.received(ann).is_empty());
        h.end(bob2, LeaveReason::Closed);
        assert_eq!(
            nested(&h.received(ann)[0]),
            json!({"events": [{"name": "offline", "user_ids": ["bob"]}]})
        );
        // Terminating a signed-in user closes its sockets with 4009.
        assert_eq!(h.engine.pusher_terminate(0, "dan", h.now), 1);
    }

    #[test]
    fn refused_signins_say_4009_or_4302_and_change_nothing() {
        let mut h = harness();
        let id = h.socket();
        let socket = h.engine.socket_id(id);
        let forged = format!(
            "{KEY}:{}",
            auth::sign("wrong", &format!("{socket}::user::{{\"id\":\"x\"}}"))
        );
        h.pusher(id, json!({"event": "pusher:signin", "data": {"auth": forged, "user_data": "{\"id\":\"x\"}"}}));
        assert_eq!(h.received(id)[0]["data"]["code"], 4009);
        let long: Vec<String> = (0..101).map(|i| format!("u{i}")).collect();
        h.signin(id, &json!({"id": "x", "watchlist": long}));
        assert_eq!(h.received(id)[0]["data"]["code"], 4302);
        h.signin(id, &json!({"id": ""}));
        assert_eq!(h.received(id)[0]["data"]["code"], 4009);
        assert_eq!(h.engine.roster().users_online(), 0, "nobody signed in");
        h.join_presence(id, "presence-room", json!("ann"));
        h.signin(id, &json!({"id": "bob"}));
        assert_eq!(
            h.received(id)[0]["data"]["code"],
            4009,
            "one connection is one user"
        );
        assert!(h.effects().is_empty(), "a refused sign-in closes nothing");
    }

    #[test]
    fn an_app_is_a_namespace_native_clients_do_not_see() {
        let mut h = harness();
        let dashboard = h.open("dash", "watch=*");
        let native = h.open("ann", "channel=presence-room");
        h.clear();
        let socket = h.socket();
        h.join_presence(socket, "presence-room", json!("ann"));
        assert!(
            h.received(dashboard).is_empty(),
            "a watcher of every channel sees no app's"
        );
        assert!(
            h.received(native).is_empty(),
            "the native channel of that name is another"
        );
        assert_eq!(h.engine.channels_with_members(), ["presence-room"]);
        assert_eq!(h.engine.pusher_users(0, "presence-room"), ["ann"]);
        assert!(h.engine.pusher_users(1, "presence-room").is_empty());
    }
}

#[test]
fn a_watched_user_goes_offline_after_its_grace_and_watchers_are_forgotten() {
    let mut h = Harness::with(Config {
        leave_grace: Duration::from_millis(500),
        ..Config::default()
    });
    let w = h.open("w", "watch=quiet");
    h.command(w, r#"{"type":"watch_users","users":["alice"]}"#);
    assert_eq!(
        h.received(w).last(),
        Some(&json!({"type":"users","online":[],"offline":{"alice":null}}))
    );
    let one = h.open("alice", "");
    let two = h.open("alice", "channel=dev");
    assert_eq!(h.received(w), [json!({"type":"online","user":"alice"})]);
    h.advance(1_000);
    h.end(one, LeaveReason::Closed);
    h.end(two, LeaveReason::Closed);
    h.advance(499);
    assert!(h.received(w).is_empty(), "inside the grace");
    h.advance(1);
    assert_eq!(
        h.received(w),
        [json!({"type":"offline","user":"alice","last_seen":ORIGIN_MS + 1_000})],
        "last seen when its last connection ended, told when the grace ended"
    );
    h.end(w, LeaveReason::Closed);
    assert!(h.engine.watched_users.is_empty(), "nothing kept for w");
}

#[cfg(feature = "cluster")]
#[test]
fn in_a_cluster_a_watcher_s_answer_waits_for_redis_and_comes_before_any_news() {
    use crate::cluster::resp::Reply;
    let mut h = Harness::with(Config::default());
    h.engine = super::cluster_last_seen::tests::live_engine();
    let bulk = |text: &str| Reply::Bulk(Some(text.as_bytes().to_vec()));
    let note = |text: &str| {
        Reply::Array(Some(vec![
            bulk("message"),
            bulk("rollcall:events"),
            bulk(text),
        ]))
    };
    let w = h.open("w", "channel=quiet");
    // Its join went to Redis: answered.
    let (sent, _) = h.engine.cluster_commands();
    for _ in sent {
        h.engine.cluster_reply(Reply::Integer(1), h.now);
    }
    h.pump();
    h.received(w);

    h.command(w, r#"{"type":"watch_users","users":["alice","bob"]}"#);
    let (sent, _) = h.engine.cluster_commands();
    assert_eq!(sent.len(), 1, "one MGET");
    assert!(h.received(w).is_empty(), "the answer waits for Redis");
    // alice arrives on another node meanwhile: w hears it in the answer, not before.
    h.engine
        .cluster_push(note("J\tlobby\talice\t1\t1\t{}\tn2"), h.now);
    h.pump();
    assert!(h.received(w).is_empty(), "no news before the answer");
    let reply = Reply::Array(Some(vec![bulk("111"), bulk("222")]));
    h.engine.cluster_reply(reply, h.now);
    h.pump();
    assert_eq!(
        h.received(w),
        [json!({"type":"users","online":["alice"],"offline":{"bob":222}})],
        "alice online now; bob last seen as Redis keeps it"
    );
    // alice leaves: the note's time, as is.
    h.engine
        .cluster_push(note("L\tlobby\talice\t2\tclosed\t1234\tn2"), h.now);
    h.pump();
    assert_eq!(
        h.received(w),
        [json!({"type":"offline","user":"alice","last_seen":1234})]
    );
}
