//! Watching: observing channels' presence without joining them (the dashboard's way in).
//!
//! A watcher gets a `state` when it starts watching, then the channel's events and counts;
//! it is no member, so it changes no count and no `seq` and appears in no member list.
//! `*` watches every channel, including channels created later (they first show up in a
//! `state`: see `delivery`).
//!
//! Who may watch what: a connection that presented the admin token, anything; on a server
//! with an admin token, nobody else; otherwise what the connection's token grants (`*` only
//! with a grant of every channel), or anything without tokens. One connection watches at most
//! `max_channels_per_conn` targets (`*` counts as one).
//!
//! Invariant: `Session::watching` and the roster's watcher lists (and `Engine::watch_all`)
//! name the same pairs.

use super::session::{Session, Watching};
use super::Engine;
use crate::http::upgrade::{self, WATCH_ALL};
use crate::model::{CommandError, ErrorCode, Json};
use crate::roster::ConnId;

impl Engine {
    /// `forbidden` unless the connection may watch `target`, `too_large` when it would watch
    /// more than the cap.
    pub(super) fn check_watch(&self, id: ConnId, target: &str) -> Result<(), CommandError> {
        let Some(session) = self.sessions.get(id) else {
            return Ok(());
        };
        self.may_watch(session, target)?;
        let watching = session.watching();
        let already = watching.is_some_and(|w| w.names(target, &self.roster));
        let max = self.config.max_channels_per_conn;
        if !already && watching.map_or(0, Watching::len) >= max {
            let message = format!("a connection may watch at most {max} channels");
            return Err(CommandError::new(ErrorCode::TooLarge, message));
        }
        Ok(())
    }

    /// `forbidden` unless `session` may watch `target` (see the module's rules).
    fn may_watch(&self, session: &Session, target: &str) -> Result<(), CommandError> {
        if session.admin {
            return Ok(());
        }
        if self.config.admin_token.is_some() {
            return Err(CommandError::new(
                ErrorCode::Forbidden,
                "watching needs admin=TOKEN in the connection URL",
            ));
        }
        match session.grant() {
            Some(grant) if !upgrade::may_watch(&grant.channels, target) => Err(CommandError::new(
                ErrorCode::Forbidden,
                format!("watching {target} is not allowed by the connection's token"),
            )),
            _ => Ok(()),
        }
    }

    /// True when the connection watches the channel `name`, by name or through `*`.
    pub(super) fn watches(&self, id: ConnId, name: &str) -> bool {
        let Some(session) = self.sessions.get(id) else {
            return false;
        };
        // Watching `*` needed a grant of every channel (or the admin token).
        session
            .watching()
            .is_some_and(|watching| watching.all || watching.names(name, &self.roster))
    }

    /// Starts watching `target` (a channel name or `*`), replying with the `state`s. The
    /// caller has checked [`Engine::check_watch`].
    pub(super) fn watch(&mut self, id: ConnId, target: &str, reference: Option<&Json>) {
        let Some(session) = self.sessions.get_mut(id) else {
            return;
        };
        let watching = session.watching_or_new();
        let channels: Vec<String> = if target == WATCH_ALL {
            watching.all = true;
            if !self.watch_all.contains(&id) {
                self.watch_all.push(id);
            }
            self.channels_with_members()
        } else {
            let channel = self.roster.watch(target, id);
            if !watching.channels.contains(&channel) {
                watching.channels.push(channel);
            }
            vec![target.to_owned()]
        };
        for name in channels {
            self.send_state(id, &name, reference);
        }
    }

    /// Stops watching `target`; `not_joined` if it was not watched.
    pub(super) fn unwatch(&mut self, id: ConnId, target: &str) -> Result<(), CommandError> {
        let not_watched =
            || CommandError::new(ErrorCode::NotJoined, format!("not watching {target}"));
        let watching = self
            .sessions
            .get_mut(id)
            .and_then(|session| session.watching_mut())
            .ok_or_else(not_watched)?;
        if target == WATCH_ALL {
            if !std::mem::take(&mut watching.all) {
                return Err(not_watched());
            }
            self.watch_all.retain(|watcher| *watcher != id);
            return Ok(());
        }
        let channel = self
            .roster
            .find(target)
            .filter(|c| watching.channels.contains(c))
            .ok_or_else(not_watched)?;
        watching.channels.retain(|c| *c != channel);
        self.roster.unwatch(channel, id).map_err(|_| not_watched())
    }

    /// Stops every watch of a connection that is going away.
    pub(super) fn unwatch_everything(&mut self, id: ConnId, watching: &Watching) {
        if watching.all {
            self.watch_all.retain(|watcher| *watcher != id);
        }
        for &channel in &watching.channels {
            // A stale channel id means the channel is gone, and the watch with it.
            let _ = self.roster.unwatch(channel, id);
        }
    }
}
