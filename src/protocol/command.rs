//! Decoding of client commands (client to server messages).
//!
//! Invariant: every input, however malformed, yields either a [`Command`] whose names are
//! valid and whose `meta` is an object within the size limit, or a [`CommandError`] with the
//! command's `ref` (when one could be read) for the reply. Nothing here panics on input.

use std::borrow::Cow;

use serde_json::error::Category;
use serde_json::value::RawValue;

use super::fields::Fields;
use crate::model::{Action, Command, CommandError, ErrorCode, EventsMode, Json, Meta};
use crate::names;

/// The users one connection may watch (`watch_users`), as Pusher's watchlists.
pub const MAX_WATCHED_USERS: usize = 100;

/// Decodes one text message. `max_meta_size` bounds the serialized `meta` object.
pub fn decode(text: &str, max_meta_size: usize) -> Result<Command, CommandError> {
    // Fields stay as text: free-form values are canonicalized from it, numbers as sent.
    let fields = Fields::parse(text).map_err(|error| match error.classify() {
        Category::Data => bad_request("a command must be a JSON object"),
        _ => CommandError::new(ErrorCode::BadRequest, format!("invalid JSON: {error}")),
    })?;
    let reference = fields
        .get("ref")
        .filter(|r| r.get() != "null")
        .map(free_form)
        .transpose()?;
    match decode_action(&fields, max_meta_size) {
        Ok(action) => Ok(Command { reference, action }),
        Err(error) => Err(CommandError { reference, ..error }),
    }
}

fn decode_action(fields: &Fields<'_>, max_meta_size: usize) -> Result<Action, CommandError> {
    let kind = match fields.get("type") {
        Some(kind) => string(kind).ok_or_else(|| bad_request("\"type\" must be a string"))?,
        None => return Err(bad_request("missing \"type\"")),
    };
    let action = match &*kind {
        "join" => Action::Join {
            channel: channel(fields)?,
            meta: optional_meta(fields, max_meta_size)?,
            events: events(fields)?,
        },
        "leave" => Action::Leave {
            channel: channel(fields)?,
        },
        "update" => Action::Update {
            channel: channel(fields)?,
            meta: optional_meta(fields, max_meta_size)?
                .ok_or_else(|| bad_request("\"update\" needs a \"meta\" object"))?,
        },
        "who" => Action::Who {
            channel: channel(fields)?,
        },
        "publish" => Action::Publish {
            channel: channel(fields)?,
            data: free_form(
                fields
                    .get("data")
                    .ok_or_else(|| bad_request("\"publish\" needs \"data\""))?,
            )?,
        },
        "watch" => Action::Watch {
            channel: watch_target(fields)?,
        },
        "unwatch" => Action::Unwatch {
            channel: watch_target(fields)?,
        },
        "watch_users" => Action::WatchUsers {
            users: users(fields)?,
        },
        "unwatch_users" => Action::UnwatchUsers {
            users: users(fields)?,
        },
        "refresh" => match fields.get("token").and_then(string) {
            Some(token) => Action::Refresh {
                token: token.into_owned(),
            },
            None => return Err(bad_request("\"refresh\" needs a \"token\" string")),
        },
        "ping" => Action::Ping {
            id: match fields.get("id") {
                Some(id) => free_form(id)?,
                None => Json::null(),
            },
        },
        other => {
            return Err(CommandError::new(
                ErrorCode::UnknownType,
                format!("unknown command type {other:?}"),
            ))
        }
    };
    Ok(action)
}

fn bad_request(message: &str) -> CommandError {
    CommandError::new(ErrorCode::BadRequest, message)
}

/// The decoded text of a JSON string value (borrowed when it has no escapes); `None` for
/// any other value.
fn string(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get().strip_prefix('"')?.strip_suffix('"')?;
    if !text.contains('\\') {
        return Some(Cow::Borrowed(text));
    }
    serde_json::from_str(raw.get()).ok().map(Cow::Owned)
}

/// A free-form value in its canonical form (§2: numbers as sent).
fn free_form(raw: &RawValue) -> Result<Json, CommandError> {
    Json::from_raw(raw).ok_or_else(|| bad_request("a value is nested too deeply"))
}

fn channel(fields: &Fields<'_>) -> Result<String, CommandError> {
    let Some(channel) = fields.get("channel").and_then(string) else {
        return Err(bad_request("\"channel\" must be a string"));
    };
    names::validate_channel(&channel)
        .map_err(|error| CommandError::new(ErrorCode::BadRequest, format!("channel {error}")))?;
    Ok(channel.into_owned())
}

