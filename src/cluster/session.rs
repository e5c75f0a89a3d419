//! A node's session with Redis, as a pure state machine: replies and pushes in, commands out,
//! and what the loop must do next (connect, drop the links, apply a note, refresh clients).
//! No sockets and no clock: the loop owns the two connections (`server::redis_link`), passes
//! `now` in, and writes what [`Session::take_commands`] and [`Session::take_note_commands`]
//! return.
//!
//! The life of a session: *disconnected* (retrying after a growing pause) → *connected*
//! (logged in, script loaded, holdings synced, subscribed) → *live* once the snapshot taken
//! after the subscription is loaded; any failure goes back to disconnected. While live the
//! session refreshes its liveness every TTL/4 for 3/4 of the TTL.
//!
//! Invariants:
//! - replies come back in the order of the commands (`expect` holds what each answers and
//!   when it was sent); a reply nothing asked for, an error reply, or a first reply older
//!   than the TTL drops the session;
//! - notes that arrive while a snapshot is on its way are held back and handed out after
//!   it, so the view never applies a note twice nor misses one;
//! - after a failure nothing is replayed: the next connection syncs everything the node
//!   holds; once the node said goodbye (shutdown) it sends no more changes.

use std::collections::VecDeque;

use super::note::Note;
use super::resp::Reply;
use super::view::View;
use super::{Command, Commands, RedisAddress};
use crate::model::{Json, LeaveReason, Meta};
use crate::wheel::Millis;

/// The longest pause between two ticks, whatever the TTL.
const MAX_TICK_MS: Millis = 1_000;
/// The first wait before connecting again after a failure; it doubles up to [`MAX_RETRY_MS`].
pub const FIRST_RETRY_MS: Millis = 250;
/// The longest wait between two attempts.
pub const MAX_RETRY_MS: Millis = 4_000;

/// What a reply on the command connection answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Login,
    Script,
    Sync,
    Snapshot,
    Beat,
    Change,
    Goodbye,
    /// Users' last-seen times for the engine's lookup `id`, of `users` users.
    LastSeen {
        id: u64,
        users: usize,
    },
}

/// What the loop must do after a call.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Nothing more.
    Nothing,
    /// Open both connections, then call [`Session::connected`].
    Connect,
    /// Drop both connections, then call [`Session::fell`] with this reason.
    Fall(String),
    /// Move the view with this note ([`View::apply`]) and tell local clients; the node that
    /// made the change, when the note names it.
    Note(Note, Option<String>),
    /// A snapshot was loaded: the node is live. Refresh local clients (every channel when it
    /// `became_live`, else the `changed` ones), then apply the held-back `notes` in order.
    Loaded {
        /// The node was not live before.
        became_live: bool,
        /// The channels whose presence differs from the view before the snapshot.
        changed: Vec<String>,
        /// Notes that arrived while the snapshot was on its way, each with its origin.
        notes: Vec<(Note, Option<String>)>,
    },
    /// The answer to the lookup [`Session::look_up_last_seen`] sent as `id`: each user's
    /// last-seen time (Unix ms) as Redis keeps it, in order.
    LastSeen {
        /// The lookup.
        id: u64,
        /// One per user asked about.
        values: Vec<Option<u64>>,
    },
}

/// What a failure changed (see [`Session::fell`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fell {
    /// The node was live: local clients must switch to local presence.
    pub was_live: bool,
    /// The first failure of this outage (worth a warning; later ones are debug).
    pub first: bool,
    /// When the next attempt is due.
    pub retry_at: Millis,
}

/// One node's session with the cluster's Redis.
#[derive(Debug)]
pub struct Session {
    address: RedisAddress,
    commands: Commands,
    ttl_ms: Millis,
    /// Unix milliseconds at loop time 0: the clock the script records last-seen times in.
    unix_origin_ms: u64,
    connected: bool,
    expect: VecDeque<(Expect, Millis)>,
    view: View,
    /// Notes that arrived while a snapshot was on its way: applied after it.
    held_back: Option<Vec<(Note, Option<String>)>>,
    live: bool,
    /// Whether the current outage was reported.
    outage_reported: bool,
    next_beat: Millis,
    retry_at: Millis,
    retry_ms: Millis,
    nodes: u64,
    commands_sent: u64,
    /// Set once this node said goodbye: no more changes are sent.
    leaving: bool,
    /// Commands for the command connection, in order.
    outgoing: Vec<Command>,
    /// Commands for the notes connection (its login and subscription).
    outgoing_notes: Vec<Command>,
    /// Without the `cluster` feature no session can exist: an `Option<Session>` is always
    /// `None`, and the compiler drops every use of one (the engine's cluster code included).
    #[cfg(not(feature = "cluster"))]
    _never: std::convert::Infallible,
}

