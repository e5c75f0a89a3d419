//! Encoding of server messages (server to client), each one a JSON text.
//!
//! Names (users, channels) are validated on entry and need no escaping; `meta`, `data`, `id`
//! and `ref` are already compact JSON ([`Json`], [`Meta`]) and are spliced in verbatim. Only
//! free text (error messages) is escaped. An event is encoded once and the same text is sent
//! to every recipient.

use std::fmt::Write;

use crate::model::{Counts, ErrorCode, Json, LeaveReason, MemberView, Meta};

/// `{"type":"welcome","conn":ID,"user":U,"heartbeat":{"interval_ms":N,"timeout_ms":N}}`
pub fn welcome(conn: &str, user: &str, interval_ms: u64, timeout_ms: u64) -> String {
    format!(
        r#"{{"type":"welcome","conn":"{conn}","user":"{user}","heartbeat":{{"interval_ms":{interval_ms},"timeout_ms":{timeout_ms}}}}}"#
    )
}

/// `{"type":"state","channel":C,"seq":N,"users":{U:{"conns":N,"meta":{...}},...}}`
pub fn state<'a>(
    channel: &str,
    seq: u64,
    members: impl Iterator<Item = MemberView<'a>>,
    reference: Option<&Json>,
) -> String {
    let mut out = format!(r#"{{"type":"state","channel":"{channel}","seq":{seq},"users":"#);
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
        let _ = write!(
            out,
            r#""{}":{{"conns":{},"meta":{}}}"#,
            member.user,
            member.conns,
            member.meta.as_str()
        );
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
    let out = format!(
        r#"{{"type":"count","channel":"{channel}","users":{users},"connections":{connections},"seq":{seq}"#
    );
    close_with_reference(out, reference)
}

/// `{"type":"join","channel":C,"user":U,"meta":{...},"seq":N}`
pub fn join(channel: &str, user: &str, meta: &Meta, seq: u64) -> String {
    let meta = meta.as_str();
    format!(r#"{{"type":"join","channel":"{channel}","user":"{user}","meta":{meta},"seq":{seq}}}"#)
}

/// `{"type":"leave","channel":C,"user":U,"reason":R,"seq":N}`
pub fn leave(channel: &str, user: &str, reason: LeaveReason, seq: u64) -> String {
    format!(
        r#"{{"type":"leave","channel":"{channel}","user":"{user}","reason":"{reason}","seq":{seq}}}"#
    )
}

/// `{"type":"update","channel":C,"user":U,"meta":{...},"seq":N}`
pub fn update(channel: &str, user: &str, meta: &Meta, seq: u64) -> String {
    let meta = meta.as_str();
    format!(
        r#"{{"type":"update","channel":"{channel}","user":"{user}","meta":{meta},"seq":{seq}}}"#
    )
}

/// `{"type":"message","channel":C,"from":U or null,"data":ANY}`
pub fn message(channel: &str, from: Option<&str>, data: &Json) -> String {
    let data = data.as_str();
    match from {
        Some(user) => {
            format!(r#"{{"type":"message","channel":"{channel}","from":"{user}","data":{data}}}"#)
        }
        None => format!(r#"{{"type":"message","channel":"{channel}","from":null,"data":{data}}}"#),
    }
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
    let text = serde_json::Value::from(message);
    let out = format!(
        r#"{{"type":"error","code":"{}","message":{text}"#,
        code.as_str()
    );
    close_with_reference(out, reference)
}

fn close_with_reference(mut out: String, reference: Option<&Json>) -> String {
    if let Some(reference) = reference {
        let _ = write!(out, r#","ref":{}"#, reference.as_str());
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
}
