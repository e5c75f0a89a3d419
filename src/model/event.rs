//! Neutral events: what the engine tells connections, before any dialect spells it.
//!
//! An event borrows everything it names (the engine's roster, the cluster view, a command's
//! `ref`), so building one costs nothing; a dialect encodes it once for every recipient that
//! speaks it. A `state` lists its members through a function, so that each dialect in use
//! walks them itself without a copy.

use super::{Counts, ErrorCode, Json, LeaveReason, MemberView, Meta};

/// The members of a channel, in no particular order.
pub type Members<'a> = Box<dyn Iterator<Item = MemberView<'a>> + 'a>;

/// Something the server tells one connection or many.
pub enum Event<'a> {
    /// The connection is open: its id, its user, and the heartbeat it must keep.
    Welcome {
        /// The connection's id (unique while it lives).
        conn: &'a str,
        /// The user it is connected as.
        user: &'a str,
        /// The interval at which silence is checked (ms).
        interval_ms: u64,
        /// Silence after which the connection is dropped (ms).
        timeout_ms: u64,
    },
    /// The full member list of a channel and its seq.
    State {
        /// The channel.
        channel: &'a str,
        /// The channel's seq (the number of the last change).
        seq: u64,
        /// Its members.
        members: &'a dyn Fn() -> Members<'a>,
        /// The `ref` of the command this answers.
        reference: Option<&'a Json>,
    },
    /// A channel's counts.
    Count {
        /// The channel.
        channel: &'a str,
        /// Users, connections, seq.
        counts: Counts,
        /// The `ref` of the command this answers.
        reference: Option<&'a Json>,
    },
    /// A user became a member.
    Join {
        /// The channel.
        channel: &'a str,
        /// The user.
        user: &'a str,
        /// The user's meta in the channel.
        meta: &'a Meta,
        /// The channel's seq after the change.
        seq: u64,
    },
    /// A user stopped being a member.
    Leave {
        /// The channel.
        channel: &'a str,
        /// The user.
        user: &'a str,
        /// Why.
        reason: LeaveReason,
        /// The channel's seq after the change.
        seq: u64,
    },
    /// A member's meta changed.
    Update {
        /// The channel.
        channel: &'a str,
        /// The user.
        user: &'a str,
        /// The new meta.
        meta: &'a Meta,
        /// The channel's seq after the change.
        seq: u64,
    },
    /// A channel's presence changes of one tick, folded per user (`events=diff`).
    Diff {
        /// The channel.
        channel: &'a str,
        /// The changes, with the seqs before and after them.
        diff: &'a super::PendingDiff,
    },
    /// A publication to a channel, or (`channel: None`) a message from the host to one user.
    Message {
        /// The channel; `None` for a direct message.
        channel: Option<&'a str>,
        /// The publishing user; `None` for the server or the host.
        from: Option<&'a str>,
        /// Any JSON value.
        data: &'a Json,
    },
    /// A refreshed token was accepted; it expires at `expires_at` (Unix seconds).
    Refreshed {
        /// The new expiry.
        expires_at: u64,
        /// The `ref` of the refresh.
        reference: Option<&'a Json>,
    },
    /// The answer to an application-level ping.
    Pong {
        /// The ping's id.
        id: &'a Json,
        /// The ping's `ref`.
        reference: Option<&'a Json>,
    },
    /// A command failed; nothing changed.
    Error {
        /// What kind of failure.
        code: ErrorCode,
        /// A short human-readable explanation.
        message: &'a str,
        /// The failed command's `ref`.
        reference: Option<&'a Json>,
        /// The channel it was about, when the dialect tells failures by channel.
        channel: Option<&'a str>,
    },
    /// A named event on a channel of a Pusher app: from its REST API or from a client.
    Named {
        /// The channel (the engine's name, `APP#CHANNEL`).
        channel: &'a str,
        /// The event's name.
        event: &'a str,
        /// Its data, JSON text (a REST event's data is a JSON string).
        data: &'a str,
        /// The sending member's user id, for a client event on a presence channel.
        user_id: Option<&'a str>,
    },
    /// A subscription to a channel without members succeeded.
    Subscribed {
        /// The channel (the engine's name).
        channel: &'a str,
    },
    /// A Pusher `cache-` channel had no event to give a new subscriber.
    CacheMiss {
        /// The channel (the engine's name).
        channel: &'a str,
    },
    /// A server-side ping a dialect carries in its own frames (besides WebSocket Pings).
    Ping,
    /// A refusal told with a numeric code, in a dialect that has them (Pusher's
    /// `pusher:error`): before a close with that code, or alone (a refused sign-in).
    Coded {
        /// The code (a close code, when a close follows).
        code: u16,
        /// Why.
        reason: &'a str,
    },
    /// A Pusher sign-in succeeded: the signed `user_data`, as the client sent it.
    SignedIn {
        /// The user data (JSON text, sent back as a string).
        user_data: &'a str,
    },
    /// Users of a signed-in connection's watchlist came online or went offline.
    Watchlist {
        /// True for `online`, false for `offline`.
        online: bool,
        /// The users.
        users: &'a [&'a str],
    },
    /// The answer to `watch_users`: which of the users are online, and when the others were
    /// last seen (Unix milliseconds, `None` if never or forgotten).
    UserStatuses {
        /// The online users.
        online: &'a [&'a str],
        /// The offline users and their last-seen times.
        offline: &'a [(&'a str, Option<u64>)],
        /// The `ref` of the command this answers.
        reference: Option<&'a Json>,
    },
    /// A watched user's first connection arrived.
    UserOnline {
        /// The user.
        user: &'a str,
    },
    /// A watched user's last connection went (after the leave grace).
    UserOffline {
        /// The user.
        user: &'a str,
        /// When it was last seen (Unix milliseconds).
        last_seen: u64,
    },
}