impl Session {
    /// A disconnected session of node `commands.node()` with Redis at `address`; it tries to
    /// connect at its first tick.
    #[cfg(feature = "cluster")]
    pub fn new(address: RedisAddress, commands: Commands, ttl_ms: Millis) -> Session {
        Session {
            address,
            commands,
            ttl_ms,
            unix_origin_ms: 0,
            connected: false,
            expect: VecDeque::new(),
            view: View::default(),
            held_back: None,
            live: false,
            outage_reported: false,
            next_beat: 0,
            retry_at: 0,
            retry_ms: FIRST_RETRY_MS,
            nodes: 0,
            commands_sent: 0,
            leaving: false,
            outgoing: Vec::new(),
            outgoing_notes: Vec::new(),
        }
    }

    /// Sets the Unix milliseconds at loop time 0 (the engine's), in which last-seen times
    /// are written.
    pub fn set_unix_origin(&mut self, unix_origin_ms: u64) {
        self.unix_origin_ms = unix_origin_ms;
    }

    fn unix_ms(&self, now: Millis) -> u64 {
        self.unix_origin_ms.saturating_add(now)
    }

    /// The Redis server.
    pub fn address(&self) -> &RedisAddress {
        &self.address
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        self.commands.node()
    }

    /// How often [`Session::tick`] should run: every second, or every TTL/4 when shorter.
    pub fn tick_ms(&self) -> Millis {
        MAX_TICK_MS.min(self.ttl_ms / 4).max(1)
    }

    /// True when the cluster view is in force.
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// The cluster-wide presence (meaningful while live).
    pub fn view(&self) -> &View {
        &self.view
    }

    /// The view, to move with a note.
    pub fn view_mut(&mut self) -> &mut View {
        &mut self.view
    }

    /// Live nodes as of the last refresh (0 while not live).
    pub fn nodes(&self) -> u64 {
        if self.live {
            self.nodes
        } else {
            0
        }
    }

    /// Commands sent so far.
    pub fn commands_sent(&self) -> u64 {
        self.commands_sent
    }

    /// True while a goodbye waits for its answer (a shutdown waits for it).
    pub fn saying_goodbye(&self) -> bool {
        self.expect.iter().any(|(e, _)| *e == Expect::Goodbye)
    }

    /// The commands queued for the command connection since the last call.
    pub fn take_commands(&mut self) -> Vec<Command> {
        std::mem::take(&mut self.outgoing)
    }

    /// The commands queued for the notes connection since the last call.
    pub fn take_note_commands(&mut self) -> Vec<Command> {
        std::mem::take(&mut self.outgoing_notes)
    }

    /// The periodic look at `now`: connect when due, give up on replies that stopped
    /// coming, refresh liveness when due.
    pub fn tick(&mut self, now: Millis) -> Step {
        if !self.connected {
            let due = now >= self.retry_at && !self.leaving;
            return if due { Step::Connect } else { Step::Nothing };
        }
        let stuck = self
            .expect
            .front()
            .is_some_and(|(_, sent)| now.saturating_sub(*sent) > self.ttl_ms);
        if stuck {
            return Step::Fall("Redis stopped answering".into());
        }
        if self.live && now >= self.next_beat {
            self.next_beat = now + beat_interval(self.ttl_ms);
            let beat = self
                .commands
                .beat(liveness_ms(self.ttl_ms), self.unix_ms(now));
            self.send(beat, Expect::Beat, now);
        }
        Step::Nothing
    }

    /// Both connections are open at `now`: queue what a new node says (log in, load the
    /// script, sync `holdings`: channel, user, connections, meta) and subscribe.
    pub fn connected<'a>(
        &mut self,
        now: Millis,
        holdings: impl Iterator<Item = (&'a str, &'a str, u32, &'a Meta)>,
    ) {
        self.connected = true;
        for login in super::login(&self.address, true) {
            self.send(login, Expect::Login, now);
        }
        let load = self.commands.load_script();
        self.send(load, Expect::Script, now);
        let sync = self
            .commands
            .sync(liveness_ms(self.ttl_ms), self.unix_ms(now), holdings);
        self.send(sync, Expect::Sync, now);
        self.next_beat = now + beat_interval(self.ttl_ms);
        // The notes connection gets no replies but pushes (and a refused AUTH closes it).
        self.outgoing_notes
            .extend(super::login(&self.address, false));
        self.outgoing_notes.push(self.commands.subscribe());
        self.commands_sent += 1;
    }

