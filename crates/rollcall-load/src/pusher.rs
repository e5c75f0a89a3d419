//! Pusher-shaped clients (`--pusher ID:KEY:SECRET`), as pusher-js behaves: connect to
//! `/app/KEY`, wait for `pusher:connection_established`, subscribe (to a presence channel
//! with the app's signature over the member's data, as an app's backend signs it, or to a
//! public channel), answer `pusher:ping`; and the REST API's signed `POST .../events`.

use rollcall::pusher::auth::sign;
use rollcall::pusher::rest::signed_query;
use rollcall::pusher::App;
use serde_json::{json, Value};

use crate::target::Target;

/// Members per presence channel: Pusher's own limit (and rollcall's default). Member k of a
/// presence crowd joins `CHANNEL-{k / 100}`: every channel hears each arrival, so a crowd in one
/// channel would cost N² messages where Pusher apps never have more than this many members.
pub const PRESENCE_GROUP: u64 = 100;

/// What the members of a crowd subscribe to once connected.
#[derive(Debug, Clone)]
pub struct Join {
    pub app: App,
    /// The channel (`presence-...` is joined as a member, in groups of [`PRESENCE_GROUP`]).
    pub channel: String,
    /// Member k is user `{prefix}-{first + k}`.
    pub user_prefix: String,
    pub first: u64,
}

impl Join {
    /// The request target of a Pusher connection, with `extra` query parameters.
    pub fn ws_target(&self, extra: &str) -> String {
        let path = format!("/app/{}", self.app.key);
        let query = ["protocol=7&client=rollcall-load&version=1", extra]
            .into_iter()
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join("&");
        format!("{path}?{query}")
    }

    /// The `pusher:subscribe` of member `k` on socket `socket_id`.
    pub fn subscribe(&self, k: usize, socket_id: &str) -> String {
        if !self.channel.starts_with("presence-") {
            return json!({"event": "pusher:subscribe", "data": {"channel": self.channel}})
                .to_string();
        }
        let member = self.first + k as u64;
        let user = format!("{}-{member}", self.user_prefix);
        let channel = format!("{}-{}", self.channel, member / PRESENCE_GROUP);
        let data = json!({"user_id": user, "user_info": {}}).to_string();
        let signature = sign(&self.app.secret, &format!("{socket_id}:{channel}:{data}"));
        json!({"event": "pusher:subscribe", "data": {
            "channel": channel,
            "auth": format!("{}:{signature}", self.app.key),
            "channel_data": data,
        }})
        .to_string()
    }
}

/// What a Pusher frame means to a client that waits for its subscription.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// `pusher:connection_established`, with the socket id.
    Established(String),
    /// `pusher_internal:subscription_succeeded`.
    Subscribed,
    /// `pusher:ping`: answer with [`PONG`].
    Ping,
    /// Anything else.
    Other,
}

/// The answer to a server's `pusher:ping`.
pub const PONG: &str = r#"{"event":"pusher:pong","data":{}}"#;

/// Reads a Pusher frame.
pub fn read(text: &str) -> Frame {
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return Frame::Other;
    };
    match value.get("event").and_then(Value::as_str) {
        Some("pusher:connection_established") => value
            .get("data")
            .and_then(Value::as_str)
            .and_then(|data| serde_json::from_str::<Value>(data).ok())
            .and_then(|data| Some(data.get("socket_id")?.as_str()?.to_owned()))
            .map_or(Frame::Other, Frame::Established),
        Some("pusher_internal:subscription_succeeded") => Frame::Subscribed,
        Some("pusher:ping") => Frame::Ping,
        _ => Frame::Other,
    }
}

/// A signed `POST /apps/{id}/events` of `event` with `data` (sent as a JSON string) to
/// `channel`, as the server SDKs make it.
pub fn trigger_request(
    target: &Target,
    app: &App,
    channel: &str,
    event: &str,
    data: &Value,
) -> Vec<u8> {
    let body = json!({"name": event, "channel": channel, "data": data.to_string()}).to_string();
    let path = format!("/apps/{}/events", app.id);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let query = signed_query(app, "POST", &path, &[], body.as_bytes(), now);
    target.http_request(
        "POST",
        &format!("{path}?{query}"),
        None,
        Some(body.as_bytes()),
    )
}

/// `(name, data)` of a named event, its data read from the JSON string it came in.
pub fn named_event(text: &str) -> Option<(String, Value)> {
    let value: Value = serde_json::from_str(text).ok()?;
    let name = value.get("event")?.as_str()?.to_owned();
    let data = serde_json::from_str(value.get("data")?.as_str()?).ok()?;
    Some((name, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(channel: &str) -> Join {
        Join {
            app: App::parse("1:key:secret").expect("app"),
            channel: channel.into(),
            user_prefix: "load".into(),
            first: 10,
        }
    }

    #[test]
    fn presence_subscriptions_are_signed_as_a_backend_signs_them() {
        let frame: Value =
            serde_json::from_str(&join("presence-load").subscribe(2, "1.2")).expect("JSON");
        assert_eq!(
            frame["data"]["channel"], "presence-load-0",
            "members 0..100 share a channel"
        );
        let later: Value =
            serde_json::from_str(&join("presence-load").subscribe(95, "1.2")).expect("JSON");
        assert_eq!(later["data"]["channel"], "presence-load-1");
        let data = frame["data"]["channel_data"]
            .as_str()
            .expect("channel_data");
        assert_eq!(data, r#"{"user_id":"load-12","user_info":{}}"#);
        let app = App::parse("1:key:secret").expect("app");
        let auth = frame["data"]["auth"].as_str().expect("auth");
        assert_eq!(
            rollcall::pusher::auth::verify_channel(
                &app,
                "1.2",
                "presence-load-0",
                Some(data),
                auth
            ),
            Ok(())
        );
        let public: Value =
            serde_json::from_str(&join("fanout").subscribe(0, "1.2")).expect("JSON");
        assert_eq!(
            public,
            json!({"event": "pusher:subscribe", "data": {"channel": "fanout"}})
        );
    }

    #[test]
    fn frames_are_read() {
        let established = r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"1.2\",\"activity_timeout\":30}"}"#;
        assert_eq!(read(established), Frame::Established("1.2".into()));
        assert_eq!(
            read(r#"{"event":"pusher_internal:subscription_succeeded","channel":"c","data":"{}"}"#),
            Frame::Subscribed
        );
        assert_eq!(read(r#"{"event":"pusher:ping","data":{}}"#), Frame::Ping);
        assert_eq!(read("nope"), Frame::Other);
        let event = r#"{"event":"load","channel":"fanout","data":"{\"seq\":3}"}"#;
        assert_eq!(named_event(event), Some(("load".into(), json!({"seq": 3}))));
    }
}
