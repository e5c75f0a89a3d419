//! Pusher Channels protocol 7 as a dialect: `/app/{key}` connections speak it, as
//! pusher-js 8, laravel-echo 2 and every Pusher client library do
//! (`../shared/pusher-protocol.md` §1-§3).
//!
//! Frames are `{"event":NAME,"channel":C,"data":...}`. What a client sends becomes a
//! neutral command: `pusher:subscribe` a [`Action::Subscribe`], `pusher:unsubscribe` an
//! [`Action::Unsubscribe`], `pusher:signin` an [`Action::Signin`], `pusher:ping` a ping, a
//! `client-` event an [`Action::ClientEvent`]; `pusher:pong` is only activity. Events go out
//! as Pusher's: `connection_established`, `subscription_succeeded` (with the member list on
//! presence channels), `member_added` and `member_removed`, `signin_success`, watchlist
//! events, `cache_miss`, `pusher:error` and `subscription_error`, named events. Where Pusher
//! nests a JSON document in a string (`data` of the internal events), it does here too.
//!
//! An app's channels are the engine's `APP#CHANNEL` (see [`crate::pusher`]): this module
//! strips the app's part on the way out.

use super::{Decoded, Frame};
use crate::http::upgrade::{check_handshake, Access};
use crate::http::{percent, Request, Response, Upgrade};
use crate::model::{
    push_json_str, Action, Command, CommandError, ErrorCode, Event, EventsMode, Json,
};
use crate::protocol::fields::Fields;
use crate::pusher::{split_internal, ChannelKind, PusherSettings};

/// Close code: the app key is unknown (pusher-js does not retry).
pub const APP_NOT_FOUND: u16 = 4001;
/// Close code: the client's protocol version is not 7.
pub const PROTOCOL_UNSUPPORTED: u16 = 4007;
/// Close code: the server is going away; pusher-js reconnects at once (4200-4299).
pub const GOING_AWAY: u16 = 4200;

/// The protocol version spoken.
const PROTOCOL: &str = "7";

/// The key of `/app/{key}` (a prefix before `/app/` is allowed, as behind a proxy path).
pub fn app_key(path: &str) -> Option<&str> {
    let (_, key) = path.rsplit_once("/app/")?;
    (!key.is_empty() && !key.contains('/')).then_some(key)
}

/// Checks the WebSocket handshake; an unknown key or an unsupported protocol version still
/// upgrades, then closes with the code pusher-js understands (an HTTP refusal would make it
/// retry forever).
pub fn upgrade(
    request: &Request,
    access: Access<'_>,
    settings: &PusherSettings,
) -> Result<Upgrade, Response> {
    let accept_key = check_handshake(request, access.allowed_origins)?;
    let key = app_key(&request.path).unwrap_or_default();
    let key = percent::decode_path(key).unwrap_or_default();
    let app = settings.app_by_key(&key).map(|(index, _)| index);
    let close_at_once = match (app, protocol(&request.query)) {
        (None, _) => Some((APP_NOT_FOUND, format!("app key {key:?} not found"))),
        (_, Some(version)) if version != PROTOCOL => Some((
            PROTOCOL_UNSUPPORTED,
            format!("protocol {version} is not supported; this server speaks 7"),
        )),
        _ => None,
    };
    Ok(Upgrade {
        user: None,
        channels: Vec::new(),
        events: EventsMode::All,
        watch: Vec::new(),
        admin: false,
        claims: None,
        meta: None,
        default_channel: false,
        accept_key,
        pusher_app: app,
        close_at_once,
    })
}

/// The `protocol` query parameter, if given.
fn protocol(query: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == "protocol")
        .map(|(_, value)| percent::decode_query_value(value).unwrap_or_default())
}

/// Decodes one frame of a Pusher client.
pub fn decode(frame: Frame<'_>) -> Decoded {
    let Frame::Text(text) = frame else {
        return refused(
            ErrorCode::BadRequest,
            "binary frames are not part of the protocol",
        );
    };
    match decode_text(text) {
        Ok(Some(action)) => Decoded::Command(Command {
            reference: None,
            action,
        }),
        Ok(None) => Decoded::Activity,
        Err(error) => Decoded::Refused(error),
    }
}

