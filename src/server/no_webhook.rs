//! Webhooks left out (the crate's `webhooks` feature is off): a server posts none, and
//! `Config::webhooks` URLs are refused at start (`ConfigError::Webhook`).
//!
//! The same surface as `webhook.rs`, on a type without values: the loop's calls stay as they
//! are and the compiler drops them.

use super::Server;
use crate::config::{Config, ConfigError};
use crate::webhook::Stats;
use crate::wheel::Millis;

/// No webhook delivery: there is no value of this type.
pub(super) enum Webhooks {}

impl Webhooks {
    /// Always none (the configuration was refused if it named URLs).
    pub fn from_config(_: &Config, _: u64) -> Result<Option<Webhooks>, ConfigError> {
        Ok(None)
    }

    /// Never called: there is no value.
    pub fn stats(&self) -> Stats {
        match *self {}
    }

    /// Never called: there is no value.
    pub fn next_deadline(&self) -> Option<Millis> {
        match *self {}
    }
}

impl Server {
    /// Nothing to deliver.
    pub(super) fn webhooks_turn(&mut self, _: Millis) {}

    /// No webhook socket is ever registered.
    pub(super) fn on_webhook(&mut self, _: usize, _: Millis) {}
}
