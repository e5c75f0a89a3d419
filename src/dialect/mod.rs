//! Wire dialects: how a connection's frames become neutral commands and neutral events
//! become its frames. Pure: no sockets, no clock.
//!
//! A dialect reads its upgrade request into an identity request ([`Upgrade`]), decodes each
//! data frame into a [`Decoded`] and encodes each [`Event`] it carries (the welcome
//! included). The engine records each connection's dialect in one byte and encodes a
//! broadcast once per dialect in use, never once per connection.
//!
//! Adding a dialect (see `docs/architecture.md`): one module here, a variant of [`Dialect`]
//! with its arms in the methods below, and the request that selects it in
//! [`Dialect::for_request`].

pub mod echo;
#[cfg(feature = "pusher")]
pub mod pusher;
pub mod v1;

use crate::config::Config;
use crate::http::upgrade::Access;
use crate::http::{Request, Response, Upgrade};
use crate::model::{Command, CommandError, Event};

/// A connection's wire protocol, one byte per connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Dialect {
    /// rollcall's own JSON protocol v1 (`docs/protocol.md`).
    V1 = 0,
    /// Conformance mode (`--echo`): every data frame goes back as it came.
    Echo = 1,
    /// Pusher Channels protocol 7 (`/app/{key}`), for pusher-js and Laravel Echo (feature
    /// `pusher`).
    #[cfg(feature = "pusher")]
    Pusher = 2,
}

/// A data frame as the socket layer read it.
#[derive(Debug, Clone, Copy)]
pub enum Frame<'a> {
    /// A text frame (valid UTF-8, RFC 6455 §8.1).
    Text(&'a str),
    /// A binary frame.
    Binary(&'a [u8]),
}

/// What a data frame asks for.
#[derive(Debug)]
pub enum Decoded {
    /// A command for the engine.
    Command(Command),
    /// A frame the dialect refuses: the engine answers with this error (after the rate
    /// limit, like any command).
    Refused(CommandError),
    /// The frame goes back unchanged (the echo dialect); the engine is not involved.
    Echo,
    /// A frame that only shows the peer is alive (a Pusher `pong`): nothing to do.
    Activity,
}

impl Dialect {
    /// Every dialect, in the order of their byte.
    #[cfg(feature = "pusher")]
    pub const ALL: [Dialect; 3] = [Dialect::V1, Dialect::Echo, Dialect::Pusher];
    /// Every dialect, in the order of their byte.
    #[cfg(not(feature = "pusher"))]
    pub const ALL: [Dialect; 2] = [Dialect::V1, Dialect::Echo];

    /// The number of dialects (the size of a per-dialect table).
    pub const COUNT: usize = Dialect::ALL.len();

    /// The dialect's byte, as an index into a per-dialect table.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The dialect a WebSocket request at `request` speaks on a server configured by
    /// `config`; `None` when no dialect serves that path.
    pub fn for_request(request: &Request, config: &Config) -> Option<Dialect> {
        match request.path.as_str() {
            "/" | "/ws" if config.echo => Some(Dialect::Echo),
            "/" | "/ws" => Some(Dialect::V1),
            #[cfg(feature = "pusher")]
            path if !config.pusher.apps.is_empty() && pusher::app_key(path).is_some() => {
                Some(Dialect::Pusher)
            }
            _ => None,
        }
    }

    /// Reads the upgrade request into the identity and subscriptions it asks for, or the
    /// refusal to send.
    #[cfg_attr(not(feature = "pusher"), allow(unused_variables))]
    pub fn upgrade(
        self,
        request: &Request,
        access: Access<'_>,
        config: &Config,
    ) -> Result<Upgrade, Response> {
        match self {
            Dialect::V1 => v1::upgrade(request, access),
            Dialect::Echo => echo::upgrade(request, access),
            #[cfg(feature = "pusher")]
            Dialect::Pusher => pusher::upgrade(request, access, &config.pusher),
        }
    }

    /// Decodes one data frame; `max_meta_size` bounds a `meta` object.
    pub fn decode(self, frame: Frame<'_>, max_meta_size: usize) -> Decoded {
        match self {
            Dialect::V1 => v1::decode(frame, max_meta_size),
            Dialect::Echo => Decoded::Echo,
            #[cfg(feature = "pusher")]
            Dialect::Pusher => pusher::decode(frame),
        }
    }

    /// The close code that tells a client of this dialect the server is going away
    /// (shutting down) and it should come back: 1001 (RFC 6455 §7.4.1), or Pusher's 4200.
    pub fn going_away_code(self) -> u16 {
        match self {
            #[cfg(feature = "pusher")]
            Dialect::Pusher => pusher::GOING_AWAY,
            Dialect::V1 | Dialect::Echo => 1001,
        }
    }

    /// True when connections of this dialect take part in presence (join, watch, hear
    /// events); false for a dialect that only talks back, such as echo.
    pub fn carries_presence(self) -> bool {
        match self {
            Dialect::V1 => true,
            #[cfg(feature = "pusher")]
            Dialect::Pusher => true,
            Dialect::Echo => false,
        }
    }

    /// True when a joiner must find itself among the members its channel's state lists
    /// (pusher-js's `members.me`), even before a cluster's view has heard of its join.
    pub fn lists_itself(self) -> bool {
        match self {
            #[cfg(feature = "pusher")]
            Dialect::Pusher => true,
            Dialect::V1 | Dialect::Echo => false,
        }
    }

    /// The text frame that carries `event`, or `None` when this dialect does not carry it.
    pub fn encode(self, event: &Event<'_>) -> Option<String> {
        match self {
            Dialect::V1 => v1::encode(event),
            Dialect::Echo => None,
            #[cfg(feature = "pusher")]
            Dialect::Pusher => pusher::encode(event),
        }
    }
}
