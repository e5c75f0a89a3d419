//! Neutral commands: what a client asks of the engine, whatever dialect carried it.

use super::{ErrorCode, EventsMode, Json, Meta};

/// A decoded command and the `ref` its replies echo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The client's `ref`, echoed by the reply or error this command causes.
    pub reference: Option<Json>,
    /// What the client asks for.
    pub action: Action,
}

/// The commands of protocol v1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Join a channel (idempotent), optionally with meta and an events mode.
    Join {
        /// The channel.
        channel: String,
        /// The user's meta in this channel; `None` keeps the current one (or `{}`).
        meta: Option<Meta>,
        /// The events mode; `None` means the connection's URL mode.
        events: Option<EventsMode>,
    },
    /// Leave a channel.
    Leave {
        /// The channel.
        channel: String,
    },
    /// Replace the user's meta in a channel.
    Update {
        /// The channel.
        channel: String,
        /// The new meta.
        meta: Meta,
    },
    /// Ask for the channel's current state.
    Who {
        /// The channel.
        channel: String,
    },
    /// Publish data to a channel's members.
    Publish {
        /// The channel.
        channel: String,
        /// Any JSON value.
        data: Json,
    },
    /// Watch a channel's presence without joining it (`*`: every channel).
    Watch {
        /// The channel, or `*`.
        channel: String,
    },
    /// Stop watching (`*`: stop watching every channel).
    Unwatch {
        /// The channel, or `*`.
        channel: String,
    },
    /// Follow users' online status (a watchlist), up to 100 users in all.
    WatchUsers {
        /// Valid user ids, without duplicates.
        users: Vec<String>,
    },
    /// Stop following users' online status.
    UnwatchUsers {
        /// Valid user ids, without duplicates.
        users: Vec<String>,
    },
    /// Replace the connection's token before it expires.
    Refresh {
        /// The new token (a JWT).
        token: String,
    },
    /// Application-level ping, answered with `pong` carrying the same `id`.
    Ping {
        /// Any JSON value (`null` when absent).
        id: Json,
    },
    /// Subscribe to a channel of the connection's Pusher app, with the app backend's
    /// signature when the channel's kind needs one.
    #[cfg(feature = "pusher")]
    Subscribe {
        /// The channel, as the app names it.
        channel: String,
        /// `KEY:SIGNATURE`, for private and presence channels.
        auth: Option<String>,
        /// The member's data as the client sent it (signed byte for byte), for presence.
        channel_data: Option<String>,
    },
    /// Unsubscribe from a channel of the connection's Pusher app; nothing is answered.
    #[cfg(feature = "pusher")]
    Unsubscribe {
        /// The channel, as the app names it.
        channel: String,
    },
    /// A Pusher user sign-in: the app backend's signature over the user's data.
    #[cfg(feature = "pusher")]
    Signin {
        /// `KEY:SIGNATURE`.
        auth: String,
        /// The user data as the client sent it (signed byte for byte): `id`, and optionally
        /// `user_info` and `watchlist`.
        user_data: String,
    },
    /// A client event: relayed to the channel's other subscribers.
    #[cfg(feature = "pusher")]
    ClientEvent {
        /// The channel, as the app names it.
        channel: String,
        /// The event's name (`client-...`).
        event: String,
        /// Its data, any JSON value.
        data: Json,
    },
}

/// A command the server answers with an `error` message; the connection stays open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError {
    /// The error code.
    pub code: ErrorCode,
    /// A short human-readable explanation.
    pub message: String,
    /// The offending command's `ref`, when it had one.
    pub reference: Option<Json>,
    /// The channel the command was about, when a dialect tells its failures by channel (a
    /// Pusher `subscription_error`).
    pub channel: Option<String>,
}

impl CommandError {
    /// An error of `code` with `message`, not yet tied to a `ref`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        CommandError {
            code,
            message: message.into(),
            reference: None,
            channel: None,
        }
    }

    /// The same error, about `channel`.
    pub fn on_channel(self, channel: &str) -> Self {
        CommandError {
            channel: Some(channel.to_owned()),
            ..self
        }
    }
}