/// A channel name or `*` (every channel).
fn watch_target(fields: &Fields<'_>) -> Result<String, CommandError> {
    match fields.get("channel").and_then(string) {
        Some(all) if all == crate::http::upgrade::WATCH_ALL => Ok(all.into_owned()),
        _ => channel(fields),
    }
}

/// The `users` of `watch_users` and `unwatch_users`: a list of at most [`MAX_WATCHED_USERS`]
/// valid user ids, duplicates dropped (first one kept).
fn users(fields: &Fields<'_>) -> Result<Vec<String>, CommandError> {
    let list = fields
        .get("users")
        .and_then(|raw| serde_json::from_str::<Vec<&RawValue>>(raw.get()).ok())
        .ok_or_else(|| bad_request("\"users\" must be a list of user ids"))?;
    if list.len() > MAX_WATCHED_USERS {
        return Err(CommandError::new(
            ErrorCode::TooLarge,
            format!("a connection watches at most {MAX_WATCHED_USERS} users"),
        ));
    }
    let mut users: Vec<String> = Vec::with_capacity(list.len());
    for raw in list {
        let user = string(raw).ok_or_else(|| bad_request("each user id must be a string"))?;
        names::validate_user(&user)
            .map_err(|error| CommandError::new(ErrorCode::BadRequest, format!("user {error}")))?;
        if !users.iter().any(|seen| *seen == *user) {
            users.push(user.into_owned());
        }
    }
    Ok(users)
}

fn optional_meta(fields: &Fields<'_>, max_meta_size: usize) -> Result<Option<Meta>, CommandError> {
    let Some(meta) = fields.get("meta") else {
        return Ok(None);
    };
    if !meta.get().starts_with('{') {
        return Err(bad_request("\"meta\" must be a JSON object"));
    }
    let json = free_form(meta)?;
    if json.as_str().len() > max_meta_size {
        return Err(CommandError::new(
            ErrorCode::TooLarge,
            format!(
                "meta is {} bytes serialized, the limit is {max_meta_size}",
                json.as_str().len()
            ),
        ));
    }
    Ok(Some(Meta::from_json(json)))
}

