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

    /// Lookups waiting for Redis (for tests).
    #[cfg(test)]
    pub(super) fn lookups_pending(&self) -> usize {
        self.lookups.pending.len()
    }
}
