//! Wire protocol v1: the JSON messages carried in WebSocket text frames (see
//! `docs/protocol.md`, the public contract).
//!
//! Pure and allocation-light: [`command`] decodes what a client sends into typed commands
//! with typed errors; [`event`] encodes what the server sends. Names (users, channels) are
//! validated on entry so encoding can write them verbatim; free-form JSON (`meta`, `data`,
//! `id`, `ref`) is kept as compact serialized text ([`Json`]) and spliced in unchanged.

pub mod command;
pub mod event;

use std::fmt;

pub use command::{decode, Action, Command, CommandError};

/// A compact, valid JSON text (a value a client sent, re-serialized without whitespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Json(Box<str>);

impl Json {
    /// Serializes a parsed value compactly.
    pub fn from_value(value: &serde_json::Value) -> Json {
        Json(value.to_string().into_boxed_str())
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Checks and compacts a JSON text from elsewhere (another node); `None` if invalid.
    pub fn parse(text: &str) -> Option<Json> {
        serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .map(|value| Json::from_value(&value))
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

    /// Meta from another node's JSON text; `None` unless it is a JSON object.
    pub fn parse(text: &str) -> Option<Meta> {
        serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .filter(serde_json::Value::is_object)
            .map(|object| Meta::from_object(Json::from_value(&object)))
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
}

impl EventsMode {
    /// Parses `all`, `count` or `none`.
    pub fn parse(text: &str) -> Option<EventsMode> {
        match text {
            "all" => Some(EventsMode::All),
            "count" => Some(EventsMode::Count),
            "none" => Some(EventsMode::None),
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
