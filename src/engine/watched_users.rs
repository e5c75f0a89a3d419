//! Watchlists: a connection follows users' online status (`watch_users`, `unwatch_users`)
//! without joining anything, and hears `online` and `offline` as each status changes.
//!
//! A user is online while it has a connection here or is a member of a native channel (in a
//! live cluster: on any node, as the cluster view says), which is what `GET /users/{id}` says
//! too. A member in its leave grace is still a member, so `offline` comes after the grace, as
//! `member_removed` does, and a reload inside it tells nothing.
//!
//! The state lives beside the sessions, keyed by connection and by watched user: a connection
//! that watches nobody pays nothing (its session slot holds no field for it). A status is
//! read again only for a watched user, where it may have changed: a connection counted or
//! ended, a roster change, a cluster note, a switch between the cluster view and the local
//! presence.
//!
//! Invariants: `by_conn` and `by_user` name the same (connection, user) pairs; a user is in
//! `by_user` exactly while a connection watches it, holding the status last told.

use crate::user_id::UserId;
use std::collections::{HashMap, HashSet};

use super::Engine;
use crate::cluster::note::Note;
use crate::model::{CommandError, ErrorCode, Event, Json};
use crate::protocol::command::MAX_WATCHED_USERS;
use crate::pusher;
use crate::roster::ConnId;
use crate::wheel::Millis;

/// Who watches whom.
#[derive(Default)]
pub(super) struct WatchedUsers {
    /// The users each watching connection follows.
    by_conn: HashMap<ConnId, Vec<UserId>>,
    /// Each watched user's watchers and status.
    by_user: HashMap<UserId, Followed>,
}

/// A watched user.
struct Followed {
    /// The connections that watch it (a set: a much-watched user's watchers come and go
    /// in constant time each).
    watchers: HashSet<ConnId>,
    /// `Some(when it came online, Unix ms)` while it was last told online.
    online_since: Option<u64>,
}

impl WatchedUsers {
    /// True when nobody watches anybody (nothing is held).
    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.by_conn.is_empty() && self.by_user.is_empty()
    }

    /// Users the connection watches.
    fn watched_by(&self, id: ConnId) -> usize {
        self.by_conn.get(&id).map_or(0, Vec::len)
    }

    fn watches(&self, id: ConnId, user: &str) -> bool {
        self.by_user
            .get(user)
            .is_some_and(|followed| followed.watchers.contains(&id))
    }

    /// Drops the pair (connection, user), and the user once nobody watches it.
    fn unwatch(&mut self, id: ConnId, user: &str) {
        let Some(followed) = self.by_user.get_mut(user) else {
            return;
        };
        followed.watchers.remove(&id);
        if followed.watchers.is_empty() {
            self.by_user.remove(user);
        }
    }
}

impl Engine {
    /// `watch_users`: follows `users` (at most [`MAX_WATCHED_USERS`] per connection in all)
    /// and answers with their statuses: at once, or in a live cluster with offline users
    /// once Redis gave their last-seen times (see `cluster_last_seen`).
    pub(super) fn watch_users(
        &mut self,
        id: ConnId,
        users: &[String],
        reference: Option<&Json>,
        now: Millis,
    ) -> Result<(), CommandError> {
        let table = &self.watched_users;
        let new = users.iter().filter(|user| !table.watches(id, user)).count();
        if table.watched_by(id) + new > MAX_WATCHED_USERS {
            let message = format!("a connection watches at most {MAX_WATCHED_USERS} users");
            return Err(CommandError::new(ErrorCode::TooLarge, message));
        }
        let unix_ms = self.unix_millis(now);
        for user in users {
            if self.watched_users.watches(id, user) {
                continue;
            }
            let online = !self.watched_users.by_user.contains_key(user.as_str())
                && self.user_is_online(user);
            let table = &mut self.watched_users;
            let name = match table.by_user.get_key_value(user.as_str()) {
                Some((name, _)) => name.clone(),
                None => UserId::from(user.as_str()),
            };
            let followed = table
                .by_user
                .entry(name.clone())
                .or_insert_with(|| Followed {
                    watchers: HashSet::new(),
                    online_since: online.then_some(unix_ms),
                });
            followed.watchers.insert(id);
            table.by_conn.entry(id).or_default().push(name);
        }
        // In a live cluster the offline users' times are Redis's: the answer waits for it.
        let any_offline = users.iter().any(|user| !self.told_online(user));
        if !(any_offline && self.ask_for_watcher(id, users, reference, now)) {
            self.send_user_statuses(id, users, reference, None);
        }
        Ok(())
    }

    fn told_online(&self, user: &str) -> bool {
        self.watched_users
            .by_user
            .get(user)
            .is_some_and(|followed| followed.online_since.is_some())
    }