fn events(fields: &Fields<'_>) -> Result<Option<EventsMode>, CommandError> {
    let Some(mode) = fields.get("events") else {
        return Ok(None);
    };
    string(mode)
        .and_then(|mode| EventsMode::parse(&mode))
        .map(Some)
        .ok_or_else(|| bad_request("\"events\" must be \"all\", \"diff\", \"count\" or \"none\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 64;

    fn ok(text: &str) -> Command {
        decode(text, LIMIT).expect(text)
    }

    fn err(text: &str) -> CommandError {
        decode(text, LIMIT).expect_err(text)
    }

    #[test]
    fn join_with_and_without_options() {
        assert_eq!(
            ok(r#"{"type":"join","channel":"c1"}"#).action,
            Action::Join {
                channel: "c1".into(),
                meta: None,
                events: None
            }
        );
        let command = ok(
            r#"{"type":"join","channel":"c1","meta":{"b": 2, "a":[1]},"events":"count","ref":7}"#,
        );
        let Action::Join {
            meta: Some(meta),
            events,
            ..
        } = command.action
        else {
            panic!("not a join with meta: {command:?}");
        };
        assert_eq!(meta.as_str(), r#"{"a":[1],"b":2}"#);
        assert_eq!(events, Some(EventsMode::Count));
        assert_eq!(
            command.reference.map(|r| r.as_str().to_owned()),
            Some("7".into())
        );
    }

    #[test]
    fn every_other_command() {
        assert_eq!(
            ok(r#"{"type":"leave","channel":"c"}"#).action,
            Action::Leave {
                channel: "c".into()
            }
        );
        assert_eq!(
            ok(r#"{"type":"who","channel":"c"}"#).action,
            Action::Who {
                channel: "c".into()
            }
        );
        let Action::Update { meta, .. } =
            ok(r#"{"type":"update","channel":"c","meta":{"s":"away"}}"#).action
        else {
            panic!("not an update");
        };
        assert_eq!(meta.as_str(), r#"{"s":"away"}"#);
        let Action::Publish { data, .. } =
            ok(r#"{"type":"publish","channel":"c","data":[1, "x"]}"#).action
        else {
            panic!("not a publish");
        };
        assert_eq!(data.as_str(), r#"[1,"x"]"#);
        let Action::Ping { id } = ok(r#"{"type":"ping","id":{"n":1}}"#).action else {
            panic!("not a ping");
        };
        assert_eq!(id.as_str(), r#"{"n":1}"#);
        assert_eq!(
            ok(r#"{"type":"watch","channel":"*"}"#).action,
            Action::Watch {
                channel: "*".into()
            }
        );
        assert_eq!(
            ok(r#"{"type":"unwatch","channel":"c"}"#).action,
            Action::Unwatch {
                channel: "c".into()
            }
        );
        assert_eq!(
            err(r#"{"type":"watch","channel":"**"}"#).code,
            ErrorCode::BadRequest
        );
        let Action::Ping { id } = ok(r#"{"type":"ping"}"#).action else {
            panic!("not a ping")
        };
        assert_eq!(id.as_str(), "null");
    }

    #[test]
    fn watch_users_checks_the_list() {
        assert_eq!(
            ok(r#"{"type":"watch_users","users":["a","b c","a"]}"#).action,
            Action::WatchUsers {
                users: vec!["a".into(), "b c".into()]
            }
        );
        assert_eq!(
            ok(r#"{"type":"unwatch_users","users":[]}"#).action,
            Action::UnwatchUsers { users: vec![] }
        );
        for bad in [
            r#"{"type":"watch_users"}"#,
            r#"{"type":"watch_users","users":"a"}"#,
            r#"{"type":"watch_users","users":{"a":1}}"#,
            r#"{"type":"watch_users","users":[1]}"#,
            r#"{"type":"watch_users","users":[""]}"#,
            r#"{"type":"unwatch_users","users":["a\u0000"]}"#,
        ] {
            assert_eq!(err(bad).code, ErrorCode::BadRequest, "{bad}");
        }
        let many: Vec<String> = (0..=MAX_WATCHED_USERS).map(|i| format!("u{i}")).collect();
        let text = serde_json::json!({"type": "watch_users", "users": many, "ref": 1});
        let error = err(&text.to_string());
        assert_eq!(error.code, ErrorCode::TooLarge);
        assert!(error.reference.is_some());
    }

    #[test]
    fn empty_meta_is_stored_without_allocation() {
        let Action::Update { meta, .. } = ok(r#"{"type":"update","channel":"c","meta":{}}"#).action
        else {
            panic!("not an update");
        };
        assert_eq!(meta, Meta::empty());
    }

    #[test]
    fn malformed_input_is_bad_request() {
        for text in [
            "not json",
            "",
            "[1,2]",
            "\"join\"",
            r#"{"channel":"c"}"#,
            r#"{"type":5}"#,
            r#"{"type":"join"}"#,
            r#"{"type":"join","channel":7}"#,
            r#"{"type":"join","channel":"a b"}"#,
            r#"{"type":"join","channel":""}"#,
            r#"{"type":"join","channel":"c","meta":[1]}"#,
            r#"{"type":"join","channel":"c","events":"some"}"#,
            r#"{"type":"update","channel":"c"}"#,
            r#"{"type":"publish","channel":"c"}"#,
        ] {
            assert_eq!(err(text).code, ErrorCode::BadRequest, "{text}");
        }
    }

    #[test]
    fn unknown_type_and_too_large_meta() {
        let error = err(r#"{"type":"dance","ref":"r1"}"#);
        assert_eq!(error.code, ErrorCode::UnknownType);
        assert_eq!(
            error.reference.map(|r| r.as_str().to_owned()),
            Some("\"r1\"".into())
        );
        let big = format!(
            r#"{{"type":"join","channel":"c","meta":{{"k":"{}"}}}}"#,
            "x".repeat(LIMIT)
        );
        let error = err(&big);
        assert_eq!(error.code, ErrorCode::TooLarge);
        assert!(error.message.contains("limit is 64"), "{}", error.message);
    }

    #[test]
    fn errors_carry_the_ref_when_readable() {
        let error = err(r#"{"type":"who","ref":{"id":3}}"#);
        assert_eq!(
            error.reference.map(|r| r.as_str().to_owned()),
            Some(r#"{"id":3}"#.into())
        );
        assert_eq!(err("{bad").reference, None);
        assert_eq!(err(r#"{"type":"who","ref":null}"#).reference, None);
    }

    #[test]
    fn deeply_nested_input_is_an_error_not_a_crash() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(err(&deep).code, ErrorCode::BadRequest);
    }
}
