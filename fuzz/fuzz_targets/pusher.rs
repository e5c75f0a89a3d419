//! Fuzzes the Pusher input paths: the dialect's frame decoder with any text, and the REST
//! API's signature check and body readers with any request.
//!
//! Input: one selector byte, then the text (inputs that are not UTF-8 are skipped). Even
//! selectors decode a client frame: besides "never panics", what it decodes is deterministic
//! and the frames the server would send back (an error, a relayed client event) are valid
//! JSON. Odd selectors split the text at the first two newlines into a query, a path and a
//! body and check a REST request against a fixed app: a forged request is never accepted
//! (the fuzzer cannot find an HMAC), and the body readers either refuse or give events whose
//! data is a valid JSON string and whose channels are valid names.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rollcall::dialect::{Decoded, Dialect, Frame};
use rollcall::model::{Action, Event};
use rollcall::pusher::rest::{self, Signed};
use rollcall::pusher::{channel, App};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if selector % 2 == 0 {
        frame(text);
    } else {
        request(text);
    }
});

fn frame(text: &str) {
    let decoded = Dialect::Pusher.decode(Frame::Text(text), 1024);
    let again = Dialect::Pusher.decode(Frame::Text(text), 1024);
    assert_eq!(format!("{decoded:?}"), format!("{again:?}"), "deterministic");
    match decoded {
        Decoded::Refused(error) => {
            let event = Event::Error {
                code: error.code,
                message: &error.message,
                reference: None,
                channel: error.channel.as_deref(),
            };
            object(&Dialect::Pusher.encode(&event).expect("errors are carried"));
        }
        Decoded::Command(command) => {
            if let Action::ClientEvent {
                channel,
                event,
                data,
            } = command.action
            {
                let internal = format!("1#{channel}");
                let relayed = Event::Named {
                    channel: &internal,
                    event: &event,
                    data: data.as_str(),
                    user_id: Some(&event),
                };
                let frame = object(&Dialect::Pusher.encode(&relayed).expect("carried"));
                assert_eq!(frame["channel"].as_str(), Some(channel.as_str()));
            }
        }
        Decoded::Echo | Decoded::Activity => {}
    }
}

fn request(text: &str) {
    let mut parts = text.splitn(3, '\n');
    let (query, path, body) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or("").as_bytes(),
    );
    let app = App::parse("1:key:secret").expect("app");
    for method in ["GET", "POST"] {
        let signed = Signed {
            method,
            path,
            query,
            body,
        };
        assert!(rest::verify(&app, &signed, 1_700_000_000).is_err(), "a forgery passed");
    }
    if let Ok(trigger) = rest::parse_trigger(body, 10 << 10) {
        check(&trigger);
    }
    if let Ok(batch) = rest::parse_batch(body, 10 << 10) {
        batch.iter().for_each(check);
    }
}

fn check(trigger: &rest::Trigger) {
    let data: Value = serde_json::from_str(&trigger.data).expect("data is JSON");
    assert!(data.is_string(), "data is a JSON string");
    for name in &trigger.channels {
        assert_eq!(channel::validate(name), Ok(()));
    }
}

/// `text` parsed as one JSON object.
fn object(text: &str) -> Value {
    let value: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert!(value.is_object(), "{text}");
    value
}
