//! Watching: observing channels' presence without joining them (the dashboard's way in).
//!
//! A watcher gets a `state` when it starts watching, then the channel's events and counts;
//! it is no member, so it changes no count and no `seq` and appears in no member list.
//! `*` watches every channel, including channels created later (they first show up in a
//! `join` event). Invariant: `Conn::watching` and the registry's watcher lists (and
//! `Server::watch_all`) name the same pairs.

use super::conn::Watching;
use super::Server;
use crate::http::upgrade::WATCH_ALL;
use crate::protocol::{CommandError, ErrorCode, Json};
use crate::registry::ConnId;

impl Server {
    /// Starts watching `target` (a channel name or `*`), replying with the `state`s.
    pub(super) fn watch(&mut self, id: ConnId, target: &str, reference: Option<&Json>) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let watching = conn.watching.get_or_insert_with(Box::default);
        let channels: Vec<String> = if target == WATCH_ALL {
            watching.all = true;
            if !self.watch_all.contains(&id) {
                self.watch_all.push(id);
            }
            self.channels_with_members()
        } else {
            let channel = self.registry.watch(target, id);
            if !watching.channels.contains(&channel) {
                watching.channels.push(channel);
            }
            vec![target.to_owned()]
        };
        for name in channels {
            let state = self.state_named(&name, reference);
            self.send(id, state);
        }
    }

    /// Stops watching `target`; `not_joined` if it was not watched.
    pub(super) fn unwatch(&mut self, id: ConnId, target: &str) -> Result<(), CommandError> {
        let not_watched =
            || CommandError::new(ErrorCode::NotJoined, format!("not watching {target}"));
        let watching = self
            .conns
            .get_mut(id)
            .and_then(|conn| conn.watching.as_mut())
            .ok_or_else(not_watched)?;
        if target == WATCH_ALL {
            if !std::mem::take(&mut watching.all) {
                return Err(not_watched());
            }
            self.watch_all.retain(|watcher| *watcher != id);
            return Ok(());
        }
        let channel = self
            .registry
            .find(target)
            .filter(|c| watching.channels.contains(c))
            .ok_or_else(not_watched)?;
        watching.channels.retain(|c| *c != channel);
        self.registry
            .unwatch(channel, id)
            .map_err(|_| not_watched())
    }

    /// Stops every watch of a connection that is going away.
    pub(super) fn unwatch_everything(&mut self, id: ConnId) {
        let Some(Watching { all, channels }) = self
            .conns
            .get_mut(id)
            .and_then(|conn| conn.watching.take())
            .map(|w| *w)
        else {
            return;
        };
        if all {
            self.watch_all.retain(|watcher| *watcher != id);
        }
        for channel in channels {
            // A stale channel id means the channel is gone, and the watch with it.
            let _ = self.registry.unwatch(channel, id);
        }
    }
}
