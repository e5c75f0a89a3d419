//! Presence as a host reads it through a `Handle`: owned, typed copies of what
//! `GET /presence` shows, taken in one turn of the loop (so consistent with each other).

use std::collections::BTreeMap;

use super::Json;

/// One member of a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The user id.
    pub user: String,
    /// How many of the user's connections are in the channel (across nodes, in a cluster).
    pub conns: u32,
    /// The user's meta in the channel (a JSON object).
    pub meta: Json,
}

/// One channel's members and seq.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChannelSnapshot {
    /// The channel's seq.
    pub seq: u64,
    /// Its members, by user id.
    pub members: Vec<Member>,
}

/// Every channel with members, as `GET /presence`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PresenceSnapshot {
    /// This node's open connections (watchers included).
    pub connections: usize,
    /// This node's users online (watchers excluded).
    pub users: usize,
    /// This node's connections that watch.
    pub watchers: usize,
    /// Every channel with members (cluster-wide in a live cluster), by name.
    pub channels: BTreeMap<String, ChannelSnapshot>,
}

/// Where a user is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserStatus {
    /// The user's open connections on this node.
    pub connections: usize,
    /// The channels the user is a member of (cluster-wide in a live cluster), by name.
    pub channels: Vec<String>,
}

impl UserStatus {
    /// True when the user has a connection here or is a member of a channel anywhere.
    pub fn is_online(&self) -> bool {
        self.connections > 0 || !self.channels.is_empty()
    }
}
