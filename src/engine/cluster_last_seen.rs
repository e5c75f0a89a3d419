//! Last seen across a cluster: Redis keeps each user's last-seen time (written by the
//! script on the user's cluster-wide leave, expiring after `--last-seen-ttl`), so a node
//! answers for users it never saw, and after a restart.
//!
//! How an answer is made:
//! - every cluster-wide leave note carries the time Redis now keeps, and each node records
//!   it in its bounded [`LastSeen`](crate::last_seen::LastSeen) (so `offline` events to
//!   watchers carry it without asking);
//! - a status answer with offline users (`GET /users/{id}`, `POST /users/status`, the
//!   `users` answer of `watch_users`) asks Redis for their times in one `MGET`, pipelined
//!   on the command connection: the loop never waits. The answer goes out when the reply
//!   arrives, with the later of Redis's time and the node's own; after [`LOOKUP_WAIT_MS`]
//!   without a reply, or when the connection falls, an HTTP request gets a 503 and a
//!   watcher gets the node's own times.
//! - While the cluster is not live, answers come from the node's own times at once.
//!
//! A watcher hears no `online`/`offline` of a user its waiting `users` answer names: that
//! answer, made when the reply arrives, tells the newer status, so the answer always comes
//! first.
//!
//! Invariant: a lookup is pending (in `pending`) from its question until its reply, its
//! time limit or the connection's fall, whichever comes first; a reply for a lookup no
//! longer pending is ignored.

use std::collections::HashMap;

use super::{Effect, Engine};
use crate::model::Json;
use crate::roster::ConnId;
use crate::wheel::Millis;

/// How long an answer waits for Redis before giving up (HTTP: 503).
pub const LOOKUP_WAIT_MS: Millis = 2_000;

/// The lookups sent to Redis and not answered yet.
#[derive(Default)]
pub(super) struct Lookups {
    next: u64,
    pending: HashMap<u64, Lookup>,
}

struct Lookup {
    asked_at: Millis,
    asker: Asker,
}

impl Lookups {
    /// True while `conn`'s `users` answer naming `user` waits for Redis (a scan of the
    /// pending lookups: a few at a time).
    pub(super) fn awaits(&self, conn: ConnId, user: &str) -> bool {
        !self.pending.is_empty()
            && self.pending.values().any(|lookup| {
                matches!(&lookup.asker, Asker::Watch { conn: c, users, .. }
                    if *c == conn && users.iter().any(|u| u == user))
            })
    }
}

/// Who waits for a lookup.
enum Asker {
    /// The socket layer (an HTTP request), answered with [`Effect::LastSeen`].
    Host,
    /// A connection's `watch_users`, whose `users` answer waits.
    Watch {
        conn: ConnId,
        users: Vec<String>,
        reference: Option<Json>,
    },
}

