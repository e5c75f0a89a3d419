//! Webhook events left out (the crate's `webhooks` feature is off): the engine decides none.
//!
//! The same calls as `hooks.rs`, each doing nothing, so that presence transitions call them
//! the same way in both builds.

use super::Engine;
use crate::roster::{Change, ChannelId};

impl Engine {
    /// A member transition: no event.
    pub(super) fn hook_change(&mut self, _: &str, _: &Change, _: bool) {}

    /// A Pusher subscription count change: no event.
    pub(super) fn hook_subscriptions(&mut self, _: ChannelId, _: &str, _: bool) {}

    /// No channel's subscription count is told.
    pub(super) fn subscription_hook_name(&self, _: ChannelId) -> Option<String> {
        None
    }

    /// A client event: no event.
    #[cfg(feature = "pusher")]
    pub(super) fn hook_client_event(
        &mut self,
        _: &str,
        _: &str,
        _: &str,
        _: &str,
        _: Option<&str>,
    ) {
    }
}
