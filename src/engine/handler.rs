//! [`Handler`]: a host's hooks into a running server ([`crate::Server::run_with`]).
//!
//! The handler decides on each connection request (accept, accept as a chosen user with
//! chosen channels, or refuse with a status and a reason: the hook for custom
//! authentication) and is told of every presence change and publication. It runs on the
//! loop's thread, between socket events: it must return quickly and never block.

use crate::model::LeaveReason;

/// What a connection asks for, as the server read it from the upgrade request.
#[derive(Debug)]
pub struct ConnectRequest<'a> {
    /// The path and query of the request (`/?user=...`).
    pub target: String,
    /// The `user` query parameter, if any (or the token's `sub` with tokens).
    pub user: Option<&'a str>,
    /// The channels of the query, in order.
    pub channels: &'a [String],
    /// The request's header fields.
    pub headers: &'a [(String, String)],
}

/// A handler's answer to a [`ConnectRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Accept as asked.
    Accept,
    /// Accept as this user, joining these channels (instead of the query's).
    AcceptAs {
        /// The user id (name syntax; an invalid one refuses the connection with 500).
        user: String,
        /// The channels to join.
        channels: Vec<String>,
    },
    /// Refuse with this HTTP status (400–599) and reason.
    Refuse {
        /// The status.
        status: u16,
        /// A short reason, sent as the response body.
        reason: String,
    },
}

/// A presence change, as announced to the channel's members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence<'a> {
    /// The user became a member.
    Join {
        /// The channel.
        channel: &'a str,
        /// The user.
        user: &'a str,
        /// The user's meta (a JSON object's text).
        meta: &'a str,
    },
    /// The user stopped being a member.
    Leave {
        /// The channel.
        channel: &'a str,
        /// The user.
        user: &'a str,
        /// Why (`timeout`: the user went silent).
        reason: LeaveReason,
    },
    /// The user's meta changed.
    Update {
        /// The channel.
        channel: &'a str,
        /// The user.
        user: &'a str,
        /// The new meta (a JSON object's text).
        meta: &'a str,
    },
}

/// A host's hooks. Every method has a default that does nothing (or accepts).
pub trait Handler {
    /// Decides on a connection request. Default: accept.
    fn on_connect(&mut self, request: &ConnectRequest<'_>) -> Decision {
        let _ = request;
        Decision::Accept
    }

    /// A presence change happened.
    fn on_presence(&mut self, change: Presence<'_>) {
        let _ = change;
    }

    /// A publication went to `channel` (`from`: the publishing user, `None` for the server
    /// or host; `data`: JSON text).
    fn on_message(&mut self, channel: &str, from: Option<&str>, data: &str) {
        let _ = (channel, from, data);
    }
}

/// The handler of [`Server::run`](crate::Server::run): hooks that do nothing.
pub(crate) struct NoHandler;

impl Handler for NoHandler {}
