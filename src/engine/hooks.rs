//! Webhook events, decided where presence transitions are decided: once per transition,
//! by one node.
//!
//! - Alone (or degraded), the node's own roster decides: an announced join, update or
//!   leave (after the leave grace: a reload inside it announces nothing, so it fires nothing)
//!   becomes `member_added`, `member_updated` or `member_removed`; a channel's first join
//!   (seq 1) is also `channel_occupied`, its last leave `channel_vacated`.
//! - In a live cluster the cluster script decides: each `J`, `U`, `L` note names the node
//!   whose call made the change (the node that held or released, or the survivor that
//!   reaped a dead node), and only that node emits the events.
//! - A Pusher app's public and private channels have no members: their first subscription
//!   is `channel_occupied`, their last `channel_vacated`, and each change of their
//!   subscriptions a `subscription_count` (decided per node: see `docs/webhooks.md`).
//!   Client events are `client_event`, emitted by the node that received them.
//!
//! Invariant: nothing is collected unless webhooks are configured (`notices` is `None`), so
//! a server without them pays one branch per transition.

use super::Engine;
use crate::model::Json;
use crate::pusher::{self, ChannelKind};
use crate::roster::{Change, ChannelId};
use crate::webhook::{HookEvent, Notice};

impl Engine {
    /// Moves the webhook events decided so far into `into`, in order.
    pub fn take_notices(&mut self, into: &mut Vec<Notice>) {
        if let Some(notices) = self.notices.as_mut() {
            into.append(notices);
        }
    }

    /// The app (index) and the channel name a webhook names for the engine channel `name`;
    /// `None` for an app this server does not serve.
    fn hook_channel(&self, name: &str) -> Option<(Option<u16>, String)> {
        match pusher::split_internal(name) {
            Some((id, wire)) => {
                let (index, _) = self.config.pusher.app_by_id(id)?;
                Some((Some(index), wire.to_owned()))
            }
            None => Some((None, name.to_owned())),
        }
    }

    fn notice(&mut self, app: Option<u16>, event: HookEvent) {
        if let Some(notices) = self.notices.as_mut() {
            notices.push(Notice { app, event });
        }
    }

    /// A member transition in channel `name`; `emptied` when it left the channel without
    /// members.
    pub(super) fn hook_change(&mut self, name: &str, change: &Change, emptied: bool) {
        if self.notices.is_none() {
            return;
        }
        let Some((app, channel)) = self.hook_channel(name) else {
            return;
        };
        match change {
            Change::Join { user, seq, .. } => {
                if *seq == 1 {
                    let channel = channel.clone();
                    self.notice(app, HookEvent::ChannelOccupied { channel });
                }
                let user = user.to_string();
                self.notice(app, HookEvent::MemberAdded { channel, user });
            }
            Change::Update { user, meta, .. } => {
                let event = HookEvent::MemberUpdated {
                    channel,
                    user: user.to_string(),
                    meta: Json::from_value(&meta_value(meta.as_str())),
                };
                self.notice(app, event);
            }
            Change::Leave { user, .. } => {
                let user = user.to_string();
                let removed = HookEvent::MemberRemoved {
                    channel: channel.clone(),
                    user,
                };
                self.notice(app, removed);
                if emptied {
                    self.notice(app, HookEvent::ChannelVacated { channel });
                }
            }
        }
    }

    /// A Pusher subscription without membership changed in `channel` (`subscribed`: one was
    /// added): occupied, vacated, and the count.
    pub(super) fn hook_subscriptions(&mut self, channel: ChannelId, name: &str, subscribed: bool) {
        if self.notices.is_none() {
            return;
        }
        let Some((Some(app), wire)) = self.hook_channel(name) else {
            return;
        };
        if ChannelKind::of(&wire) == ChannelKind::Presence {
            return;
        }
        let count = self.roster.counts(channel).map_or(0, |c| c.connections);
        if subscribed && count == 1 {
            let channel = wire.clone();
            self.notice(Some(app), HookEvent::ChannelOccupied { channel });
        }
        let event = HookEvent::SubscriptionCount {
            channel: wire.clone(),
            count,
        };
        self.notice(Some(app), event);
        if !subscribed && count == 0 {
            self.notice(Some(app), HookEvent::ChannelVacated { channel: wire });
        }
    }

    /// The name of `channel` when leaving it may change a Pusher subscription count that a
    /// webhook tells (read before the leave: the channel may be gone after it).
    pub(super) fn subscription_hook_name(&self, channel: ChannelId) -> Option<String> {
        self.notices.as_ref()?;
        let name = self.roster.name(channel)?;
        let (_, wire) = pusher::split_internal(name)?;
        (ChannelKind::of(wire) != ChannelKind::Presence).then(|| name.to_owned())
    }

    /// A client event was received here on the engine channel `name`.
    #[cfg(feature = "pusher")]
    pub(super) fn hook_client_event(
        &mut self,
        name: &str,
        event: &str,
        data: &str,
        socket_id: &str,
        user_id: Option<&str>,
    ) {
        if self.notices.is_none() {
            return;
        }
        let Some((app, channel)) = self.hook_channel(name) else {
            return;
        };
        let event = HookEvent::ClientEvent {
            channel,
            event: event.to_owned(),
            data: data.to_owned(),
            socket_id: socket_id.to_owned(),
            user_id: user_id.map(str::to_owned),
        };
        self.notice(app, event);
    }
}

/// A meta's JSON text as a value (it is always a checked object).
fn meta_value(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::Object(Default::default()))
}