    /// A failure at `now` (either connection, or a reply that cannot be trusted): the loop
    /// has dropped both connections. The session retries after a growing pause.
    pub fn fell(&mut self, now: Millis) -> Fell {
        self.connected = false;
        self.expect.clear();
        self.held_back = None;
        self.outgoing.clear();
        self.outgoing_notes.clear();
        self.retry_at = now + self.retry_ms;
        self.retry_ms = (self.retry_ms * 2).min(MAX_RETRY_MS);
        let first = !std::mem::replace(&mut self.outage_reported, true);
        Fell {
            was_live: std::mem::take(&mut self.live),
            first,
            retry_at: self.retry_at,
        }
    }

    /// A reply on the command connection at `now`. `holdings` is what the node holds now,
    /// synced again when its liveness had lapsed.
    pub fn on_reply<'a>(
        &mut self,
        reply: Reply,
        now: Millis,
        holdings: impl Iterator<Item = (&'a str, &'a str, u32, &'a Meta)>,
    ) -> Step {
        let Some((expect, _)) = self.expect.pop_front() else {
            return Step::Fall("a reply from Redis that nothing asked for".into());
        };
        if let Reply::Error(error) = &reply {
            // A refused login, or a script that failed: the shared state cannot be trusted
            // to hold this node's changes; start over (the reconnect re-syncs).
            return Step::Fall(format!("Redis refused {expect:?}: {error}"));
        }
        match expect {
            Expect::Login | Expect::Script | Expect::Change | Expect::Goodbye => Step::Nothing,
            Expect::Sync | Expect::Beat => match super::parse_beat(&reply) {
                Some(beat) => {
                    self.nodes = beat.nodes;
                    if beat.lapsed {
                        // Late refreshes (a stalled process, a slow Redis) let the others
                        // reap this node: put back what it holds.
                        log::warn!("cluster: this node's liveness had lapsed; syncing again");
                        let sync = self.commands.sync(
                            liveness_ms(self.ttl_ms),
                            self.unix_ms(now),
                            holdings,
                        );
                        self.send(sync, Expect::Sync, now);
                    }
                    Step::Nothing
                }
                None => Step::Fall("a refresh reply of the wrong shape".into()),
            },
            Expect::Snapshot => match super::parse_snapshot(reply) {
                Some(snapshot) => {
                    let changed = self.view.load(snapshot);
                    let became_live = !std::mem::replace(&mut self.live, true);
                    self.retry_ms = FIRST_RETRY_MS;
                    self.outage_reported = false;
                    Step::Loaded {
                        became_live,
                        changed,
                        notes: self.held_back.take().unwrap_or_default(),
                    }
                }
                None => Step::Fall("a snapshot reply of the wrong shape".into()),
            },
            Expect::LastSeen { id, users } => match super::parse_last_seen(reply, users) {
                Some(values) => Step::LastSeen { id, values },
                None => Step::Fall("a last-seen reply of the wrong shape".into()),
            },
        }
    }

    /// A push on the notes connection at `now`: the subscription's confirmation (a snapshot
    /// is asked for), a note, or a refusal.
    pub fn on_push(&mut self, push: Reply, now: Millis) -> Step {
        if super::is_subscribed(&push) {
            self.resnapshot(now);
            return Step::Nothing;
        }
        let Some(payload) = super::pushed_message(&push) else {
            return match push {
                Reply::Error(error) => {
                    Step::Fall(format!("Redis refused the subscription: {error}"))
                }
                _ => Step::Nothing,
            };
        };
        match Note::parse_with_origin(payload) {
            Ok((note, origin)) => match self.held_back.as_mut() {
                Some(held_back) => {
                    held_back.push((note, origin));
                    Step::Nothing
                }
                None => Step::Note(note, origin),
            },
            Err(_) => {
                log::warn!(
                    "cluster: ignored a note this node cannot read: {:?}",
                    String::from_utf8_lossy(payload)
                );
                Step::Nothing
            }
        }
    }

