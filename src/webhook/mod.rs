//! Webhooks, the pure half: what the server tells the app's backend, in Pusher's format (so
//! every Pusher server SDK validates them as they are), and the decisions of their delivery.
//!
//! - [`event`]: the neutral events the engine emits once per presence transition, and their
//!   Pusher JSON.
//! - [`target`]: an `http://` or `https://` URL, read once at start (an `https://` one needs
//!   the `webhook-tls` feature: [`WebhookSettings::validate`] refuses it in a build without).
//! - [`outbox`]: one URL's bounded queue, its batches (up to [`outbox::BATCH_EVENTS`] events or
//!   [`outbox::BATCH_WAIT_MS`]), the signed request, the retries with exponential backoff,
//!   at most one request in flight, in virtual time.
//! - [`http`]: the request's bytes and the reading of the receiver's answer (`httparse`).
//!
//! The socket side (connect, write, read, on the loop's own poll) is `server::webhook`, and
//! its TLS session (`server::webhook_tls`, with the `webhook-tls` feature).
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
use std::path::PathBuf;

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

/// True when this build posts to `https://` URLs (the `webhook-tls` cargo feature).
pub const TLS_BUILT: bool = cfg!(feature = "webhook-tls");

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
    /// A PEM file of CA certificates trusted for `https://` URLs besides Mozilla's roots
    /// (compiled in): a private CA, or a test's. Read at bind time. Default none. Needs the
    /// `webhook-tls` feature.
    pub ca: Option<PathBuf>,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            urls: Vec::new(),
            secret: None,
            key: DEFAULT_KEY.to_owned(),
            queue: DEFAULT_QUEUE,
            ca: None,
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
            .field("ca", &self.ca)
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
        self.check(pusher_apps, TLS_BUILT)
    }

    /// [`Self::validate`] for a build with TLS (`tls_built`) or without.
    fn check(&self, pusher_apps: bool, tls_built: bool) -> Result<(), String> {
        if !tls_built {
            if let Some(url) = self.urls.iter().find(|url| url.tls) {
                return Err(format!("{url}: {NO_TLS}"));
            }
            if self.ca.is_some() {
                return Err(format!("--webhook-ca: {NO_TLS}"));
            }
        }
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

/// Why a build without the `webhook-tls` feature refuses `https://`.
const NO_TLS: &str = "https:// webhooks need rollcall built with the cargo feature \
                      `webhook-tls` (`cargo install rollcall --features webhook-tls`), which \
                      this build was compiled without; or post to an http:// URL";

/// Who signs a batch: the native key and secret, or one Pusher app's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// `X-Pusher-Key`.
    pub key: String,
    /// The HMAC-SHA256 key of `X-Pusher-Signature`.
    pub secret: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(urls: &[&str]) -> WebhookSettings {
        WebhookSettings {
            urls: urls.iter().map(|url| url.parse().expect("url")).collect(),
            secret: Some("s".into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_build_without_tls_refuses_https_naming_the_feature() {
        let hooks = settings(&["http://a/", "https://b/in"]);
        let error = hooks.check(false, false).expect_err("https without TLS");
        assert!(error.starts_with("https://b/in: "), "{error}");
        assert!(error.contains("`webhook-tls`"), "{error}");
        assert_eq!(hooks.check(false, true), Ok(()));
        let plain = WebhookSettings {
            ca: Some("ca.pem".into()),
            ..settings(&["http://a/"])
        };
        let error = plain.check(false, false).expect_err("a CA without TLS");
        assert!(error.contains("--webhook-ca") && error.contains("`webhook-tls`"));
        assert_eq!(settings(&["http://a/"]).check(false, false), Ok(()));
    }

    #[test]
    fn this_build_says_whether_it_has_tls() {
        let hooks = settings(&["https://b/"]);
        assert_eq!(hooks.validate(false).is_ok(), TLS_BUILT);
    }
}
