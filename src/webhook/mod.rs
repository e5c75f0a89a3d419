//! Webhooks, the pure half: what the server tells the app's backend, in Pusher's format (so
//! every Pusher server SDK validates them as they are), and the decisions of their delivery.
//!
//! - [`event`]: the neutral events the engine emits once per presence transition, and their
//!   Pusher JSON.
//! - [`target`]: an `http://` URL, read once at start (`https://` is refused: no TLS here).
//! - [`outbox`]: one URL's bounded queue, its batches (up to [`outbox::BATCH_EVENTS`] events or
//!   [`outbox::BATCH_WAIT_MS`]), the signed request, the retries with exponential backoff,
//!   at most one request in flight, in virtual time.
//! - [`http`]: the request's bytes and the reading of the receiver's answer (`httparse`).
//!
//! The socket side (connect, write, read, on the loop's own poll) is `server::webhook`.
//!
//! Invariants: a URL's events leave in the order they were queued (so in order per channel),
//! each batch is retried as the same bytes until it is acknowledged with a 2xx or its retry
//! window ([`outbox::RETRY_WINDOW_MS`]) is over; no clock is read here.

#[cfg(feature = "webhooks")]
pub mod event;
#[cfg(feature = "webhooks")]
pub mod http;
#[cfg(feature = "webhooks")]
pub mod outbox;
pub mod target;

use std::fmt;

#[cfg(feature = "webhooks")]
pub use event::{HookEvent, Notice};
#[cfg(feature = "webhooks")]
pub use outbox::{Action, Outbox, Outcome};
pub use target::{TargetError, WebhookUrl};

/// The key `X-Pusher-Key` carries for native channels unless `--webhook-key` says otherwise.
pub const DEFAULT_KEY: &str = "rollcall";

/// The events a URL's queue holds at most, unless `--webhook-queue` says otherwise.
pub const DEFAULT_QUEUE: usize = 10_000;

/// The most webhook URLs a server posts to.
pub const MAX_URLS: usize = 16;

/// Where webhooks go and how they are signed (`--webhook*`).
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// The receivers; each gets every event. Default none (off).
    pub urls: Vec<WebhookUrl>,
    /// The secret that signs native channels' events; `None`: they are not sent (a Pusher
    /// app's events are signed with the app's own secret).
    pub secret: Option<String>,
    /// `X-Pusher-Key` of native channels' events. Default `rollcall`.
    pub key: String,
    /// Events one URL's queue holds (waiting and in flight); more are dropped and counted.
    /// Default 10,000 (each costs its JSON, about 100 bytes, while queued).
    pub queue: usize,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            urls: Vec::new(),
            secret: None,
            key: DEFAULT_KEY.to_owned(),
            queue: DEFAULT_QUEUE,
        }
    }
}

impl fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("urls", &self.urls)
            .field("secret", &self.secret.as_ref().map(|_| "…"))
            .field("key", &self.key)
            .field("queue", &self.queue)
            .finish()
    }
}

impl WebhookSettings {
    /// True when events are posted anywhere.
    pub fn enabled(&self) -> bool {
        !self.urls.is_empty()
    }

    /// Checks the settings; `pusher_apps` tells whether native events are the only ones.
    pub fn validate(&self, pusher_apps: bool) -> Result<(), String> {
        if !self.enabled() {
            return Ok(());
        }
        if self.urls.len() > MAX_URLS {
            return Err(format!("at most {MAX_URLS} webhook URLs"));
        }
        if self.secret.as_deref() == Some("") {
            return Err("the webhook secret is empty".into());
        }
        if self.secret.is_none() && !pusher_apps {
            return Err(
                "--webhook needs --webhook-secret (or ROLLCALL_WEBHOOK_SECRET) to sign".into(),
            );
        }
        if self.key.is_empty() || self.key.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err("the webhook key must be printable ASCII without spaces".into());
        }
        if self.queue == 0 {
            return Err("the webhook queue must hold at least one event".into());
        }
        Ok(())
    }
}

/// The delivery's figures, for the metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Events acknowledged by a receiver (once per URL).
    pub sent: u64,
    /// Requests that failed or were answered with a status other than 2xx.
    pub failed: u64,
    /// Requests that were attempts after the first of their batch.
    pub retried: u64,
    /// Events dropped because a URL's queue was full.
    pub dropped: u64,
    /// Events given up on after the retry window.
    pub abandoned: u64,
    /// Events waiting or in flight, over every URL.
    pub queued: u64,
    /// Milliseconds from queueing to acknowledgement, summed over the events sent.
    pub latency_ms_sum: u64,
}

/// Who signs a batch: the native key and secret, or one Pusher app's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// `X-Pusher-Key`.
    pub key: String,
    /// The HMAC-SHA256 key of `X-Pusher-Signature`.
    pub secret: String,
}
