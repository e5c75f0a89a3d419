//! Fuzzes the command decoder, `rollcall::protocol::decode`, with any UTF-8 text and any
//! meta size limit, and splices what it returns into the events the server would send.
//!
//! Input: one selector byte for the meta limit, then the text (inputs that are not UTF-8
//! are skipped). Checked besides "never panics": the decoder's invariant (names valid, meta
//! an object within the limit, every kept JSON value valid), that it is deterministic, and
//! that every event built from its output is one valid JSON object carrying the values; and
//! that the canonical form of free-form JSON (`protocol::canonical`) is a fixed point.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rollcall::names;
use rollcall::protocol::{decode, event};
use rollcall::model::{Action, ErrorCode, Json, LeaveReason, Meta};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let max_meta = match selector % 4 {
        0 => usize::from(selector / 4),
        1 => 1024,
        2 => 16 << 10,
        _ => usize::MAX,
    };
    // The canonical form of any JSON text is a fixed point, and agrees with serde_json on
    // whether the text is JSON (but for nesting deeper than the canonical form's bound).
    if let Some(canonical) = rollcall::model::canonical::canonical(text) {
        assert!(serde_json::from_str::<Value>(text).is_ok());
        assert_eq!(
            rollcall::model::canonical::canonical(&canonical).as_deref(),
            Some(canonical.as_str()),
            "canonical form is a fixed point"
        );
    }
    let result = decode(text, max_meta);
    assert_eq!(result, decode(text, max_meta), "decode is deterministic");
    match result {
        Ok(command) => {
            if let Some(reference) = &command.reference {
                assert_ne!(parse(reference), Value::Null, "a null ref is no ref");
            }
            check_action(&command.action, max_meta);
            if let Action::Ping { id } = &command.action {
                let pong = object(&event::pong(id, command.reference.as_ref()));
                assert_eq!(pong["id"], parse(id));
            }
        }
        Err(error) => {
            assert!(
                matches!(
                    error.code,
                    ErrorCode::BadRequest | ErrorCode::UnknownType | ErrorCode::TooLarge
                ),
                "decode answers {:?}",
                error.code
            );
            let reply = object(&event::error(
                error.code,
                &error.message,
                error.reference.as_ref(),
            ));
            assert_eq!(reply["message"], error.message.as_str());
            if let Some(reference) = &error.reference {
                assert_eq!(reply["ref"], parse(reference));
            }
        }
    }
});

fn check_action(action: &Action, max_meta: usize) {
    match action {
        Action::Join { channel, meta, .. } => {
            valid_channel(channel);
            if let Some(meta) = meta {
                check_meta(channel, meta, max_meta);
            }
        }
        Action::Update { channel, meta } => {
            valid_channel(channel);
            check_meta(channel, meta, max_meta);
        }
        Action::Leave { channel } | Action::Who { channel } => valid_channel(channel),
        Action::Publish { channel, data } => {
            valid_channel(channel);
            let message = object(&event::message(channel, Some("u"), data));
            assert_eq!(message["data"], parse(data));
            assert_eq!(message["channel"], channel.as_str());
        }
        Action::Watch { channel } | Action::Unwatch { channel } => {
            if channel != "*" {
                valid_channel(channel);
            }
        }
        Action::Ping { id } => {
            parse(id);
        }
        // Any string: the server verifies it as a token, the decoder only carries it.
        Action::Refresh { .. } => {}
        Action::WatchUsers { users } | Action::UnwatchUsers { users } => {
            for (index, user) in users.iter().enumerate() {
                assert!(rollcall::names::validate_user(user).is_ok(), "{user:?}");
                assert!(!users[..index].contains(user), "{user:?} twice");
            }
        }
        Action::Subscribe { .. }
        | Action::Unsubscribe { .. }
        | Action::ClientEvent { .. }
        | Action::Signin { .. } => {
            panic!("v1 decoded a Pusher command: {action:?}")
        }
    }
}

fn valid_channel(name: &str) {
    assert_eq!(
        names::validate_channel(name),
        Ok(()),
        "invalid channel {name:?} accepted"
    );
}

fn check_meta(channel: &str, meta: &Meta, max_meta: usize) {
    assert!(
        meta.as_str().len() <= max_meta,
        "meta of {} bytes over the limit {max_meta}",
        meta.as_str().len()
    );
    let value: Value = serde_json::from_str(meta.as_str()).expect("meta is valid JSON");
    assert!(
        value.is_object(),
        "meta is not an object: {}",
        meta.as_str()
    );
    for encoded in [
        event::join(channel, "u", meta, 1),
        event::update(channel, "u", meta, 2),
    ] {
        let change = object(&encoded);
        assert_eq!(change["meta"], value);
        assert_eq!(change["channel"], channel);
    }
    let leave = object(&event::leave(channel, "u", LeaveReason::Closed, 3));
    assert_eq!(leave["channel"], channel);
}

fn parse(json: &Json) -> Value {
    serde_json::from_str(json.as_str())
        .unwrap_or_else(|error| panic!("kept JSON {:?} does not parse: {error}", json.as_str()))
}

fn object(text: &str) -> Value {
    let value: Value = serde_json::from_str(text)
        .unwrap_or_else(|error| panic!("event {text:?} is not JSON: {error}"));
    assert!(value.is_object(), "event {text:?} is not an object");
    value
}