fn decode_text(text: &str) -> Result<Option<Action>, CommandError> {
    let bad = |message: &str| CommandError::new(ErrorCode::BadRequest, message);
    let fields = Fields::parse(text).map_err(|_| bad("a message is a JSON object"))?;
    let event = string_field(&fields, "event").ok_or_else(|| bad("\"event\" must be a string"))?;
    let data = fields.get("data").map(|raw| raw.get());
    Ok(Some(match event.as_str() {
        "pusher:ping" => Action::Ping { id: Json::null() },
        "pusher:pong" => return Ok(None),
        "pusher:subscribe" => {
            let text = data_object(data)?;
            let data = Fields::parse(&text).map_err(|_| bad("\"data\" must be an object"))?;
            Action::Subscribe {
                channel: channel_of(&data)?,
                auth: string_field(&data, "auth"),
                channel_data: string_field(&data, "channel_data"),
            }
        }
        "pusher:unsubscribe" => {
            let text = data_object(data)?;
            let data = Fields::parse(&text).map_err(|_| bad("\"data\" must be an object"))?;
            Action::Unsubscribe {
                channel: channel_of(&data)?,
            }
        }
        name if name.starts_with("client-") => Action::ClientEvent {
            channel: string_field(&fields, "channel")
                .ok_or_else(|| bad("a client event needs a \"channel\""))?,
            event: name.to_owned(),
            data: match data {
                Some(raw) => {
                    Json::parse(raw).ok_or_else(|| bad("\"data\" is nested too deeply"))?
                }
                None => Json::null(),
            },
        },
        "pusher:signin" => {
            let text = data_object(data)?;
            let data = Fields::parse(&text).map_err(|_| bad("\"data\" must be an object"))?;
            Action::Signin {
                auth: string_field(&data, "auth").unwrap_or_default(),
                user_data: string_field(&data, "user_data")
                    .ok_or_else(|| bad("\"data.user_data\" must be a string"))?,
            }
        }
        other => {
            return Err(CommandError::new(
                ErrorCode::UnknownType,
                format!("unknown event {other:?}"),
            ))
        }
    }))
}

/// `data` as an object's text: pusher-js sends an object, some clients a JSON string
/// holding one.
fn data_object(raw: Option<&str>) -> Result<String, CommandError> {
    let bad = || CommandError::new(ErrorCode::BadRequest, "\"data\" must be an object");
    match raw {
        Some(raw) if raw.starts_with('"') => serde_json::from_str::<String>(raw).map_err(|_| bad()),
        Some(raw) => Ok(raw.to_owned()),
        None => Err(bad()),
    }
}

fn channel_of(data: &Fields<'_>) -> Result<String, CommandError> {
    string_field(data, "channel").ok_or_else(|| {
        CommandError::new(ErrorCode::BadRequest, "\"data.channel\" must be a string")
    })
}

/// A field that is a JSON string, decoded.
fn string_field(fields: &Fields<'_>, name: &str) -> Option<String> {
    let raw = fields.get(name)?.get();
    raw.starts_with('"')
        .then(|| serde_json::from_str(raw).ok())
        .flatten()
}

fn refused(code: ErrorCode, message: &str) -> Decoded {
    Decoded::Refused(CommandError::new(code, message))
}