impl Engine {
    /// Asks the cluster's Redis for `users`' last-seen times at `now`. `Some(lookup)` when
    /// asked: the answer comes as [`Effect::LastSeen`] with that lookup (values in the
    /// order of `users`, or `None` if Redis did not answer in time). `None` when there is
    /// no live cluster to ask: [`Engine::user_presence`] is the whole answer.
    pub fn ask_last_seen<'a>(
        &mut self,
        users: impl ExactSizeIterator<Item = &'a str>,
        now: Millis,
    ) -> Option<u64> {
        self.ask(users, Asker::Host, now)
    }

    fn ask<'a>(
        &mut self,
        users: impl ExactSizeIterator<Item = &'a str>,
        asker: Asker,
        now: Millis,
    ) -> Option<u64> {
        let cluster = self.cluster.as_mut()?;
        let id = self.lookups.next;
        if !cluster.look_up_last_seen(id, users, now) {
            return None;
        }
        self.lookups.next += 1;
        let lookup = Lookup {
            asked_at: now,
            asker,
        };
        self.lookups.pending.insert(id, lookup);
        Some(id)
    }

    /// A `watch_users` answer waits for Redis: true when asked (the answer goes out when
    /// the reply arrives), false when it must go out now.
    pub(super) fn ask_for_watcher(
        &mut self,
        conn: ConnId,
        users: &[String],
        reference: Option<&Json>,
        now: Millis,
    ) -> bool {
        let asker = Asker::Watch {
            conn,
            users: users.to_vec(),
            reference: reference.cloned(),
        };
        let names = users.iter().map(String::as_str);
        self.ask(names, asker, now).is_some()
    }

    /// Redis answered lookup `id`.
    pub(super) fn last_seen_arrived(&mut self, id: u64, values: Vec<Option<u64>>) {
        if let Some(lookup) = self.lookups.pending.remove(&id) {
            self.answer(id, lookup.asker, Some(values));
        }
    }

    /// Gives up on the lookups asked before `now - LOOKUP_WAIT_MS`.
    pub(super) fn expire_lookups(&mut self, now: Millis) {
        let late: Vec<u64> = self
            .lookups
            .pending
            .iter()
            .filter(|(_, lookup)| now.saturating_sub(lookup.asked_at) >= LOOKUP_WAIT_MS)
            .map(|(&id, _)| id)
            .collect();
        for id in late {
            self.give_up(id);
        }
    }

    /// The Redis connection fell: no pending lookup will be answered.
    pub(super) fn fail_lookups(&mut self) {
        let all: Vec<u64> = self.lookups.pending.keys().copied().collect();
        for id in all {
            self.give_up(id);
        }
    }

    fn give_up(&mut self, id: u64) {
        if let Some(lookup) = self.lookups.pending.remove(&id) {
            log::debug!("cluster: last-seen lookup {id} unanswered");
            self.answer(id, lookup.asker, None);
        }
    }

    fn answer(&mut self, id: u64, asker: Asker, values: Option<Vec<Option<u64>>>) {
        match asker {
            Asker::Host => self.effects.push(Effect::LastSeen { lookup: id, values }),
            Asker::Watch {
                conn,
                users,
                reference,
            } => self.send_user_statuses(conn, &users, reference.as_ref(), values.as_deref()),
        }
    }

    /// A cluster-wide leave said `user` was last seen at `unix_ms`: remembered unless a
    /// later time is.
    pub(super) fn heard_last_seen(&mut self, user: &str, unix_ms: u64) {
        if self.last_seen.get(user).is_none_or(|known| known < unix_ms) {
            self.last_seen.record(user, unix_ms);
        }
    }

    /// When `user` was last seen as this node knows it, or Redis (`fetched`) does: the later.
    pub(super) fn later_last_seen(&self, user: &str, fetched: Option<u64>) -> Option<u64> {
        self.last_seen.get(user).max(fetched)
    }
}

#[cfg(all(test, feature = "cluster"))]
pub(super) mod tests {
    use super::*;
    use crate::cluster::resp::Reply;
    use crate::cluster::session::Session;
    use crate::cluster::Commands;
    use crate::config::Config;
    use crate::engine::Timer;

    const ORIGIN_MS: u64 = 1_700_000_000_000;

    fn bulk(text: &str) -> Reply {
        Reply::Bulk(Some(text.as_bytes().to_vec()))
    }

    fn effects(engine: &mut Engine, now: Millis) -> Vec<Effect> {
        let mut effects = Vec::new();
        engine.take_effects(now, &mut effects);
        effects
    }

    fn answers(engine: &mut Engine, now: Millis) -> Vec<(u64, Option<Vec<Option<u64>>>)> {
        effects(engine, now)
            .into_iter()
            .filter_map(|effect| match effect {
                Effect::LastSeen { lookup, values } => Some((lookup, values)),
                _ => None,
            })
            .collect()
    }

