//! What the host asks of the engine: publish, send, update a member's meta, disconnect.
//!
//! Two ways in, one command type: a [`Handle`](crate::Handle) on another thread sends a
//! [`HostCommand`] over its channel and waits for the answer; a [`Handler`](super::Handler)
//! hook, which runs inside an engine input and so cannot wait for the loop, queues it on its
//! [`Actions`], and the engine carries it out once the input is done
//! ([`Engine::take_effects`]).
//!
//! Invariants: a command is checked where it is made (names, JSON, connection ids), so a
//! host's mistake is an error at its call, never a panic in the loop; hook actions run in
//! the order they were queued, after the input whose hook queued them; an action queued by
//! a hook that an action fired is one link further down a chain, and a chain longer than
//! [`MAX_HOOK_CHAIN`] is cut (logged once) so that a hook answering every message with a message
//! cannot loop forever.

use std::fmt;

use log::warn;
use serde_json::Value;

use super::Engine;
use crate::model::{Json, Meta};
use crate::names;
use crate::roster::ConnId;
use crate::wheel::Millis;

/// How many hook actions may follow from one another (an action's hooks queueing actions
/// whose hooks queue more ...) before the rest are dropped.
pub const MAX_HOOK_CHAIN: u8 = 8;

/// Why a host call ([`Handle`](crate::Handle) or [`Actions`]) failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandleError {
    /// The server's loop has stopped (its run returned, or the server was dropped).
    Stopped,
    /// A channel or user name is not valid.
    InvalidName(String),
    /// The call was made on the loop's own thread (from a `Handler` hook), where waiting for
    /// the loop would wait forever: act through the hook's [`Actions`] instead.
    OnLoopThread,
    /// No answer within the handle's timeout ([`Handle::with_timeout`](crate::Handle::with_timeout)).
    TimedOut,
    /// The data is not valid JSON, or a meta is not a JSON object.
    InvalidJson,
    /// The connection id is not one a welcome gives (`SLOT.GENERATION`).
    InvalidConnection(String),
}

impl fmt::Display for HandleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandleError::Stopped => write!(f, "the server has stopped"),
            HandleError::InvalidName(reason) => write!(f, "invalid name: {reason}"),
            HandleError::OnLoopThread => write!(
                f,
                "a Handle cannot be called on the server's own thread (use the hook's Actions)"
            ),
            HandleError::TimedOut => write!(f, "the server did not answer in time"),
            HandleError::InvalidJson => write!(f, "the data is not valid JSON"),
            HandleError::InvalidConnection(id) => write!(f, "{id:?} is not a connection id"),
        }
    }
}

impl std::error::Error for HandleError {}

/// A host's command, checked.
#[derive(Debug)]
pub(crate) enum HostCommand {
    Publish {
        channel: String,
        data: Json,
    },
    SendToUser {
        user: String,
        data: Json,
    },
    SendToConnection {
        id: ConnId,
        data: Json,
    },
    Update {
        user: String,
        channel: String,
        meta: Meta,
    },
    DisconnectUser {
        user: String,
    },
    DisconnectConnection {
        id: ConnId,
    },
}

impl HostCommand {
    pub fn publish(channel: &str, data: Json) -> Result<HostCommand, HandleError> {
        check_channel(channel)?;
        let channel = channel.to_owned();
        Ok(HostCommand::Publish { channel, data })
    }

    pub fn send_to_user(user: &str, data: Json) -> Result<HostCommand, HandleError> {
        check_user(user)?;
        let user = user.to_owned();
        Ok(HostCommand::SendToUser { user, data })
    }

    pub fn send_to_connection(id: &str, data: Json) -> Result<HostCommand, HandleError> {
        let id = connection(id)?;
        Ok(HostCommand::SendToConnection { id, data })
    }

    pub fn update(user: &str, channel: &str, meta: &Value) -> Result<HostCommand, HandleError> {
        check_user(user)?;
        check_channel(channel)?;
        let meta = Meta::from_value(meta).ok_or(HandleError::InvalidJson)?;
        let (user, channel) = (user.to_owned(), channel.to_owned());
        Ok(HostCommand::Update {
            user,
            channel,
            meta,
        })
    }

    pub fn disconnect_user(user: &str) -> Result<HostCommand, HandleError> {
        check_user(user)?;
        let user = user.to_owned();
        Ok(HostCommand::DisconnectUser { user })
    }

    pub fn disconnect_connection(id: &str) -> Result<HostCommand, HandleError> {
        let id = connection(id)?;
        Ok(HostCommand::DisconnectConnection { id })
    }
}

/// JSON text as a hook hands it over, checked.
pub(crate) fn json_text(text: &str) -> Result<Json, HandleError> {
    Json::parse(text).ok_or(HandleError::InvalidJson)
}

fn connection(id: &str) -> Result<ConnId, HandleError> {
    id.parse()
        .map_err(|_| HandleError::InvalidConnection(id.to_owned()))
}

/// A user id, checked.
pub(crate) fn check_user(user: &str) -> Result<(), HandleError> {
    names::validate_user(user)
        .map_err(|error| HandleError::InvalidName(format!("user {user:?} {error}")))
}

/// A channel name, checked.
pub(crate) fn check_channel(channel: &str) -> Result<(), HandleError> {
    names::validate_channel(channel)
        .map_err(|error| HandleError::InvalidName(format!("channel {channel:?} {error}")))
}

