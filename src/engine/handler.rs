//! [`Handler`]: a host's hooks into a running server ([`crate::Server::run_with`]).
//!
//! The handler decides on each connection request (accept, accept as a chosen user with
//! chosen channels, or refuse with a status and a reason: the hook for custom
//! authentication) and is told of every presence change and publication. It runs on the
//! loop's thread, between socket events: it must return quickly and never block, and it
//! acts on the server through the [`Actions`] it is given (a `Handle` called here fails with
//! `OnLoopThread`: the loop cannot answer a call it is in the middle of).

// core::net: the address is a plain value here; sockets stay in `server`.
use core::net::SocketAddr;

use serde_json::Value;

use super::Actions;
use crate::http::percent;
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
    /// The address the connection came from (behind a reverse proxy, the proxy's: see its
    /// `X-Forwarded-For` header).
    pub peer_addr: Option<SocketAddr>,
}

impl ConnectRequest<'_> {
    /// The first header field called `name` (compared without regard to case), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.trim())
    }

    /// The first query parameter called `name`, percent-decoded (`+` is a space); `None`
    /// when it is absent or its encoding is broken. Any parameter, not only rollcall's.
    pub fn query(&self, name: &str) -> Option<String> {
        let (_, query) = self.target.split_once('?')?;
        query
            .split('&')
            .filter_map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (key == name).then_some(value)
            })
            .next()
            .and_then(|value| percent::decode_query_value(value).ok())
    }
}

/// A handler's answer to a [`ConnectRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Accept as asked.
    Accept,
    /// Accept as this user, joining these channels (instead of the query's) with this meta.
    AcceptAs {
        /// The user id (1 to 128 bytes, no control characters: see [`crate::names`]; an
        /// invalid one refuses the connection with 500).
        user: String,
        /// The channels to join. Empty joins nothing (not the default channel): the client
        /// may still join by command, and watch what the query asks for.
        channels: Vec<String>,
        /// The user's meta in those channels (a JSON object; anything else refuses the
        /// connection with 500), `None` for none, or the token's when there is one.
        meta: Option<Value>,
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

    /// A presence change happened. To act on it (greet the user, publish, disconnect),
    /// queue actions on `actions`: they are carried out once the change is complete.
    fn on_presence(&mut self, change: Presence<'_>, actions: &mut Actions) {
        let _ = (change, actions);
    }

    /// A publication went to `channel` (`from`: the publishing user, `None` for the server
    /// or host; `data`: JSON text). It may act through `actions`, as `on_presence`.
    fn on_message(&mut self, channel: &str, from: Option<&str>, data: &str, actions: &mut Actions) {
        let _ = (channel, from, data, actions);
    }
}

/// The handler of [`Server::run`](crate::Server::run): hooks that do nothing.
pub(crate) struct NoHandler;

impl Handler for NoHandler {}
