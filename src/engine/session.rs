//! One open connection's application state, held in the slot of the connection's id (see
//! [`SlotTable`]).
//!
//! Invariants: `user` is registered with the roster's users exactly while `counted`;
//! `channels` lists every channel the connection is subscribed to; `watching` and the
//! roster's watcher lists (and the engine's `watch_all`) name the same pairs.

use super::channel_set::ChannelSet;
use super::slot_table::SlotTable;
use crate::dialect::Dialect;
use crate::heartbeat::Liveness;
use crate::http::upgrade::WATCH_ALL;
use crate::ids::Stamped;
use crate::model::EventsMode;
use crate::rate::RateBucket;
use crate::roster::{ChannelId, Roster, UserId};
use crate::token::Claims;

/// An open connection, as the application sees it.
pub(crate) struct Session {
    /// Its user (registered with the roster's users while `counted`).
    pub user: UserId,
    pub channels: ChannelSet,
    /// What few connections have; boxed, as most have none of it.
    pub extra: Option<Box<Extra>>,
    pub liveness: Liveness,
    /// The command rate limit's bucket.
    pub bucket: RateBucket,
    /// The wire dialect it speaks.
    pub dialect: Dialect,
    /// The events mode from the URL, used by `join` commands that name none.
    pub mode: EventsMode,
    /// True when the connection presented the admin token (it may watch every channel).
    pub admin: bool,
    /// True while the connection counts among its user's connections (`Roster::users`):
    /// from its first join, or from the upgrade unless it only watches (a watcher is no user).
    pub counted: bool,
    /// The generation of the id it is held under (see [`SlotTable`]).
    pub generation: u32,
}

/// What few connections have (see [`Session::extra`]).
#[derive(Default)]
pub(crate) struct Extra {
    /// What the connection watches, once it watched anything.
    pub watching: Option<Box<Watching>>,
    /// The verified connection token's claims, when tokens are required (boxed again: few
    /// watchers present a token).
    pub claims: Option<Box<Claims>>,
}

impl Extra {
    /// Extras holding a token's `claims` only.
    pub fn vouched(claims: Claims) -> Box<Extra> {
        Box::new(Extra {
            watching: None,
            claims: Some(Box::new(claims)),
        })
    }
}

impl Session {
    /// The connection token's claims, when tokens are required.
    pub fn grant(&self) -> Option<&Claims> {
        self.extra.as_deref()?.claims.as_deref()
    }

    /// Replaces the token's claims (a refreshed token).
    pub fn set_grant(&mut self, claims: Claims) {
        self.extra.get_or_insert_with(Box::default).claims = Some(Box::new(claims));
    }

    /// What it watches, if it ever watched anything.
    pub fn watching(&self) -> Option<&Watching> {
        self.extra.as_deref()?.watching.as_deref()
    }

    /// What it watches, to change, if it ever watched anything.
    pub fn watching_mut(&mut self) -> Option<&mut Watching> {
        self.extra.as_deref_mut()?.watching.as_deref_mut()
    }

    /// What it watches, to add to.
    pub fn watching_or_new(&mut self) -> &mut Watching {
        self.extra
            .get_or_insert_with(Box::default)
            .watching
            .get_or_insert_with(Box::default)
    }

    /// True while it watches anything (a watcher is counted apart from users, §12).
    pub fn is_watcher(&self) -> bool {
        self.watching().is_some_and(|w| w.len() > 0)
    }
}

/// The channels a connection watches without being a member.
#[derive(Default)]
pub(crate) struct Watching {
    /// Watches every channel.
    pub all: bool,
    /// Watches these channels.
    pub channels: Vec<ChannelId>,
}

impl Watching {
    /// How many targets are watched (`*` counts as one).
    pub fn len(&self) -> usize {
        self.channels.len() + usize::from(self.all)
    }

    /// True when `target` (a channel name, or `*`) is watched by name.
    pub fn names(&self, target: &str, roster: &Roster) -> bool {
        if target == WATCH_ALL {
            return self.all;
        }
        roster
            .find(target)
            .is_some_and(|channel| self.channels.contains(&channel))
    }
}

/// Every open connection's session, in the slot of its id.
pub(crate) type Sessions = SlotTable<Session>;

impl Stamped for Session {
    fn generation(&self) -> u32 {
        self.generation
    }

    fn stamp(&mut self, generation: u32) {
        self.generation = generation;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every idle connection pays for its slot: a field added here shows in this figure
    /// (and in the README's memory table) before it ships.
    #[test]
    fn a_session_takes_64_bytes_in_its_slot() {
        assert_eq!(std::mem::size_of::<Option<Session>>(), 64);
    }

    /// The few that have extras pay one allocation of this size.
    #[test]
    fn the_extras_stay_small() {
        assert_eq!(std::mem::size_of::<Extra>(), 16);
    }
}