    /// Asks for a snapshot (after a gap in the notes, or once subscribed); notes are held
    /// back until it arrives.
    pub fn resnapshot(&mut self, now: Millis) {
        if self.held_back.is_some() || !self.connected {
            return;
        }
        let snapshot = self.commands.snapshot();
        self.send(snapshot, Expect::Snapshot, now);
        self.held_back = Some(Vec::new());
    }

    /// This node now holds `conns` connections of `user` in `channel` (`None`: none; it
    /// left with `leave`, its last connection here gone at `last_seen_ms`, Unix ms), with
    /// `meta` when the change set one.
    #[allow(clippy::too_many_arguments)]
    pub fn hold(
        &mut self,
        channel: &str,
        user: &str,
        conns: Option<u32>,
        meta: Option<&Meta>,
        leave: Option<LeaveReason>,
        last_seen_ms: u64,
        now: Millis,
    ) {
        if self.leaving || !self.connected {
            return;
        }
        let command = match conns {
            Some(conns) => self.commands.hold(channel, user, conns, meta),
            None => self.commands.release(
                channel,
                user,
                leave.unwrap_or(LeaveReason::Closed),
                last_seen_ms,
            ),
        };
        self.send(command, Expect::Change, now);
    }

    /// Asks Redis for `users`' last-seen times, answered by a [`Step::LastSeen`] with `id`.
    /// False (nothing sent) while not live: the caller answers from what it knows.
    pub fn look_up_last_seen<'a>(
        &mut self,
        id: u64,
        users: impl ExactSizeIterator<Item = &'a str>,
        now: Millis,
    ) -> bool {
        if !self.live || self.leaving {
            return false;
        }
        let count = users.len();
        let lookup = self.commands.last_seen(users);
        self.send(lookup, Expect::LastSeen { id, users: count }, now);
        true
    }

    /// A publication for the other nodes (while live).
    pub fn publish(&mut self, channel: &str, from: Option<&str>, data: &Json, now: Millis) {
        if self.live {
            let publish = self.commands.publish(channel, from, data);
            self.send(publish, Expect::Change, now);
        }
    }

    /// Publishes a named event's note (from [`crate::cluster::note::Note::named`]).
    pub fn publish_named(&mut self, note: &str, now: Millis) {
        if self.live {
            let publish = self.commands.publish_named(note);
            self.send(publish, Expect::Change, now);
        }
    }

    /// Graceful shutdown: the node's users leave the cluster with reason `shutdown`; nothing
    /// is sent after this.
    pub fn goodbye(&mut self, now: Millis) {
        if std::mem::replace(&mut self.leaving, true) {
            return;
        }
        let goodbye = self
            .commands
            .goodbye(LeaveReason::Shutdown, self.unix_ms(now));
        self.send(goodbye, Expect::Goodbye, now);
    }

    fn send(&mut self, command: Command, expect: Expect, now: Millis) {
        if !self.connected {
            return;
        }
        self.outgoing.push(command);
        self.expect.push_back((expect, now));
        self.commands_sent += 1;
    }
}

/// A node refreshes its liveness every quarter of the TTL...
fn beat_interval(ttl_ms: Millis) -> Millis {
    ttl_ms / 4
}

/// ...and each refresh holds for three quarters. A node that dies is then expired between
/// TTL/2 and 3·TTL/4 after its last refresh, and reaped at a survivor's next refresh, at most
/// TTL/4 later: within the TTL. A live node may miss one refresh without being reaped.
fn liveness_ms(ttl_ms: Millis) -> Millis {
    ttl_ms * 3 / 4
}

#[cfg(all(test, feature = "cluster"))]
mod tests {
    use super::*;

    const TTL: Millis = 4_000;

    fn session(url: &str) -> Session {
        let address: RedisAddress = url.parse().expect("a Redis URL");
        let commands = Commands::new("n1", address.db, 60_000);
        Session::new(address, commands, TTL)
    }

    /// The first word of each command, for short assertions.
    fn verbs(commands: &[Command]) -> Vec<String> {
        commands
            .iter()
            .map(|c| String::from_utf8_lossy(&c[0]).to_uppercase())
            .collect()
    }

    fn ok() -> Reply {
        Reply::Status("OK".into())
    }

