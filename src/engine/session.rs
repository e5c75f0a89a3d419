//! One open connection's application state, and the table that holds every one of them
//! under the connection's id.
//!
//! Ids are the socket layer's: it allocates `{slot, generation}` when it accepts, and the
//! engine keeps the session in the same slot, so no map stands between the two and a stale
//! id (an older generation) finds nothing here either.
//!
//! Invariants: `user` is registered with the roster's users exactly while `counted`;
//! `channels` lists every channel the connection is subscribed to; `watching` and the
//! roster's watcher lists (and the engine's `watch_all`) name the same pairs.

use super::channel_set::ChannelSet;
use crate::dialect::Dialect;
use crate::heartbeat::Liveness;
use crate::http::upgrade::WATCH_ALL;
use crate::ids::Key;
use crate::model::EventsMode;
use crate::rate::RateBucket;
use crate::roster::{ChannelId, ConnId, Roster, UserId};
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
    /// The generation of the id it is held under, set by [`Sessions::insert`]: kept in the
    /// session's own padding rather than beside it, which would cost a slot 8 bytes.
    pub generation: u32,
}

/// What few connections have (see [`Session::extra`]).
#[derive(Default)]
pub(crate) struct Extra {
    /// What the connection watches, once it watched anything (boxed again: a Pusher
    /// connection's extras are its socket state, and never a watch).
    pub watching: Option<Box<Watching>>,
    /// What vouches for it: a token's claims when tokens are required, a Pusher app's
    /// socket state for a Pusher connection.
    pub auth: Option<Auth>,
}

impl Extra {
    /// Extras holding `auth` only.
    pub fn vouched(auth: Auth) -> Box<Extra> {
        Box::new(Extra {
            watching: None,
            auth: Some(auth),
        })
    }
}

/// What vouches for a connection (see [`Extra::auth`]).
pub(crate) enum Auth {
    /// The verified connection token (boxed again: claims are large, Pusher state small).
    Token(Box<Claims>),
    /// A Pusher connection's app and its own limits.
    #[cfg(feature = "pusher")]
    Pusher(super::pusher::PusherSocket),
}

impl Session {
    /// The connection token's claims, when tokens are required.
    pub fn grant(&self) -> Option<&Claims> {
        match self.auth() {
            Some(Auth::Token(claims)) => Some(claims),
            _ => None,
        }
    }

    fn auth(&self) -> Option<&Auth> {
        self.extra.as_deref()?.auth.as_ref()
    }

    /// Replaces what vouches for the connection (a refreshed token).
    pub fn set_auth(&mut self, auth: Auth) {
        self.extra.get_or_insert_with(Box::default).auth = Some(auth);
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
#[derive(Default)]
pub(crate) struct Sessions {
    slots: Vec<Option<Session>>,
    len: usize,
}

impl Sessions {
    /// Holds `session` under `id`, replacing whatever an older generation left.
    pub fn insert(&mut self, id: ConnId, mut session: Session) {
        let slot = id.slot as usize;
        if slot >= self.slots.len() {
            self.slots.resize_with(slot + 1, || None);
        }
        session.generation = id.generation;
        let previous = self.slots[slot].replace(session);
        self.len += 1;
        self.len -= usize::from(previous.is_some());
    }

    /// The session of `id`, unless it is gone.
    pub fn get(&self, id: ConnId) -> Option<&Session> {
        let session = self.slots.get(id.slot as usize)?.as_ref()?;
        (session.generation == id.generation).then_some(session)
    }

    /// Mutable access to the session of `id`, unless it is gone.
    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut Session> {
        let session = self.slots.get_mut(id.slot as usize)?.as_mut()?;
        (session.generation == id.generation).then_some(session)
    }

    /// Takes the session of `id` out, unless it is gone; gives back the table's tail when
    /// the connections that used it are gone.
    pub fn remove(&mut self, id: ConnId) -> Option<Session> {
        let held = self.slots.get_mut(id.slot as usize)?;
        if held.as_ref().is_none_or(|s| s.generation != id.generation) {
            return None;
        }
        let session = held.take()?;
        self.len -= 1;
        while matches!(self.slots.last(), Some(None)) {
            self.slots.pop();
        }
        if self.slots.capacity() > 2 * self.slots.len() + 64 {
            self.slots.shrink_to_fit();
        }
        Some(session)
    }

    /// The number of sessions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Every session with its id.
    pub fn iter(&self) -> impl Iterator<Item = (ConnId, &Session)> {
        self.slots.iter().enumerate().filter_map(|(slot, held)| {
            let session = held.as_ref()?;
            let id = Key {
                slot: slot as u32,
                generation: session.generation,
            };
            Some((id, session))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every idle connection pays for its slot: a field added here shows in this figure
    /// (and in the README's memory table) before it ships.
    #[test]
    fn a_session_takes_72_bytes_in_its_slot() {
        assert_eq!(std::mem::size_of::<Option<Session>>(), 64);
    }

    /// A Pusher connection's extras (its socket state) are one allocation of this size.
    #[cfg(feature = "pusher")]
    #[test]
    fn the_extras_stay_small() {
        assert_eq!(std::mem::size_of::<Extra>(), 40);
    }

    #[test]
    fn a_stale_id_finds_nothing_and_the_tail_is_given_back() {
        let mut sessions = Sessions::default();
        let id = |slot, generation| Key { slot, generation };
        let session = || Session {
            user: "u".into(),
            channels: ChannelSet::default(),
            extra: None,
            liveness: Liveness::new(0),
            bucket: RateBucket::default(),
            dialect: Dialect::V1,
            mode: EventsMode::All,
            admin: false,
            counted: true,
            generation: 0,
        };
        sessions.insert(id(3, 1), session());
        assert_eq!(sessions.len(), 1);
        assert!(sessions.get(id(3, 0)).is_none(), "an older generation");
        assert!(sessions.remove(id(3, 2)).is_none(), "a newer generation");
        assert!(sessions.get(id(3, 1)).is_some());
        assert_eq!(
            sessions.iter().map(|(key, _)| key).collect::<Vec<_>>(),
            [id(3, 1)]
        );
        assert!(sessions.remove(id(3, 1)).is_some());
        assert_eq!((sessions.len(), sessions.slots.len()), (0, 0));
    }
}
