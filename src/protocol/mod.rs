//! Wire protocol v1: the JSON messages carried in WebSocket text frames (see
//! `docs/protocol.md`, the public contract).
//!
//! Pure and allocation-light: [`command`] decodes what a client sends into typed commands
//! with typed errors; [`event`] encodes what the server sends. Names (users, channels) are
//! validated on entry so encoding can write them verbatim; free-form JSON (`meta`, `data`,
//! `id`, `ref`) is kept as compact serialized text ([`Json`]) and spliced in unchanged.
//!
//! Invariant: a number a client sends reaches every recipient exactly as sent: free-form
//! values are canonicalized from their text ([`canonical`]), never through an `f64`. The
//! canonical form is a fixed point: a value relayed by other nodes arrives as the first node
//! wrote it.

pub mod canonical;
pub mod command;
pub mod event;
pub(crate) mod fields;

use std::fmt;

pub use command::{decode, Action, Command, CommandError};

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

#[cfg(test)]
mod tests {
    use super::event;
    use super::*;

    /// A number as a client sends it, and as the server sends it on: exactly as sent.
    const NUMBERS: [(&str, &str); 12] = [
        ("12345678901234567890123", "12345678901234567890123"),
        // i64::MIN - 1 and u64::MAX + 1: past every integer type.
        ("-9223372036854775809", "-9223372036854775809"),
        ("18446744073709551616", "18446744073709551616"),
        // Past f64: kept, not refused as "out of range".
        ("1e400", "1e400"),
        ("1e-400", "1e-400"),
        ("0.1", "0.1"),
        (
            "0.10000000000000000000000001",
            "0.10000000000000000000000001",
        ),
        ("-0.0", "-0.0"),
        ("-0", "-0"),
        ("1.0", "1.0"),
        ("2.50", "2.50"),
        ("1E5", "1E5"),
    ];

    #[track_caller]
    fn decode_ok(text: &str) -> Command {
        decode(text, 1024).unwrap_or_else(|error| panic!("{text}: {error:?}"))
    }

    #[test]
    fn numbers_in_id_and_ref_pass_through() {
        for (sent, wire) in NUMBERS {
            let command = decode_ok(&format!(r#"{{"type":"ping","id":{sent},"ref":[{sent}]}}"#));
            let Action::Ping { id } = command.action else {
                panic!("{sent}: not a ping");
            };
            assert_eq!(
                event::pong(&id, command.reference.as_ref()),
                format!(r#"{{"type":"pong","id":{wire},"ref":[{wire}]}}"#),
                "sent {sent}"
            );
        }
    }

    #[test]
    fn numbers_in_meta_and_data_pass_through() {
        for (sent, wire) in NUMBERS {
            let text = format!(r#"{{"type":"update","channel":"c","meta":{{"n": {sent}}}}}"#);
            let Action::Update { meta, .. } = decode_ok(&text).action else {
                panic!("{sent}: not an update");
            };
            assert_eq!(
                event::update("c", "u", &meta, 1),
                format!(
                    r#"{{"type":"update","channel":"c","user":"u","meta":{{"n":{wire}}},"seq":1}}"#
                ),
                "sent {sent}"
            );
            let text = format!(r#"{{"type":"publish","channel":"c","data":[ {sent} ]}}"#);
            let Action::Publish { data, .. } = decode_ok(&text).action else {
                panic!("{sent}: not a publish");
            };
            assert_eq!(
                event::message("c", None, &data),
                format!(r#"{{"type":"message","channel":"c","from":null,"data":[{wire}]}}"#),
                "sent {sent}"
            );
        }
    }

    /// Another node's text is checked and kept as is; the wire form is a fixed point, so a
    /// value relayed through any number of nodes arrives as the first node sent it.
    #[test]
    fn numbers_from_other_nodes_pass_through() {
        for (sent, wire) in NUMBERS {
            let parsed = Json::parse(sent).unwrap_or_else(|| panic!("{sent} refused"));
            assert_eq!(parsed.as_str(), wire);
            assert_eq!(Json::parse(wire).map(|json| json.0), Some(wire.into()));
            let meta = Meta::parse(&format!(r#"{{"n":{sent}}}"#)).expect("an object");
            assert_eq!(meta.as_str(), format!(r#"{{"n":{wire}}}"#));
        }
    }

    /// Only numbers are kept as sent: the rest of §2's canonical form still applies.
    #[test]
    fn whitespace_key_order_and_duplicates_are_still_canonical() {
        let json =
            Json::parse(r#"{ "b" : 1E5, "a" : [ 1.50 , -0 ], "b" : 12345678901234567890123 }"#)
                .expect("valid");
        assert_eq!(
            json.as_str(),
            r#"{"a":[1.50,-0],"b":12345678901234567890123}"#
        );
    }
}