    fn beat(nodes: i64, lapsed: bool) -> Reply {
        Reply::Array(Some(vec![
            Reply::Integer(nodes),
            Reply::Integer(i64::from(lapsed)),
        ]))
    }

    fn bulk(bytes: &[u8]) -> Reply {
        Reply::Bulk(Some(bytes.to_vec()))
    }

    fn push(payload: &[u8]) -> Reply {
        Reply::Array(Some(vec![
            bulk(b"message"),
            bulk(b"rollcall:events"),
            bulk(payload),
        ]))
    }

    fn subscribed() -> Reply {
        Reply::Array(Some(vec![
            bulk(b"subscribe"),
            bulk(b"rollcall:events"),
            Reply::Integer(1),
        ]))
    }

    /// A snapshot with one channel `lobby` at `seq` holding `alice` (2 connections).
    fn snapshot(seq: i64) -> Reply {
        Reply::Array(Some(vec![Reply::Array(Some(vec![
            bulk(b"lobby"),
            Reply::Integer(seq),
            Reply::Array(Some(vec![bulk(b"alice"), Reply::Integer(2), bulk(b"{}")])),
        ]))]))
    }

    fn no_holdings() -> impl Iterator<Item = (&'static str, &'static str, u32, &'static Meta)> {
        std::iter::empty()
    }

    /// A session taken to live at `now`: connected, script and sync answered, subscribed,
    /// snapshot loaded.
    fn live_at(now: Millis) -> Session {
        let mut s = session("redis://127.0.0.1:6379");
        assert_eq!(s.tick(now), Step::Connect);
        s.connected(now, no_holdings());
        s.take_commands();
        s.take_note_commands();
        assert_eq!(s.on_reply(bulk(b"sha"), now, no_holdings()), Step::Nothing);
        assert_eq!(
            s.on_reply(beat(1, false), now, no_holdings()),
            Step::Nothing
        );
        assert_eq!(s.on_push(subscribed(), now), Step::Nothing);
        assert_eq!(verbs(&s.take_commands()), ["EVALSHA"], "the snapshot");
        let loaded = s.on_reply(snapshot(1), now, no_holdings());
        assert!(
            matches!(
                loaded,
                Step::Loaded {
                    became_live: true,
                    ..
                }
            ),
            "{loaded:?}"
        );
        assert!(s.is_live());
        s
    }

    #[test]
    fn connecting_logs_in_loads_syncs_and_subscribes() {
        let mut s = session("redis://:pw@127.0.0.1:6379/2");
        assert_eq!(s.tick(0), Step::Connect);
        let meta = Meta::empty();
        s.connected(0, [("lobby", "alice", 2, &meta)].into_iter());
        assert_eq!(
            verbs(&s.take_commands()),
            ["AUTH", "SELECT", "SCRIPT", "EVALSHA"],
            "login, database, script, sync"
        );
        assert_eq!(verbs(&s.take_note_commands()), ["AUTH", "SUBSCRIBE"]);
        assert_eq!(s.commands_sent(), 5);
        assert!(!s.is_live(), "live only once a snapshot is loaded");
        assert_eq!(s.nodes(), 0);
    }

    #[test]
    fn notes_during_the_snapshot_are_held_back_then_handed_out_in_order() {
        let mut s = session("redis://127.0.0.1:6379");
        s.tick(0);
        s.connected(0, no_holdings());
        s.on_reply(bulk(b"sha"), 0, no_holdings());
        s.on_reply(beat(3, false), 0, no_holdings());
        s.on_push(subscribed(), 0);
        let first = b"J\tlobby\tbob\t2\t1\t{}";
        let second = b"L\tlobby\tbob\t3\tclosed\t9";
        assert_eq!(s.on_push(push(first), 5), Step::Nothing, "held back");
        assert_eq!(s.on_push(push(second), 6), Step::Nothing, "held back");
        let Step::Loaded {
            became_live,
            changed,
            notes,
        } = s.on_reply(snapshot(1), 7, no_holdings())
        else {
            panic!("a snapshot loads");
        };
        assert!(became_live);
        assert_eq!(changed, ["lobby"]);
        let expected: Vec<(Note, Option<String>)> = [&first[..], &second[..]]
            .iter()
            .map(|n| (Note::parse(n).expect("a note"), None))
            .collect();
        assert_eq!(notes, expected);
        assert_eq!(s.nodes(), 3);
        // Live: a note is applied at once.
        assert!(matches!(s.on_push(push(first), 8), Step::Note(..)));
        // A note nobody can read is ignored.
        assert_eq!(s.on_push(push(b"garbage"), 9), Step::Nothing);
    }