    /// Sends `users`' statuses as last told to `id` (the `users` answer of `watch_users`),
    /// the offline ones with their last-seen times: the later of this node's and
    /// `fetched`'s (Redis's, one per user, when asked; see `cluster_last_seen`).
    pub(super) fn send_user_statuses(
        &mut self,
        id: ConnId,
        users: &[String],
        reference: Option<&Json>,
        fetched: Option<&[Option<u64>]>,
    ) {
        let mut online = Vec::new();
        let mut offline = Vec::new();
        for (index, user) in users.iter().enumerate() {
            if self.told_online(user) {
                online.push(user.as_str());
            } else {
                let from_redis = fetched.and_then(|values| values.get(index).copied().flatten());
                offline.push((user.as_str(), self.later_last_seen(user, from_redis)));
            }
        }
        let event = Event::UserStatuses {
            online: &online,
            offline: &offline,
            reference,
        };
        self.send(id, &event);
    }

    /// `unwatch_users`: stops following `users` (one not watched is ignored).
    pub(super) fn unwatch_users(&mut self, id: ConnId, users: &[String]) {
        let table = &mut self.watched_users;
        let Some(watched) = table.by_conn.get_mut(&id) else {
            return;
        };
        watched.retain(|name| !users.iter().any(|user| **user == **name));
        if watched.is_empty() {
            table.by_conn.remove(&id);
        }
        for user in users {
            table.unwatch(id, user);
        }
    }

    /// The connection ended: it watches nobody any more.
    pub(super) fn forget_watched_users(&mut self, id: ConnId) {
        let table = &mut self.watched_users;
        // Most servers watch nobody: no hashing then.
        if table.by_conn.is_empty() {
            return;
        }
        if let Some(watched) = table.by_conn.remove(&id) {
            for user in watched {
                table.unwatch(id, &user);
            }
        }
    }

    /// `user`'s status may have changed at `now`: its watchers hear of it if it did.
    pub(super) fn watched_user_may_change(&mut self, user: &str, now: Millis) {
        self.watched_user_may_leave(user, None, now);
    }

    /// As [`Engine::watched_user_may_change`]; `left_at`, when a cluster-wide leave says
    /// so, is when the user was last seen (Unix ms), told as is: nodes' clocks differ by a
    /// few milliseconds, so it may come before this node saw the user come online.
    fn watched_user_may_leave(&mut self, user: &str, left_at: Option<u64>, now: Millis) {
        if self.watched_users.by_user.is_empty() || self.shutting_down {
            return;
        }
        let Some(was) = self
            .watched_users
            .by_user
            .get(user)
            .map(|followed| followed.online_since)
        else {
            return;
        };
        let online = self.user_is_online(user);
        if online == was.is_some() {
            return;
        }
        let unix_ms = self.unix_millis(now);
        let event_user: UserId = UserId::from(user);
        // Its last connection here ended at the recorded time (the grace came after); else
        // it left on another node, and is last seen now, when its leave is told.
        let last_seen = was.map(|since| {
            let recorded = self.last_seen.get(user).filter(|&seen| seen >= since);
            left_at.or(recorded).unwrap_or_else(|| {
                self.last_seen.record(user, unix_ms);
                unix_ms
            })
        });
        let Some(followed) = self.watched_users.by_user.get_mut(user) else {
            return;
        };
        followed.online_since = online.then_some(unix_ms);
        // A watcher whose `users` answer naming this user waits for Redis hears nothing
        // now: that answer, made when the reply arrives, tells the newer status.
        let lookups = &self.lookups;
        let watchers: Vec<ConnId> = followed
            .watchers
            .iter()
            .copied()
            .filter(|&watcher| !lookups.awaits(watcher, user))
            .collect();
        let event = match last_seen {
            None => Event::UserOnline { user: &event_user },
            Some(last_seen) => Event::UserOffline {
                user: &event_user,
                last_seen,
            },
        };
        self.deliver(watchers.into_iter(), &event);
    }

    /// A cluster note was applied to the view: its user's status may have changed.
    pub(super) fn note_may_change_watched(&mut self, note: &Note, now: Millis) {
        match note {
            Note::Join { user, .. } => self.watched_user_may_change(user, now),
            Note::Leave {
                user, last_seen, ..
            } => self.watched_user_may_leave(user, Some(*last_seen), now),
            _ => {}
        }
    }

    /// Any watched user's status may have changed (the source of presence switched between
    /// the cluster view and the local roster, or the view was loaded again).
    pub(super) fn watched_users_may_change(&mut self, now: Millis) {
        let users: Vec<UserId> = self.watched_users.by_user.keys().cloned().collect();
        for user in users {
            self.watched_user_may_change(&user, now);
        }
    }

    /// True while `user` has a connection here or is a member of a native channel (on any
    /// node, in a live cluster), a member in its leave grace included. A scan of the
    /// channels, made for watched users only.
    fn user_is_online(&self, user: &str) -> bool {
        if self.roster.user_connections(user) > 0 {
            return true;
        }
        match self.cluster_view() {
            Some(view) => view
                .channels()
                .any(|name| !pusher::is_internal(name) && view.is_member(name, user)),
            None => self.roster.channels_with_members().any(|channel| {
                self.roster
                    .name(channel)
                    .is_some_and(|name| !pusher::is_internal(name))
                    && self.roster.is_member(channel, user)
            }),
        }
    }
}
