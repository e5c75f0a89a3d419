//! The neutral vocabulary the engine and every wire dialect share: values clients send
//! ([`Json`], [`Meta`]), presence modes and leave reasons, counts, error codes, and the
//! commands ([`command`]) and events ([`event`]) a dialect translates to and from its frames.
//!
//! Nothing here knows a wire format: a dialect decides how a [`LeaveReason`] or a
//! [`Counts`] is spelled on its wire.
//!
//! Invariant: a number a client sends reaches every recipient exactly as sent: free-form
//! values are canonicalized from their text ([`canonical`]), never through an `f64`.

pub mod canonical;
pub mod command;
pub mod diff;
pub mod event;
mod json_str;
mod snapshot;

use std::fmt;

pub use command::{Action, Command, CommandError};
pub use diff::{DiffChange, PendingDiff};
pub use event::Event;
pub use json_str::{push_json_str, JsonStr};
pub use snapshot::{ChannelSnapshot, Member, PresenceSnapshot, UserStatus};

/// A compact, valid JSON text (a value a client sent, re-serialized without whitespace, keys
/// sorted, its numbers as sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Json(Box<str>);

impl Json {
    /// Serializes a value a host built compactly (its numbers are whatever the host's `Value`
    /// holds; a client's text goes through [`Json::parse`] instead).
    pub fn from_value(value: &serde_json::Value) -> Json {
        Json(value.to_string().into_boxed_str())
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The canonical form of a JSON text (a client's value, or another node's), `None` if
    /// it is not valid JSON: see [`canonical`] (numbers pass through exactly as sent).
    pub fn parse(text: &str) -> Option<Json> {
        canonical::canonical(text).map(|text| Json(text.into_boxed_str()))
    }

    /// The canonical form of a value serde_json has already checked (a command's field);
    /// `None` when it is nested too deeply.
    pub(crate) fn from_raw(raw: &serde_json::value::RawValue) -> Option<Json> {
        canonical::of_raw(raw).map(|text| Json(text.into_boxed_str()))
    }

    /// `null`.
    pub fn null() -> Json {
        Json("null".into())
    }
}

/// A user's presence metadata: a JSON object of bounded size, shown to the channel.
///
/// One pointer wide (8 bytes) and no allocation for the empty object, because it is stored
/// once per user per channel and most members of a big audience have none.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Meta(Option<Box<Json>>);

impl Meta {
    /// The empty object `{}` (allocates nothing).
    pub fn empty() -> Meta {
        Meta(None)
    }

    /// The object's JSON text.
    pub fn as_str(&self) -> &str {
        self.0.as_deref().map_or("{}", Json::as_str)
    }

    /// Meta from another node's (or a token's) JSON text; `None` unless it is a JSON object.
    pub fn parse(text: &str) -> Option<Meta> {
        Json::parse(text)
            .filter(|json| json.as_str().starts_with('{'))
            .map(Meta::from_object)
    }

    /// Meta from a value the host built; `None` unless it is a JSON object.
    pub fn from_value(value: &serde_json::Value) -> Option<Meta> {
        value
            .is_object()
            .then(|| Meta::from_object(Json::from_value(value)))
    }

    /// Meta from a JSON object's text (the caller has checked that it is an object).
    pub(crate) fn from_json(object: Json) -> Meta {
        Meta::from_object(object)
    }

    fn from_object(object: Json) -> Meta {
        if object.as_str() == "{}" {
            Meta(None)
        } else {
            Meta(Some(Box::new(object)))
        }
    }
}

/// What presence a connection is told about in a channel (`events` in the URL or `join`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EventsMode {
    /// `state` on join, then `join` / `leave` / `update` events.
    #[default]
    All,
    /// `count` messages instead of member lists, coalesced per channel per second.
    Count,
    /// No presence pushed; `who` still answers.
    None,
    /// `state` on join, then the changes coalesced into one `diff` per channel per
    /// `--diff-interval` (a big room's arrivals cost a message per tick, not one per member).
    Diff,
}

impl EventsMode {
    /// Parses `all`, `count`, `none` or `diff`.
    pub fn parse(text: &str) -> Option<EventsMode> {
        match text {
            "all" => Some(EventsMode::All),
            "count" => Some(EventsMode::Count),
            "none" => Some(EventsMode::None),
            "diff" => Some(EventsMode::Diff),
            _ => None,
        }
    }
}

/// Why a user left a channel, as carried by the `leave` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveReason {
    /// The client sent a `leave` command.
    Left,
    /// The peer closed the connection (Close frame or end of stream).
    Closed,
    /// The peer went silent for the heartbeat timeout.
    Timeout,
    /// A protocol violation, an oversized message or an I/O error.
    Error,
    /// The peer let more than the backlog limit pile up unsent.
    SlowConsumer,
    /// The server is shutting down.
    Shutdown,
    /// The connection's token expired without a refresh (Close 4001).
    Expired,
    /// In a cluster: the node the user was connected to stopped refreshing its liveness
    /// (it died or lost Redis for longer than `--node-ttl`).
    NodeDown,
}

impl LeaveReason {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaveReason::Left => "left",
            LeaveReason::Closed => "closed",
            LeaveReason::Timeout => "timeout",
            LeaveReason::Error => "error",
            LeaveReason::SlowConsumer => "slow_consumer",
            LeaveReason::Shutdown => "shutdown",
            LeaveReason::Expired => "expired",
            LeaveReason::NodeDown => "node_down",
        }
    }

    /// Every reason.
    pub const ALL: [LeaveReason; 8] = [
        LeaveReason::Left,
        LeaveReason::Closed,
        LeaveReason::Timeout,
        LeaveReason::Error,
        LeaveReason::SlowConsumer,
        LeaveReason::Shutdown,
        LeaveReason::Expired,
        LeaveReason::NodeDown,
    ];

    /// The reason of a wire name.
    pub fn parse(text: &str) -> Option<LeaveReason> {
        LeaveReason::ALL
            .into_iter()
            .find(|reason| reason.as_str() == text)
    }
}

impl fmt::Display for LeaveReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `code` of an `error` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Not valid JSON, not an object, or a field missing or of the wrong form.
    BadRequest,
    /// A `type` the server does not know.
    UnknownType,
    /// The command names a channel this connection has not joined.
    NotJoined,
    /// A field (such as `meta`) is over its size limit.
    TooLarge,
    /// The command is not allowed for this connection.
    Forbidden,
    /// The connection sends commands faster than allowed.
    RateLimited,
}

impl ErrorCode {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::RateLimited => "rate_limited",
        }
    }
}

/// One member line of a `state` message.
#[derive(Debug, Clone, Copy)]
pub struct MemberView<'a> {
    /// The user id.
    pub user: &'a str,
    /// How many of the user's connections are in the channel.
    pub conns: u32,
    /// The user's meta in the channel.
    pub meta: &'a Meta,
}

/// Counts of a channel, as carried by `count` messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Distinct users present.
    pub users: usize,
    /// Connections subscribed.
    pub connections: usize,
    /// The channel's sequence number.
    pub seq: u64,
}