    #[test]
    fn liveness_is_refreshed_every_quarter_ttl_and_a_lapse_syncs_again() {
        let mut s = live_at(0);
        assert_eq!(s.tick(TTL / 4 - 1), Step::Nothing);
        assert!(s.take_commands().is_empty(), "not due yet");
        assert_eq!(s.tick(TTL / 4), Step::Nothing);
        assert_eq!(verbs(&s.take_commands()), ["EVALSHA"], "a refresh");
        let meta = Meta::empty();
        let holdings = [("lobby", "alice", 1, &meta)];
        assert_eq!(
            s.on_reply(beat(2, true), TTL / 4, holdings.into_iter()),
            Step::Nothing
        );
        assert_eq!(verbs(&s.take_commands()), ["EVALSHA"], "the sync again");
        assert_eq!(s.nodes(), 2);
    }

    #[test]
    fn replies_that_stop_coming_or_cannot_be_trusted_drop_the_session() {
        let mut s = live_at(0);
        s.tick(TTL / 4);
        assert_eq!(
            s.tick(TTL / 4 + TTL),
            Step::Nothing,
            "exactly the TTL: still waiting"
        );
        assert!(matches!(s.tick(TTL / 4 + TTL + 1), Step::Fall(_)), "stuck");

        let mut s = live_at(0);
        assert!(
            matches!(s.on_reply(ok(), 1, no_holdings()), Step::Fall(_)),
            "a reply nothing asked for"
        );
        let mut s = live_at(0);
        s.hold("lobby", "alice", Some(1), None, None, 0, 1);
        let refused = s.on_reply(Reply::Error("NOSCRIPT".into()), 2, no_holdings());
        assert!(matches!(refused, Step::Fall(why) if why.contains("NOSCRIPT")));
        let mut s = live_at(0);
        s.tick(TTL / 4);
        let wrong = s.on_reply(ok(), TTL / 4, no_holdings());
        assert!(
            matches!(wrong, Step::Fall(_)),
            "a refresh reply of the wrong shape"
        );
        let mut s = live_at(0);
        let refused = s.on_push(Reply::Error("NOAUTH".into()), 1);
        assert!(matches!(refused, Step::Fall(_)));
    }

    #[test]
    fn after_a_failure_it_retries_after_a_doubling_pause() {
        let mut s = live_at(0);
        let fell = s.fell(100);
        assert!(fell.was_live && fell.first);
        assert!(!s.is_live() && s.nodes() == 0);
        assert_eq!(fell.retry_at, 100 + FIRST_RETRY_MS);
        assert_eq!(s.tick(100 + FIRST_RETRY_MS - 1), Step::Nothing);
        assert_eq!(s.tick(100 + FIRST_RETRY_MS), Step::Connect);
        let mut at = 100 + FIRST_RETRY_MS;
        let mut pauses = Vec::new();
        for _ in 0..6 {
            let fell = s.fell(at);
            assert!(!fell.was_live && !fell.first, "the same outage");
            pauses.push(fell.retry_at - at);
            at = fell.retry_at;
        }
        assert_eq!(pauses, [500, 1_000, 2_000, 4_000, 4_000, 4_000]);
        // Nothing is queued while disconnected, nor replayed later.
        s.hold("lobby", "alice", Some(1), None, None, 0, at);
        s.publish("lobby", None, &Json::parse("1").expect("json"), at);
        assert!(s.take_commands().is_empty());
        // A loaded snapshot ends the outage: the pause starts small again.
        let mut s = live_at(0);
        s.fell(0);
        s.tick(FIRST_RETRY_MS);
        s.connected(FIRST_RETRY_MS, no_holdings());
        s.on_reply(bulk(b"sha"), FIRST_RETRY_MS, no_holdings());
        s.on_reply(beat(1, false), FIRST_RETRY_MS, no_holdings());
        s.on_push(subscribed(), FIRST_RETRY_MS);
        let loaded = s.on_reply(snapshot(1), FIRST_RETRY_MS, no_holdings());
        assert!(
            matches!(loaded, Step::Loaded { became_live: true, ref changed, .. } if changed.is_empty())
        );
        assert_eq!(
            s.fell(1_000),
            Fell {
                was_live: true,
                first: true,
                retry_at: 1_000 + FIRST_RETRY_MS
            }
        );
    }