/// What a [`Handler`](super::Handler) hook asks the server to do. The hook runs in the
/// middle of the loop's work, so nothing happens at the call: each action is carried out,
/// in order, as soon as the work that called the hook is done (within the same turn of the
/// loop). The methods check their arguments at once, like a [`Handle`](crate::Handle)'s.
///
/// A chain of actions firing hooks that queue more actions is cut after
/// [`MAX_HOOK_CHAIN`] links (logged): a hook that answers each message with a message does not
/// loop forever.
#[derive(Debug)]
pub struct Actions {
    queued: Vec<(u8, HostCommand)>,
    /// The chain link the actions queued now belong to.
    link: u8,
    /// True once a cut chain was logged.
    warned: bool,
}

impl Default for Actions {
    fn default() -> Actions {
        Actions {
            queued: Vec::new(),
            link: 1,
            warned: false,
        }
    }
}

impl Actions {
    /// Publishes `data` to `channel` (a `message` with `"from":null`).
    pub fn publish(&mut self, channel: &str, data: &Value) -> Result<(), HandleError> {
        self.queue(HostCommand::publish(channel, Json::from_value(data))?)
    }

    /// Publishes JSON text (as a hook hands it over) to `channel`.
    pub fn publish_json(&mut self, channel: &str, json: &str) -> Result<(), HandleError> {
        self.queue(HostCommand::publish(channel, json_text(json)?)?)
    }

    /// Sends `data` to every connection of `user` (a `message` with `"channel":null`).
    pub fn send_to_user(&mut self, user: &str, data: &Value) -> Result<(), HandleError> {
        self.queue(HostCommand::send_to_user(user, Json::from_value(data))?)
    }

    /// Sends `data` to one connection, named by the id its `welcome` gave.
    pub fn send_to_connection(&mut self, id: &str, data: &Value) -> Result<(), HandleError> {
        self.queue(HostCommand::send_to_connection(id, Json::from_value(data))?)
    }

    /// Replaces `user`'s meta (a JSON object) in `channel`, announced as an `update` when it
    /// differs; nothing when the user is not a member there.
    pub fn update(&mut self, user: &str, channel: &str, meta: &Value) -> Result<(), HandleError> {
        self.queue(HostCommand::update(user, channel, meta)?)
    }

    /// Closes every connection of `user` (Close 1000).
    pub fn disconnect_user(&mut self, user: &str) -> Result<(), HandleError> {
        self.queue(HostCommand::disconnect_user(user)?)
    }

    /// Closes one connection (Close 1000), named by the id its `welcome` gave.
    pub fn disconnect_connection(&mut self, id: &str) -> Result<(), HandleError> {
        self.queue(HostCommand::disconnect_connection(id)?)
    }

    fn queue(&mut self, command: HostCommand) -> Result<(), HandleError> {
        self.queued.push((self.link, command));
        Ok(())
    }
}

impl Engine {
    /// Carries out a host's command; returns how many connections it reached (sent to,
    /// closed, or told of an update).
    pub(crate) fn host(&mut self, command: HostCommand, now: Millis) -> usize {
        match command {
            HostCommand::Publish { channel, data } => self.publish(&channel, None, &data, now),
            HostCommand::SendToUser { user, data } => self.send_to_user(&user, &data),
            HostCommand::SendToConnection { id, data } => {
                usize::from(self.send_to_connection(id, &data))
            }
            HostCommand::Update {
                user,
                channel,
                meta,
            } => usize::from(self.update_member(&user, &channel, meta, now)),
            HostCommand::DisconnectUser { user } => self.disconnect_user(&user, now),
            HostCommand::DisconnectConnection { id } => {
                usize::from(self.disconnect_connection(id, now))
            }
        }
    }

    /// Carries out the actions hooks have queued, and those their own hooks queue, link by
    /// link up to [`MAX_HOOK_CHAIN`].
    pub(super) fn run_hook_actions(&mut self, now: Millis) {
        while !self.actions.queued.is_empty() {
            let batch = std::mem::take(&mut self.actions.queued);
            for (link, command) in batch {
                if link > MAX_HOOK_CHAIN {
                    self.cut_chain(&command);
                    continue;
                }
                self.actions.link = link + 1;
                self.host(command, now);
            }
        }
        self.actions.link = 1;
    }

    fn cut_chain(&mut self, command: &HostCommand) {
        if !self.actions.warned {
            self.actions.warned = true;
            warn!(
                "a hook action was dropped: {MAX_HOOK_CHAIN} actions in a row each fired a hook \
                 that queued the next ({command:?}); logged once"
            );
        }
    }

    /// Sets `user`'s meta in `channel` as its own `update` would; false when the user is
    /// not a member there (or the meta is the same).
    fn update_member(&mut self, user: &str, channel: &str, meta: Meta, now: Millis) -> bool {
        let Some(channel_id) = self.roster.find(channel) else {
            return false;
        };
        // Any of the user's connections in the channel speaks for the member.
        let member = self.sessions.iter().find(|(_, session)| {
            &*session.user == user && session.channels.as_slice().contains(&channel_id)
        });
        let Some((id, user)) = member.map(|(id, session)| (id, session.user.clone())) else {
            return false;
        };
        match self.roster.update(channel_id, id, &user, meta) {
            Ok(outcome) => {
                let changed = outcome.announcement.is_some();
                self.apply(channel_id, outcome, None, now);
                changed
            }
            Err(_) => false,
        }
    }
}
