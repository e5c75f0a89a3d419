//! # rollcall
//!
//! A lean WebSocket presence server: it knows, second by second, who is connected to which
//! channel, tells every member when someone arrives or goes, and notices the connections
//! that went silent without saying goodbye.
//!
//! ## Layers
//! - Pure core, no sockets and no clock (time is a parameter, in [`wheel::Millis`]):
//!   - [`engine`], the application: sessions, presence, commands, limits, liveness, tokens,
//!     watchers, counts, the cluster's state and shutdown; inputs in, [`engine::Effect`]s
//!     out;
//!   - [`dialect`], the wire protocols (rollcall v1, the conformance echo): upgrade request
//!     to identity, frames to neutral commands, neutral events to frames;
//!   - [`model`], the neutral vocabulary both speak (values, modes, reasons, commands, events);
//!   - and what they are built from: [`roster`] (presence per channel and user), [`wheel`]
//!     (every deadline), [`heartbeat`] (when to ping, when to give up), [`protocol`] (v1's
//!     JSON codec), [`http`] (the upgrade request), [`token`], [`rate`], [`names`],
//!     [`units`], [`ids`], and [`cluster`] (the Redis codec, the notes nodes exchange, the
//!     cluster-wide presence and the node's Redis session).
//! - The event loop, [`Server`], I/O only: one thread, one `mio::Poll`, sockets in a
//!   generational slab; it reads the clock once per turn, feeds the engine and carries out
//!   its effects. See `docs/architecture.md`.
//!
//! ## Quick start
//! ```no_run
//! let config = rollcall::Config::default().listen("127.0.0.1:8080".parse().unwrap());
//! let mut server = rollcall::Server::bind(config)?;
//! server.run()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Three ways to embed
//! - [`Server::run`] or [`Server::run_with`] a [`Handler`] (told of connection requests,
//!   presence changes and publications) on a thread of the host's;
//! - a [`Handle`] (`Clone + Send`) steers a running server from other threads;
//! - [`Server::bind_on`] a host's own `mio::Poll`, with tokens from a [`TokenSpace`] of the
//!   host's choosing, driven by [`Server::handle_event`], [`Server::handle_timeout`] and
//!   [`Server::next_deadline`].
//!
//! A server with [`Config::redis`] set is a node of a cluster: presence and publications are
//! shared with every node on the same Redis, through two non-blocking connections on the
//! server's (or the host's) poll, with tokens from the same [`TokenSpace`].
//!
//! See `docs/embedding.md` for examples, and `docs/protocol.md` for the wire protocol.
//!
//! ## Features
//! - `cli` (default): the binaries' dependencies (`env_logger`, `lexopt`) and `signals`.
//! - `signals`: [`Server::shutdown_on_signals`] (graceful shutdown on SIGINT / SIGTERM).
//! - `cluster`, `dashboard`, `pusher`, `webhooks` (default): cluster mode, the dashboard page,
//!   Pusher Channels compatibility, webhooks; a host with `default-features = false` turns on
//!   what it uses (`docs/embedding.md`, "Size"), and a setting whose feature is left out is
//!   refused at start.
//! - `webhook-tls` (off by default: it almost doubles the binary): `https://` webhook URLs
//!   (rustls with ring, Mozilla's roots, [`webhook::WebhookSettings::ca`]); without it they
//!   are refused by [`Config::validate`].
//!
//! The library logs through `log` and never installs a logger, and never reads the
//! environment.

#![deny(missing_docs)]

#[cfg(not(target_pointer_width = "64"))]
compile_error!("rollcall packs {tag, generation, slot} into a mio token and needs a 64-bit target");

pub mod cluster;
pub mod config;
pub mod dialect;
pub mod engine;
pub mod frame_boundary;
pub mod heartbeat;
pub mod http;
pub mod ids;
pub mod last_seen;
pub mod metrics;
pub mod model;
pub mod names;
mod packed_map;
pub mod protocol;
pub mod pusher;
pub mod rate;
pub mod roster;
mod server;
pub mod token;
pub mod units;
pub mod user_id;
pub mod webhook;
pub mod wheel;

/// The `mio` this crate is built with: a host driving [`Server::bind_on`] uses its `Poll`,
/// `Registry`, `Token` and `Events` (no version to match by hand).
pub use mio;

pub use config::{Config, ConfigError, Endpoints};
pub use engine::{Actions, ConnectRequest, Decision, Handler, Presence, MAX_HOOK_CHAIN};
pub use model::{
    ChannelSnapshot, Counts, EventsMode, Json, LeaveReason, Member, Meta, PresenceSnapshot,
    UserStatus,
};
pub use rate::RateLimit;
pub use server::{BindError, Handle, HandleError, Server, Spawned, Stop, TokenSpace};

/// The embedding guide's examples (`docs/embedding.md`), compiled as doctests so that they
/// stay true.
#[cfg(doctest)]
#[doc = include_str!("../docs/embedding.md")]
struct EmbeddingGuide;