    #[test]
    fn changes_and_publications_go_out_while_connected_and_live() {
        let mut s = live_at(0);
        s.hold("lobby", "alice", Some(2), None, None, 0, 1);
        s.hold(
            "lobby",
            "alice",
            None,
            None,
            Some(LeaveReason::Timeout),
            5,
            1,
        );
        s.publish("lobby", Some("alice"), &Json::parse("{}").expect("json"), 1);
        assert_eq!(verbs(&s.take_commands()), ["EVALSHA", "EVALSHA", "PUBLISH"]);
        for _ in 0..3 {
            assert_eq!(
                s.on_reply(Reply::Integer(1), 2, no_holdings()),
                Step::Nothing
            );
        }
        // Connected but not live yet: changes go (the sync covers them), publications not.
        let mut s = session("redis://127.0.0.1:6379");
        s.tick(0);
        s.connected(0, no_holdings());
        s.take_commands();
        s.hold("lobby", "bob", Some(1), None, None, 0, 1);
        s.publish("lobby", None, &Json::parse("1").expect("json"), 1);
        assert_eq!(verbs(&s.take_commands()), ["EVALSHA"]);
    }

    #[test]
    fn goodbye_is_said_once_and_then_nothing_is_sent() {
        let mut s = live_at(0);
        s.goodbye(1);
        s.goodbye(2);
        assert_eq!(verbs(&s.take_commands()), ["EVALSHA"], "one goodbye");
        assert!(s.saying_goodbye());
        s.hold("lobby", "alice", Some(1), None, None, 0, 3);
        assert!(s.take_commands().is_empty(), "no change after the goodbye");
        assert_eq!(
            s.on_reply(Reply::Integer(1), 4, no_holdings()),
            Step::Nothing
        );
        assert!(!s.saying_goodbye());
        // A node that left does not connect again.
        s.fell(5);
        assert_eq!(s.tick(10_000), Step::Nothing);
    }

    #[test]
    fn last_seen_lookups_go_out_while_live_and_come_back_by_id() {
        let mut s = session("redis://127.0.0.1:6379");
        s.set_unix_origin(1_000_000);
        assert!(
            !s.look_up_last_seen(1, ["alice"].into_iter(), 0),
            "not live: nothing to ask"
        );
        let mut s = live_at(0);
        s.set_unix_origin(1_000_000);
        assert!(s.look_up_last_seen(7, ["alice", "bob"].into_iter(), 5));
        let sent = s.take_commands();
        assert_eq!(verbs(&sent), ["MGET"]);
        assert_eq!(sent[0].len(), 3, "one key per user");
        let reply = Reply::Array(Some(vec![bulk(b"1733400000123"), Reply::Bulk(None)]));
        assert_eq!(
            s.on_reply(reply, 6, no_holdings()),
            Step::LastSeen {
                id: 7,
                values: vec![Some(1_733_400_000_123), None]
            }
        );
        // A reply of the wrong shape cannot be trusted.
        s.look_up_last_seen(8, ["alice"].into_iter(), 7);
        let wrong = s.on_reply(Reply::Integer(3), 8, no_holdings());
        assert!(matches!(wrong, Step::Fall(_)), "{wrong:?}");
        // A refresh reaps in the node's Unix clock: origin + loop time.
        let mut s = live_at(0);
        s.set_unix_origin(1_000_000);
        s.tick(TTL / 4);
        let beat = s.take_commands();
        assert_eq!(beat[0][6], (1_000_000 + TTL / 4).to_string().into_bytes());
    }

    #[test]
    fn a_gap_asks_for_one_snapshot_at_a_time() {
        let mut s = live_at(0);
        s.resnapshot(1);
        s.resnapshot(2);
        assert_eq!(
            verbs(&s.take_commands()),
            ["EVALSHA"],
            "one snapshot on its way"
        );
        assert_eq!(
            s.on_push(push(b"J\tlobby\tbob\t2\t1\t{}"), 3),
            Step::Nothing
        );
        let loaded = s.on_reply(snapshot(2), 4, no_holdings());
        assert!(
            matches!(loaded, Step::Loaded { became_live: false, ref notes, .. } if notes.len() == 1),
            "{loaded:?}"
        );
    }
}
