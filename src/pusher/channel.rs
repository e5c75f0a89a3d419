//! Pusher channel names and kinds (protocol 7): the prefix decides what a subscription
//! needs (nothing, a signature, a signature over the member's data) and whether it has
//! members.

use crate::names;

/// What kind of channel a name is, by its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    /// No prefix (or `cache-`): anyone may subscribe.
    Public,
    /// `private-` (or `private-cache-`): a signature over `socket_id:channel`.
    Private,
    /// `private-encrypted-`: as private; the data is end-to-end encrypted and relayed as is.
    Encrypted,
    /// `presence-` (or `presence-cache-`): a signature over `socket_id:channel:channel_data`,
    /// and members.
    Presence,
    /// `#server-to-user-{id}`: the signed-in user's own channel.
    ServerToUser,
}

/// The prefix of a signed-in user's own channel.
pub const SERVER_TO_USER: &str = "#server-to-user-";

impl ChannelKind {
    /// The kind of `channel`, by prefix (in the order pusher-js checks them).
    pub fn of(channel: &str) -> ChannelKind {
        if channel.starts_with(SERVER_TO_USER) {
            ChannelKind::ServerToUser
        } else if channel.starts_with("presence-") {
            ChannelKind::Presence
        } else if channel.starts_with("private-encrypted-") {
            ChannelKind::Encrypted
        } else if channel.starts_with("private-") {
            ChannelKind::Private
        } else {
            ChannelKind::Public
        }
    }

    /// True when subscribing needs a signature from the app's backend.
    pub fn needs_auth(self) -> bool {
        matches!(
            self,
            ChannelKind::Private | ChannelKind::Encrypted | ChannelKind::Presence
        )
    }

    /// True when clients may send `client-` events on it.
    pub fn takes_client_events(self) -> bool {
        matches!(self, ChannelKind::Private | ChannelKind::Presence)
    }
}

/// True for a `cache-` channel (`cache-`, `private-cache-`, `presence-cache-`,
/// `private-encrypted-cache-`): it remembers its last event.
pub fn is_cache(channel: &str) -> bool {
    [
        "cache-",
        "private-cache-",
        "presence-cache-",
        "private-encrypted-cache-",
    ]
    .iter()
    .any(|prefix| channel.starts_with(prefix))
}

/// Checks a channel name a client or the REST API sent: a rollcall channel name (which
/// holds Pusher's alphabet `[-A-Za-z0-9_=@,.;]`, up to 200 bytes), or a server-to-user
/// channel whose user id is a valid user id.
pub fn validate(channel: &str) -> Result<(), String> {
    if let Some(user) = channel.strip_prefix(SERVER_TO_USER) {
        return names::validate_user(user).map_err(|error| format!("user {error}"));
    }
    names::validate_channel(channel).map_err(|error| format!("channel {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_by_prefix() {
        for (name, kind) in [
            ("chat", ChannelKind::Public),
            ("cache-x", ChannelKind::Public),
            ("private-App.Models.User.1", ChannelKind::Private),
            ("private-cache-x", ChannelKind::Private),
            ("private-encrypted-x", ChannelKind::Encrypted),
            ("presence-room.1", ChannelKind::Presence),
            ("presence-cache-x", ChannelKind::Presence),
            ("#server-to-user-42", ChannelKind::ServerToUser),
        ] {
            assert_eq!(ChannelKind::of(name), kind, "{name}");
        }
        assert!(is_cache("presence-cache-x") && !is_cache("presence-x"));
        assert!(ChannelKind::Presence.needs_auth() && !ChannelKind::Public.needs_auth());
        assert!(!ChannelKind::Encrypted.takes_client_events());
    }

    #[test]
    fn names() {
        for good in [
            "private-a=b,c;d@e.f",
            "presence-room.1",
            "#server-to-user-auth0|1",
        ] {
            assert_eq!(validate(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "a b",
            "a*",
            &"x".repeat(201),
            "#other",
            "#server-to-user-",
        ] {
            assert!(validate(bad).is_err(), "{bad:?}");
        }
    }
}
