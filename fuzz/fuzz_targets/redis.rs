//! Fuzzes what a cluster node reads from Redis: the RESP decoder
//! (`rollcall::cluster::resp::decode`), the notes other nodes publish
//! (`rollcall::cluster::note::Note::parse`) and snapshot replies
//! (`rollcall::cluster::parse_snapshot`), then moves a cluster view with the notes and
//! encodes the events local clients would get.
//!
//! Input: any bytes, read both as a RESP stream and as one note. Checked besides "never
//! panics": a decoded reply took no more bytes than it had, decodes the same from exactly
//! those bytes and is incomplete one byte short; whatever passes the note and snapshot
//! parsers carries valid names and JSON, and every event built from it is one JSON object.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rollcall::cluster::note::Note;
use rollcall::cluster::resp::{self, Reply};
use rollcall::cluster::view::{Effect, View};
use rollcall::cluster::{parse_snapshot, pushed_message};
use rollcall::names;
use rollcall::protocol::event;
use rollcall::roster::Change;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let mut view = View::default();
    let mut at = 0;
    while let Ok(Some((reply, used))) = resp::decode(&data[at..]) {
        check_framing(&data[at..at + used], &reply);
        at += used;
        if let Some(snapshot) = parse_snapshot(reply.clone()) {
            for channel in &snapshot {
                valid_channel(&channel.name);
                for (user, _, meta) in &channel.members {
                    valid_user(user);
                    object(meta.as_str());
                }
            }
            view.load(snapshot);
        }
        if let Some(payload) = pushed_message(&reply) {
            apply(&mut view, payload);
        }
        if used == 0 {
            break;
        }
    }
    apply(&mut view, data);
});

fn check_framing(bytes: &[u8], reply: &Reply) {
    assert_eq!(
        resp::decode(bytes),
        Ok(Some((reply.clone(), bytes.len()))),
        "a reply decodes the same from exactly its bytes"
    );
    assert_eq!(
        resp::decode(&bytes[..bytes.len() - 1]),
        Ok(None),
        "a reply one byte short is incomplete"
    );
}

fn apply(view: &mut View, payload: &[u8]) {
    let Ok(note) = Note::parse(payload) else {
        return;
    };
    valid_channel(note.channel());
    if let Note::Publication {
        origin, from, data, ..
    } = &note
    {
        valid_channel(origin);
        if let Some(from) = from {
            valid_user(from);
        }
        let message = object(&event::message(note.channel(), from.as_deref(), data));
        assert_eq!(message["channel"], note.channel());
        assert_eq!(message["from"].as_str(), from.as_deref());
    }
    if let Effect::Announce(change) = view.apply(&note) {
        let channel = note.channel();
        let (user, text) = match &change {
            Change::Join { user, meta, seq } => (user, event::join(channel, user, meta, *seq)),
            Change::Leave { user, reason, seq } => {
                (user, event::leave(channel, user, *reason, *seq))
            }
            Change::Update { user, meta, seq } => (user, event::update(channel, user, meta, *seq)),
        };
        let event = object(&text);
        assert_eq!(event["channel"], channel);
        assert_eq!(event["user"], user.as_ref() as &str, "a user id comes back byte for byte");
    }
    let state = event::state(
        note.channel(),
        view.seq(note.channel()),
        view.members(note.channel()),
        None,
    );
    object(&state);
}

fn valid_channel(name: &str) {
    assert_eq!(
        names::validate_channel(name),
        Ok(()),
        "invalid channel {name:?} accepted"
    );
}

fn valid_user(name: &str) {
    assert_eq!(
        names::validate_user(name),
        Ok(()),
        "invalid user {name:?} accepted"
    );
}

fn object(text: &str) -> Value {
    let value: Value =
        serde_json::from_str(text).unwrap_or_else(|error| panic!("{text:?} is not JSON: {error}"));
    assert!(value.is_object(), "{text:?} is not an object");
    value
}
