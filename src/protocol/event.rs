//! Encoding of server messages (server to client), each one a JSON text.
//!
//! Names (users, channels) and free text (error messages) are appended through
//! [`push_json_str`]; `meta`, `data`, `id` and `ref` are already compact JSON
//! ([`Json`], [`Meta`]) and are spliced in verbatim. Each message is built by appending its
//! pieces to one `String` sized up front. An event is encoded once and the same text is sent
//! to every recipient.

use std::fmt::Write;

use crate::model::{
    push_json_str, Counts, DiffChange, ErrorCode, Json, LeaveReason, MemberView, Meta, PendingDiff,
};

/// Room for a message's fixed text and numbers, beside its names and JSON values.
const FIXED: usize = 96;

/// An empty message with room for `variable` bytes of names and values.
fn message_with(variable: usize) -> String {
    String::with_capacity(FIXED + variable)
}

/// Appends a number.
fn push_number(out: &mut String, number: impl std::fmt::Display) {
    // Writing to a `String` cannot fail.
    let _ = write!(out, "{number}");
}

/// `{"type":"welcome","conn":ID,"user":U,"heartbeat":{"interval_ms":N,"timeout_ms":N}}`
pub fn welcome(conn: &str, user: &str, interval_ms: u64, timeout_ms: u64) -> String {
    let mut out = message_with(conn.len() + user.len());
    out.push_str(r#"{"type":"welcome","conn":""#);
    out.push_str(conn);
    out.push_str(r#"","user":"#);
    push_json_str(&mut out, user);
    out.push_str(r#","heartbeat":{"interval_ms":"#);
    push_number(&mut out, interval_ms);
    out.push_str(r#","timeout_ms":"#);
    push_number(&mut out, timeout_ms);
    out.push_str("}}");
    out
}

/// `{"type":"state","channel":C,"seq":N,"users":{U:{"conns":N,"meta":{...}},...}}`
pub fn state<'a>(
    channel: &str,
    seq: u64,
    members: impl Iterator<Item = MemberView<'a>>,
    reference: Option<&Json>,
) -> String {
    let mut out = message_with(channel.len());
    out.push_str(r#"{"type":"state","channel":"#);
    push_json_str(&mut out, channel);
    out.push_str(r#","seq":"#);
    push_number(&mut out, seq);
    out.push_str(r#","users":"#);
    write_users(&mut out, members);
    close_with_reference(out, reference)
}

/// Writes the member map `{U:{"conns":N,"meta":{...}},...}` shared by `state` and the
/// presence endpoints.
pub fn write_users<'a>(out: &mut String, members: impl Iterator<Item = MemberView<'a>>) {
    out.push('{');
    for (index, member) in members.enumerate() {
        if index > 0 {
            out.push(',');
        }
        push_json_str(out, member.user);
        out.push_str(r#":{"conns":"#);
        push_number(out, member.conns);
        out.push_str(r#","meta":"#);
        out.push_str(member.meta.as_str());
        out.push('}');
    }
    out.push('}');
}

/// `{"type":"count","channel":C,"users":N,"connections":N,"seq":N}`
pub fn count(channel: &str, counts: Counts, reference: Option<&Json>) -> String {
    let Counts {
        users,
        connections,
        seq,
    } = counts;
    let mut out = message_with(channel.len());
    out.push_str(r#"{"type":"count","channel":"#);
    push_json_str(&mut out, channel);
    out.push_str(r#","users":"#);
    push_number(&mut out, users);
    out.push_str(r#","connections":"#);
    push_number(&mut out, connections);
    out.push_str(r#","seq":"#);
    push_number(&mut out, seq);
    close_with_reference(out, reference)
}

/// The start shared by `join`, `leave` and `update`: `{"type":T,"channel":C,"user":U`.
fn member_event(kind: &str, channel: &str, user: &str, variable: usize) -> String {
    let mut out = message_with(channel.len() + user.len() + variable);
    out.push_str(r#"{"type":""#);
    out.push_str(kind);
    out.push_str(r#"","channel":"#);
    push_json_str(&mut out, channel);
    out.push_str(r#","user":"#);
    push_json_str(&mut out, user);
    out
}

/// `,"seq":N}`: the end of `join`, `leave` and `update`.
fn close_with_seq(mut out: String, seq: u64) -> String {
    out.push_str(r#","seq":"#);
    push_number(&mut out, seq);
    out.push('}');
    out
}

/// `{"type":"join","channel":C,"user":U,"meta":{...},"seq":N}`
pub fn join(channel: &str, user: &str, meta: &Meta, seq: u64) -> String {
    let meta = meta.as_str();
    let mut out = member_event("join", channel, user, meta.len());
    out.push_str(r#","meta":"#);
    out.push_str(meta);
    close_with_seq(out, seq)
}

/// `{"type":"leave","channel":C,"user":U,"reason":R,"seq":N}`
pub fn leave(channel: &str, user: &str, reason: LeaveReason, seq: u64) -> String {
    let mut out = member_event("leave", channel, user, 0);
    out.push_str(r#","reason":""#);
    out.push_str(reason.as_str());
    out.push('"');
    close_with_seq(out, seq)
}

/// `{"type":"diff","channel":C,"from":M,"seq":N,"joins":{U:{...}},"leaves":{U:{"reason":R}},
/// "updates":{U:{...}}}`: joins and updates carry the member's meta, leaves the reason.
pub fn diff(channel: &str, diff: &PendingDiff) -> String {
    let mut out = message_with(channel.len() + 64 * diff.changes().count());
    out.push_str(r#"{"type":"diff","channel":"#);
    push_json_str(&mut out, channel);
    out.push_str(r#","from":"#);
    push_number(&mut out, diff.from());
    out.push_str(r#","seq":"#);
    push_number(&mut out, diff.seq());
    let sections = [
        ("joins", DiffSection::Joins),
        ("leaves", DiffSection::Leaves),
        ("updates", DiffSection::Updates),
    ];
    for (name, selects) in sections {
        out.push_str(",\"");
        out.push_str(name);
        out.push_str("\":{");
        let changes = diff.changes().filter(|(_, change)| selects.holds(change));
        for (index, (user, change)) in changes.enumerate() {
            if index > 0 {
                out.push(',');
            }
            push_json_str(&mut out, user);
            out.push(':');
            match change {
                DiffChange::Join(meta) | DiffChange::Update(meta) => out.push_str(meta.as_str()),
                DiffChange::Leave(reason) => {
                    out.push_str(r#"{"reason":""#);
                    out.push_str(reason.as_str());
                    out.push_str("\"}");
                }
            }
        }
        out.push('}');
    }
    out.push('}');
    out
}

/// The three maps of a `diff`.
#[derive(Clone, Copy)]
enum DiffSection {
    Joins,
    Leaves,
    Updates,
}

impl DiffSection {
    fn holds(self, change: &DiffChange) -> bool {
        matches!(
            (self, change),
            (DiffSection::Joins, DiffChange::Join(_))
                | (DiffSection::Leaves, DiffChange::Leave(_))
                | (DiffSection::Updates, DiffChange::Update(_))
        )
    }
}

/// `{"type":"update","channel":C,"user":U,"meta":{...},"seq":N}`
pub fn update(channel: &str, user: &str, meta: &Meta, seq: u64) -> String {
    let meta = meta.as_str();
    let mut out = member_event("update", channel, user, meta.len());
    out.push_str(r#","meta":"#);
    out.push_str(meta);
    close_with_seq(out, seq)
}

/// `{"type":"message","channel":C,"from":U or null,"data":ANY}`
pub fn message(channel: &str, from: Option<&str>, data: &Json) -> String {
    let data = data.as_str();
    let mut out = message_with(channel.len() + from.map_or(0, str::len) + data.len());
    out.push_str(r#"{"type":"message","channel":"#);
    push_json_str(&mut out, channel);
    out.push_str(r#","from":"#);
    match from {
        Some(user) => push_json_str(&mut out, user),
        None => out.push_str("null"),
    }
    out.push_str(r#","data":"#);
    out.push_str(data);
    out.push('}');
    out
}

/// `{"type":"refreshed","exp":N}` (with `ref` when the refresh had one)
pub fn refreshed(expires_at: u64, reference: Option<&Json>) -> String {
    close_with_reference(
        format!(r#"{{"type":"refreshed","exp":{expires_at}"#),
        reference,
    )
}

/// `{"type":"message","channel":null,"from":null,"data":ANY}`: a message to one user from
/// the host (through a `Handle`), not to a channel.
pub fn direct_message(data: &Json) -> String {
    format!(
        r#"{{"type":"message","channel":null,"from":null,"data":{}}}"#,
        data.as_str()
    )
}

/// `{"type":"pong","id":ANY}` (with `ref` when the ping had one)
pub fn pong(id: &Json, reference: Option<&Json>) -> String {
    close_with_reference(
        format!(r#"{{"type":"pong","id":{}"#, id.as_str()),
        reference,
    )
}

/// `{"type":"error","code":K,"message":TEXT}` (with `ref` when the command had one)
pub fn error(code: ErrorCode, message: &str, reference: Option<&Json>) -> String {
    let mut out = message_with(message.len());
    out.push_str(r#"{"type":"error","code":""#);
    out.push_str(code.as_str());
    out.push_str(r#"","message":"#);
    push_json_str(&mut out, message);
    close_with_reference(out, reference)
}

/// `{"type":"users","online":[U,...],"offline":{U:MS or null,...}}` (with `ref` when the
/// `watch_users` had one)
pub fn users(online: &[&str], offline: &[(&str, Option<u64>)], reference: Option<&Json>) -> String {
    let names: usize = online.iter().map(|u| u.len() + 3).sum::<usize>()
        + offline.iter().map(|(u, _)| u.len() + 17).sum::<usize>();
    let mut out = message_with(names);
    out.push_str(r#"{"type":"users","online":["#);
    for (index, user) in online.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        push_json_str(&mut out, user);
    }
    out.push_str(r#"],"offline":{"#);
    for (index, (user, last_seen)) in offline.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        push_json_str(&mut out, user);
        out.push(':');
        match last_seen {
            Some(ms) => push_number(&mut out, ms),
            None => out.push_str("null"),
        }
    }
    out.push('}');
    close_with_reference(out, reference)
}

/// `{"type":"online","user":U}`
pub fn user_online(user: &str) -> String {
    let mut out = message_with(user.len());
    out.push_str(r#"{"type":"online","user":"#);
    push_json_str(&mut out, user);
    out.push('}');
    out
}

/// `{"type":"offline","user":U,"last_seen":MS}`
pub fn user_offline(user: &str, last_seen: u64) -> String {
    let mut out = message_with(user.len());
    out.push_str(r#"{"type":"offline","user":"#);
    push_json_str(&mut out, user);
    out.push_str(r#","last_seen":"#);
    push_number(&mut out, last_seen);
    out.push('}');
    out
}

fn close_with_reference(mut out: String, reference: Option<&Json>) -> String {
    if let Some(reference) = reference {
        out.push_str(r#","ref":"#);
        out.push_str(reference.as_str());
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{text} is not JSON: {e}"))
    }

    fn meta(text: &str) -> Meta {
        let value: Value = serde_json::from_str(text).expect("test meta");
        Meta::from_json(Json::from_value(&value))
    }

    #[test]
    fn welcome_message() {
        assert_eq!(
            parse(&welcome("3.1", "alice", 30_000, 60_000)),
            json!({"type":"welcome","conn":"3.1","user":"alice","heartbeat":{"interval_ms":30000,"timeout_ms":60000}})
        );
    }

    #[test]
    fn state_with_members_and_ref() {
        let away = meta(r#"{"status":"away"}"#);
        let none = Meta::empty();
        let members = [
            MemberView {
                user: "alice",
                conns: 2,
                meta: &away,
            },
            MemberView {
                user: "bob",
                conns: 1,
                meta: &none,
            },
        ];
        let reference = Json::from_value(&json!("r"));
        assert_eq!(
            parse(&state("lobby", 4, members.into_iter(), Some(&reference))),
            json!({"type":"state","channel":"lobby","seq":4,"users":{
                "alice":{"conns":2,"meta":{"status":"away"}},
                "bob":{"conns":1,"meta":{}}},"ref":"r"})
        );
        assert_eq!(
            parse(&state("empty", 0, std::iter::empty(), None)),
            json!({"type":"state","channel":"empty","seq":0,"users":{}})
        );
    }

    #[test]
    fn presence_events() {
        let m = meta(r#"{"n":1}"#);
        assert_eq!(
            parse(&join("c", "bob", &m, 5)),
            json!({"type":"join","channel":"c","user":"bob","meta":{"n":1},"seq":5})
        );
        assert_eq!(
            parse(&update("c", "bob", &Meta::empty(), 6)),
            json!({"type":"update","channel":"c","user":"bob","meta":{},"seq":6})
        );
        for (reason, name) in [
            (LeaveReason::Left, "left"),
            (LeaveReason::Closed, "closed"),
            (LeaveReason::Timeout, "timeout"),
            (LeaveReason::Error, "error"),
            (LeaveReason::SlowConsumer, "slow_consumer"),
            (LeaveReason::Shutdown, "shutdown"),
        ] {
            assert_eq!(
                parse(&leave("c", "bob", reason, 7)),
                json!({"type":"leave","channel":"c","user":"bob","reason":name,"seq":7})
            );
        }
    }

    #[test]
    fn counts_messages_and_pong() {
        let counts = Counts {
            users: 2,
            connections: 3,
            seq: 9,
        };
        assert_eq!(
            parse(&count("radio", counts, None)),
            json!({"type":"count","channel":"radio","users":2,"connections":3,"seq":9})
        );
        let data = Json::from_value(&json!({"song":"x"}));
        assert_eq!(
            parse(&message("radio", Some("dj"), &data)),
            json!({"type":"message","channel":"radio","from":"dj","data":{"song":"x"}})
        );
        assert_eq!(
            parse(&message("radio", None, &data)),
            json!({"type":"message","channel":"radio","from":null,"data":{"song":"x"}})
        );
        let id = Json::from_value(&json!([1]));
        assert_eq!(parse(&pong(&id, None)), json!({"type":"pong","id":[1]}));
    }

    #[test]
    fn every_error_code_and_escaped_text() {
        for (code, name) in [
            (ErrorCode::BadRequest, "bad_request"),
            (ErrorCode::UnknownType, "unknown_type"),
            (ErrorCode::NotJoined, "not_joined"),
            (ErrorCode::TooLarge, "too_large"),
            (ErrorCode::Forbidden, "forbidden"),
            (ErrorCode::RateLimited, "rate_limited"),
        ] {
            let reference = Json::from_value(&json!(1));
            assert_eq!(
                parse(&error(code, "say \"hi\"\n", Some(&reference))),
                json!({"type":"error","code":name,"message":"say \"hi\"\n","ref":1})
            );
        }
    }

    #[test]
    fn names_and_messages_needing_escapes_parse_back_byte_for_byte() {
        let user = "auth0|q\"b\\s</script>\t🦀 \u{202e}مرحبا";
        let channel = "room:lobby";
        let meta = meta(r#"{"n":1}"#);
        let data = Json::from_value(&json!("x"));
        let member = MemberView {
            user,
            conns: 2,
            meta: &meta,
        };
        assert_eq!(parse(&welcome("1.1", user, 1, 2))["user"], user);
        let state = parse(&state(channel, 3, std::iter::once(member), None));
        assert_eq!(state["users"][user]["conns"], 2, "{state}");
        for event in [
            join(channel, user, &meta, 4),
            leave(channel, user, LeaveReason::Timeout, 5),
            update(channel, user, &meta, 6),
        ] {
            let event = parse(&event);
            assert_eq!(
                (&event["channel"], &event["user"]),
                (&json!(channel), &json!(user))
            );
        }
        let message = parse(&message(channel, Some(user), &data));
        assert_eq!(
            (&message["channel"], &message["from"]),
            (&json!(channel), &json!(user))
        );
        let error = parse(&error(ErrorCode::BadRequest, user, None));
        assert_eq!(error["message"], user);
    }
}