/// The frame that carries `event` to a Pusher client, or `None` when Pusher has no such
/// event (a member's meta update, a `count`).
pub fn encode(event: &Event<'_>) -> Option<String> {
    Some(match *event {
        Event::Welcome {
            conn, interval_ms, ..
        } => {
            let data = format!(
                r#"{{"socket_id":"{conn}","activity_timeout":{}}}"#,
                interval_ms.div_ceil(1000).max(1)
            );
            frame("pusher:connection_established", None, &json_string(&data))
        }
        Event::State {
            channel, members, ..
        } => {
            let (_, wire) = split_internal(channel)?;
            let data = if ChannelKind::of(wire) == ChannelKind::Presence {
                presence_data(members())
            } else {
                "{}".to_owned()
            };
            frame(
                "pusher_internal:subscription_succeeded",
                Some(wire),
                &json_string(&data),
            )
        }
        Event::Subscribed { channel } => {
            let (_, wire) = split_internal(channel)?;
            frame(
                "pusher_internal:subscription_succeeded",
                Some(wire),
                &json_string("{}"),
            )
        }
        Event::Join {
            channel,
            user,
            meta,
            ..
        } => {
            let (_, wire) = split_internal(channel)?;
            let mut data = String::from(r#"{"user_id":"#);
            push_json_str(&mut data, user);
            data.push_str(r#","user_info":"#);
            data.push_str(meta.as_str());
            data.push('}');
            frame(
                "pusher_internal:member_added",
                Some(wire),
                &json_string(&data),
            )
        }
        Event::Leave { channel, user, .. } => {
            let (_, wire) = split_internal(channel)?;
            let mut data = String::from(r#"{"user_id":"#);
            push_json_str(&mut data, user);
            data.push('}');
            frame(
                "pusher_internal:member_removed",
                Some(wire),
                &json_string(&data),
            )
        }
        Event::Named {
            channel,
            event,
            data,
            user_id,
        } => {
            let (_, wire) = split_internal(channel)?;
            let mut out = frame(event, Some(wire), data);
            if let Some(user) = user_id {
                out.pop();
                out.push_str(r#","user_id":"#);
                push_json_str(&mut out, user);
                out.push('}');
            }
            out
        }
        Event::CacheMiss { channel } => {
            let (_, wire) = split_internal(channel)?;
            let mut out = String::from(r#"{"event":"pusher:cache_miss","channel":"#);
            push_json_str(&mut out, wire);
            out.push('}');
            out
        }
        Event::Pong { .. } => r#"{"event":"pusher:pong","data":{}}"#.to_owned(),
        Event::Ping => r#"{"event":"pusher:ping","data":{}}"#.to_owned(),
        Event::Error {
            code,
            message,
            channel: Some(channel),
            ..
        } => subscription_error(code, message, channel),
        Event::Error { code, message, .. } => {
            let number = match code {
                ErrorCode::RateLimited => "4301",
                _ => "null",
            };
            pusher_error(number, message)
        }
        Event::Coded { code, reason } => pusher_error(&code.to_string(), reason),
        Event::SignedIn { user_data } => {
            let mut data = String::from(r#"{"user_data":"#);
            push_json_str(&mut data, user_data);
            data.push('}');
            frame("pusher:signin_success", None, &data)
        }
        Event::Watchlist { online, users } => {
            let name = if online { "online" } else { "offline" };
            let mut data = format!(r#"{{"events":[{{"name":"{name}","user_ids":["#);
            for (index, user) in users.iter().enumerate() {
                if index > 0 {
                    data.push(',');
                }
                push_json_str(&mut data, user);
            }
            data.push_str("]}]}");
            frame(
                "pusher_internal:watchlist_events",
                None,
                &json_string(&data),
            )
        }
        Event::Update { .. }
        | Event::Diff { .. }
        | Event::Count { .. }
        | Event::Message { .. }
        | Event::Refreshed { .. }
        | Event::UserStatuses { .. }
        | Event::UserOnline { .. }
        | Event::UserOffline { .. } => return None,
    })
}

/// `{"event":E,"channel":C,"data":DATA}` (`data` already JSON text).
fn frame(event: &str, channel: Option<&str>, data: &str) -> String {
    let mut out = String::with_capacity(48 + event.len() + data.len());
    out.push_str(r#"{"event":"#);
    push_json_str(&mut out, event);
    if let Some(channel) = channel {
        out.push_str(r#","channel":"#);
        push_json_str(&mut out, channel);
    }
    out.push_str(r#","data":"#);
    out.push_str(data);
    out.push('}');
    out
}

/// A JSON document as the JSON string that carries it (Pusher's internal events).
fn json_string(document: &str) -> String {
    let mut out = String::with_capacity(document.len() + 16);
    push_json_str(&mut out, document);
    out
}

/// `{"presence":{"ids":[...],"hash":{ID:INFO,...},"count":N}}`
fn presence_data<'a>(members: impl Iterator<Item = crate::model::MemberView<'a>>) -> String {
    let mut ids = String::from("[");
    let mut hash = String::from("{");
    let mut count = 0;
    for member in members {
        if count > 0 {
            ids.push(',');
            hash.push(',');
        }
        push_json_str(&mut ids, member.user);
        push_json_str(&mut hash, member.user);
        hash.push(':');
        hash.push_str(member.meta.as_str());
        count += 1;
    }
    format!(r#"{{"presence":{{"ids":{ids}],"hash":{hash}}},"count":{count}}}}}"#)
}

/// `pusher:subscription_error`, routed to the channel (Laravel Echo's `.error()` hears it).
fn subscription_error(code: ErrorCode, message: &str, channel: &str) -> String {
    let (kind, status) = match code {
        ErrorCode::Forbidden => ("AuthError", 401),
        ErrorCode::TooLarge => ("LimitReached", 403),
        _ => ("InvalidRequest", 400),
    };
    let mut data = format!(r#"{{"type":"{kind}","error":"#);
    push_json_str(&mut data, message);
    data.push_str(&format!(r#","status":{status}}}"#));
    frame("pusher:subscription_error", Some(channel), &data)
}

/// `pusher:error` with `code` (a number, or `null`).
fn pusher_error(code: &str, message: &str) -> String {
    let mut data = format!(r#"{{"code":{code},"message":"#);
    push_json_str(&mut data, message);
    data.push('}');
    frame("pusher:error", None, &data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LeaveReason, MemberView, Meta};
    use serde_json::{json, Value};

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    /// A nested JSON document, as pusher-js parses `data` of internal events.
    fn nested(value: &Value) -> Value {
        parse(
            value
                .as_str()
                .unwrap_or_else(|| panic!("{value} is no string")),
        )
    }

    fn command(text: &str) -> Action {
        match decode(Frame::Text(text)) {
            Decoded::Command(command) => command.action,
            other => panic!("{text}: {other:?}"),
        }
    }

    fn refusal(text: &str) -> CommandError {
        match decode(Frame::Text(text)) {
            Decoded::Refused(error) => error,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn app_keys_come_from_the_path() {
        assert_eq!(app_key("/app/abc"), Some("abc"));
        assert_eq!(app_key("/ws-prefix/app/abc"), Some("abc"));
        assert_eq!(app_key("/app/"), None);
        assert_eq!(app_key("/app/a/b"), None);
        assert_eq!(app_key("/apps/1/events"), None);
    }

    #[test]
    fn client_frames_become_commands() {
        let subscribe = r#"{"event":"pusher:subscribe","data":{"channel":"presence-r","auth":"k:s","channel_data":"{\"user_id\":1}"}}"#;
        assert_eq!(
            command(subscribe),
            Action::Subscribe {
                channel: "presence-r".into(),
                auth: Some("k:s".into()),
                channel_data: Some(r#"{"user_id":1}"#.into()),
            }
        );
        let as_string = r#"{"event":"pusher:subscribe","data":"{\"channel\":\"c\"}"}"#;
        assert!(
            matches!(command(as_string), Action::Subscribe { channel, auth: None, .. } if channel == "c")
        );
        assert_eq!(
            command(r#"{"event":"pusher:unsubscribe","data":{"channel":"c"}}"#),
            Action::Unsubscribe {
                channel: "c".into()
            }
        );
        assert!(matches!(
            command(r#"{"event":"pusher:ping","data":{}}"#),
            Action::Ping { .. }
        ));
        assert!(matches!(
            decode(Frame::Text(r#"{"event":"pusher:pong","data":{}}"#)),
            Decoded::Activity
        ));
        let whisper = r#"{"event":"client-typing","channel":"private-c","data":{"n": 1}}"#;
        assert_eq!(
            command(whisper),
            Action::ClientEvent {
                channel: "private-c".into(),
                event: "client-typing".into(),
                data: Json::parse(r#"{"n":1}"#).expect("json"),
            }
        );
    }

    #[test]
    fn bad_frames_are_refused_with_a_reason() {
        for (text, code) in [
            ("not json", ErrorCode::BadRequest),
            ("[1]", ErrorCode::BadRequest),
            (r#"{"event":1}"#, ErrorCode::BadRequest),
            (r#"{"event":"pusher:subscribe"}"#, ErrorCode::BadRequest),
            (
                r#"{"event":"pusher:subscribe","data":{"channel":7}}"#,
                ErrorCode::BadRequest,
            ),
            (r#"{"event":"client-x","data":1}"#, ErrorCode::BadRequest),
            (r#"{"event":"nope","data":{}}"#, ErrorCode::UnknownType),
        ] {
            assert_eq!(refusal(text).code, code, "{text}");
        }
        assert!(matches!(decode(Frame::Binary(b"x")), Decoded::Refused(_)));
    }

    #[test]
    fn events_are_spelled_as_pusher_js_reads_them() {
        let welcome = parse(
            &encode(&Event::Welcome {
                conn: "123.456",
                user: "",
                interval_ms: 30_000,
                timeout_ms: 60_000,
            })
            .expect("carried"),
        );
        assert_eq!(welcome["event"], "pusher:connection_established");
        assert_eq!(
            nested(&welcome["data"]),
            json!({"socket_id": "123.456", "activity_timeout": 30})
        );

        let info = Meta::parse(r#"{"name":"Ann \"A\""}"#).expect("meta");
        let members = || -> crate::model::event::Members<'_> {
            Box::new(std::iter::once(MemberView {
                user: "7",
                conns: 2,
                meta: &info,
            }))
        };
        let state = parse(
            &encode(&Event::State {
                channel: "1#presence-room",
                seq: 3,
                members: &members,
                reference: None,
            })
            .expect("carried"),
        );
        assert_eq!(state["event"], "pusher_internal:subscription_succeeded");
        assert_eq!(
            state["channel"], "presence-room",
            "the app's part is stripped"
        );
        assert_eq!(
            nested(&state["data"]),
            json!({"presence": {"ids": ["7"], "hash": {"7": {"name": "Ann \"A\""}}, "count": 1}})
        );

        let added = parse(
            &encode(&Event::Join {
                channel: "1#presence-room",
                user: "7",
                meta: &info,
                seq: 4,
            })
            .expect("carried"),
        );
        assert_eq!(
            (&added["event"], nested(&added["data"])),
            (
                &json!("pusher_internal:member_added"),
                json!({"user_id": "7", "user_info": {"name": "Ann \"A\""}})
            )
        );
        let removed = parse(
            &encode(&Event::Leave {
                channel: "1#presence-room",
                user: "7",
                reason: LeaveReason::Closed,
                seq: 5,
            })
            .expect("carried"),
        );
        assert_eq!(nested(&removed["data"]), json!({"user_id": "7"}));

        let named = parse(
            &encode(&Event::Named {
                channel: "1#presence-room",
                event: "client-typing",
                data: r#"{"n":1}"#,
                user_id: Some("7"),
            })
            .expect("carried"),
        );
        assert_eq!(
            named,
            json!({"event": "client-typing", "channel": "presence-room", "data": {"n": 1}, "user_id": "7"})
        );

        let error = parse(
            &encode(&Event::Error {
                code: ErrorCode::Forbidden,
                message: "invalid signature",
                reference: None,
                channel: Some("private-x"),
            })
            .expect("carried"),
        );
        assert_eq!(
            error,
            json!({"event": "pusher:subscription_error", "channel": "private-x",
                   "data": {"type": "AuthError", "error": "invalid signature", "status": 401}})
        );
        let closing = parse(
            &encode(&Event::Coded {
                code: 4009,
                reason: "terminated",
            })
            .expect("carried"),
        );
        assert_eq!(
            closing["data"],
            json!({"code": 4009, "message": "terminated"})
        );
        assert!(encode(&Event::Update {
            channel: "1#presence-room",
            user: "7",
            meta: &info,
            seq: 6
        })
        .is_none());
    }
}