    /// An engine whose cluster session went live at time 0 (empty cluster).
    pub(in crate::engine) fn live_engine() -> Engine {
        let address: crate::cluster::RedisAddress =
            "redis://127.0.0.1:6379".parse().expect("a Redis URL");
        let session = Session::new(address, Commands::new("n1", 0, 60_000), 4_000);
        let mut engine = Engine::new(&Config::default(), ORIGIN_MS, 1, Some(session));
        engine.on_timer(Timer::ClusterTick, 0);
        engine.cluster_connected(0);
        engine.cluster_reply(bulk("sha"), 0);
        engine.cluster_reply(
            Reply::Array(Some(vec![Reply::Integer(1), Reply::Integer(0)])),
            0,
        );
        let subscribed = Reply::Array(Some(vec![
            bulk("subscribe"),
            bulk("rollcall:events"),
            Reply::Integer(1),
        ]));
        engine.cluster_push(subscribed, 0);
        engine.cluster_reply(Reply::Array(Some(Vec::new())), 0);
        assert!(engine.cluster_status().is_some_and(|status| status.live));
        engine.cluster_commands();
        effects(&mut engine, 0);
        engine
    }

    #[test]
    fn a_lookup_is_answered_by_its_reply_or_given_up_after_the_wait() {
        let mut engine = live_engine();
        let first = engine
            .ask_last_seen(["alice"].into_iter(), 10)
            .expect("asked");
        let (commands, _) = engine.cluster_commands();
        assert_eq!(commands.len(), 1, "one MGET");
        // No reply by the wait's end: given up at the first tick after it.
        engine.on_timer(Timer::ClusterTick, 10 + LOOKUP_WAIT_MS - 1);
        assert!(answers(&mut engine, 10 + LOOKUP_WAIT_MS - 1).is_empty());
        engine.on_timer(Timer::ClusterTick, 10 + LOOKUP_WAIT_MS);
        assert_eq!(answers(&mut engine, 0), [(first, None)]);
        // Its late reply changes nothing; the next lookup gets its own.
        let second = engine
            .ask_last_seen(["bob"].into_iter(), 3_000)
            .expect("asked");
        assert_ne!(first, second);
        engine.cluster_reply(Reply::Array(Some(vec![bulk("5")])), 3_001);
        assert!(answers(&mut engine, 3_001).is_empty(), "the late reply");
        // The refresh the first tick sent is answered before the second lookup.
        let beat = Reply::Array(Some(vec![Reply::Integer(1), Reply::Integer(0)]));
        engine.cluster_reply(beat, 3_001);
        engine.cluster_reply(Reply::Array(Some(vec![bulk("7")])), 3_002);
        assert_eq!(answers(&mut engine, 3_002), [(second, Some(vec![Some(7)]))]);
    }

    #[test]
    fn a_fall_gives_up_every_lookup_and_a_node_not_live_does_not_ask() {
        let mut engine = live_engine();
        let one = engine.ask_last_seen(["a"].into_iter(), 1).expect("asked");
        let two = engine
            .ask_last_seen(["b", "c"].into_iter(), 1)
            .expect("asked");
        engine.cluster_fell(2, "test");
        let mut given_up = answers(&mut engine, 2);
        given_up.sort();
        assert_eq!(given_up, [(one, None), (two, None)]);
        assert_eq!(engine.ask_last_seen(["a"].into_iter(), 3), None, "degraded");
        let mut single = Engine::new(&Config::default(), ORIGIN_MS, 1, None);
        assert_eq!(
            single.ask_last_seen(["a"].into_iter(), 0),
            None,
            "no cluster"
        );
    }

    #[test]
    fn a_leave_s_time_is_kept_unless_a_later_one_is() {
        let mut engine = Engine::new(&Config::default(), ORIGIN_MS, 1, None);
        engine.heard_last_seen("alice", 20);
        engine.heard_last_seen("alice", 10);
        assert_eq!(engine.later_last_seen("alice", None), Some(20));
        assert_eq!(engine.later_last_seen("alice", Some(30)), Some(30));
        assert_eq!(engine.later_last_seen("bob", Some(5)), Some(5));
        assert_eq!(engine.later_last_seen("bob", None), None);
    }
}
