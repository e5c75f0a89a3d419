//! The events a webhook tells, neutral (the engine emits them once per transition) and their
//! JSON in Pusher's format (`../shared/pusher-protocol.md` §6): `{"name":..,"channel":..}`
//! plus the event's own fields.
//!
//! Invariant: every text field is JSON-escaped here; `meta` and a client event's `data` are
//! JSON the engine already checked, `meta` goes in as an object, `data` as a string (Pusher
//! gives client event data as the text the client sent).

use crate::model::Json;

/// One event for the app's backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookEvent {
    /// The channel got its first member (or subscriber).
    ChannelOccupied {
        /// The channel (an app's own name, without `ID#`).
        channel: String,
    },
    /// The channel's last member (or subscriber) left.
    ChannelVacated {
        /// The channel.
        channel: String,
    },
    /// The user became a member (its first connection, cluster-wide).
    MemberAdded {
        /// The channel.
        channel: String,
        /// The user.
        user: String,
    },
    /// The user stopped being a member (after the leave grace).
    MemberRemoved {
        /// The channel.
        channel: String,
        /// The user.
        user: String,
    },
    /// The member's meta changed (rollcall's own event).
    MemberUpdated {
        /// The channel.
        channel: String,
        /// The user.
        user: String,
        /// The new meta, a JSON object.
        meta: Json,
    },
    /// A Pusher client sent a `client-` event.
    ClientEvent {
        /// The channel.
        channel: String,
        /// The event's name.
        event: String,
        /// Its data, JSON text.
        data: String,
        /// The sender's socket id.
        socket_id: String,
        /// The sender's user id, on a presence channel.
        user_id: Option<String>,
    },
    /// A Pusher channel's subscriptions changed.
    SubscriptionCount {
        /// The channel.
        channel: String,
        /// Its subscriptions now.
        count: usize,
    },
}

/// An event and who it belongs to: a Pusher app (its index among the configured apps) or the
/// native channels (`None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The app, for a Pusher app's channel.
    pub app: Option<u16>,
    /// The event.
    pub event: HookEvent,
}

impl HookEvent {
    /// Pusher's name of the event.
    pub fn name(&self) -> &'static str {
        match self {
            HookEvent::ChannelOccupied { .. } => "channel_occupied",
            HookEvent::ChannelVacated { .. } => "channel_vacated",
            HookEvent::MemberAdded { .. } => "member_added",
            HookEvent::MemberRemoved { .. } => "member_removed",
            HookEvent::MemberUpdated { .. } => "member_updated",
            HookEvent::ClientEvent { .. } => "client_event",
            HookEvent::SubscriptionCount { .. } => "subscription_count",
        }
    }

    /// The channel it is about.
    pub fn channel(&self) -> &str {
        match self {
            HookEvent::ChannelOccupied { channel }
            | HookEvent::ChannelVacated { channel }
            | HookEvent::MemberAdded { channel, .. }
            | HookEvent::MemberRemoved { channel, .. }
            | HookEvent::MemberUpdated { channel, .. }
            | HookEvent::ClientEvent { channel, .. }
            | HookEvent::SubscriptionCount { channel, .. } => channel,
        }
    }

    /// The event's JSON object, as it goes into a batch's `events` array.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(96);
        out.push_str("{\"name\":\"");
        out.push_str(self.name());
        out.push_str("\",\"channel\":");
        push_string(&mut out, self.channel());
        match self {
            HookEvent::ChannelOccupied { .. } | HookEvent::ChannelVacated { .. } => {}
            HookEvent::MemberAdded { user, .. } | HookEvent::MemberRemoved { user, .. } => {
                out.push_str(",\"user_id\":");
                push_string(&mut out, user);
            }
            HookEvent::MemberUpdated { user, meta, .. } => {
                out.push_str(",\"user_id\":");
                push_string(&mut out, user);
                out.push_str(",\"meta\":");
                out.push_str(meta.as_str());
            }
            HookEvent::ClientEvent {
                event,
                data,
                socket_id,
                user_id,
                ..
            } => {
                out.push_str(",\"event\":");
                push_string(&mut out, event);
                out.push_str(",\"data\":");
                push_string(&mut out, data);
                out.push_str(",\"socket_id\":");
                push_string(&mut out, socket_id);
                if let Some(user) = user_id {
                    out.push_str(",\"user_id\":");
                    push_string(&mut out, user);
                }
            }
            HookEvent::SubscriptionCount { count, .. } => {
                out.push_str(",\"subscription_count\":");
                out.push_str(&count.to_string());
            }
        }
        out.push('}');
        out
    }
}

/// Appends `text` as a JSON string.
fn push_string(out: &mut String, text: &str) {
    match serde_json::to_string(text) {
        Ok(quoted) => out.push_str(&quoted),
        Err(_) => out.push_str("\"\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn parsed(event: &HookEvent) -> Value {
        serde_json::from_str(&event.to_json()).expect("valid JSON")
    }

    #[test]
    fn events_have_pushers_fields() {
        let added = HookEvent::MemberAdded {
            channel: "presence-room".into(),
            user: "a\"b\n".into(),
        };
        assert_eq!(
            parsed(&added),
            json!({"name":"member_added","channel":"presence-room","user_id":"a\"b\n"})
        );
        let vacated = HookEvent::ChannelVacated {
            channel: "lobby".into(),
        };
        assert_eq!(
            parsed(&vacated),
            json!({"name":"channel_vacated","channel":"lobby"})
        );
        let client = HookEvent::ClientEvent {
            channel: "private-x".into(),
            event: "client-typing".into(),
            data: "{\"a\":1}".into(),
            socket_id: "1.2".into(),
            user_id: None,
        };
        assert_eq!(
            parsed(&client),
            json!({"name":"client_event","channel":"private-x","event":"client-typing",
                   "data":"{\"a\":1}","socket_id":"1.2"})
        );
        let count = HookEvent::SubscriptionCount {
            channel: "c".into(),
            count: 3,
        };
        assert_eq!(parsed(&count)["subscription_count"], json!(3));
        let updated = HookEvent::MemberUpdated {
            channel: "c".into(),
            user: "u".into(),
            meta: Json::from_value(&json!({"s":"away"})),
        };
        assert_eq!(parsed(&updated)["meta"], json!({"s":"away"}));
    }
}
