//! Client commands and their errors, `ref` echoing, size limits, and the `count` and `none`
//! event modes.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// Sends `cmd` and returns the next message, which must be an error with `code`.
#[track_caller]
fn expect_error(client: &mut Client, cmd: &str, code: &str) -> Value {
    client.send_text(cmd);
    let err = client.recv_json(STEP);
    assert_eq!(err["type"], "error", "reply to {cmd}: {err}");
    assert_eq!(err["code"], code, "reply to {cmd}: {err}");
    assert!(
        err["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error without message: {err}"
    );
    err
}

#[test]
fn malformed_commands_get_bad_request_and_the_connection_keeps_working() {
    let server = Server::start(&[]);
    let (mut c, _) = Client::join(server.addr(), "user=alice&channel=c1");

    expect_error(&mut c, "{not json", "bad_request");
    assert!(c.roundtrip_ping().is_empty(), "after invalid JSON");

    for cmd in [
        r#"[1,2,3]"#,
        r#""ping""#,
        r#"{"id":1}"#,
        r#"{"type":5}"#,
        r#"{"type":"who"}"#,
        r#"{"type":"who","channel":"bad|name"}"#,
        r#"{"type":"update","channel":"c1","meta":"not an object"}"#,
        r#"{"type":"join","channel":"c2","events":"bogus"}"#,
    ] {
        expect_error(&mut c, cmd, "bad_request");
    }

    c.send_binary(b"{\"type\":\"ping\",\"id\":1}");
    let err = c.recv_json(STEP);
    assert_eq!(err["type"], "error", "reply to a binary frame: {err}");
    assert_eq!(err["code"], "bad_request", "reply to a binary frame: {err}");

    assert!(
        c.roundtrip_ping().is_empty(),
        "connection still works after the errors"
    );
}

#[test]
fn unknown_type_and_ref_echo() {
    let server = Server::start(&[]);
    let (mut c, _) = Client::join(server.addr(), "user=alice&channel=c1");

    let err = expect_error(&mut c, r#"{"type":"frobnicate","ref":7}"#, "unknown_type");
    assert_eq!(err["ref"], 7, "{err}");

    c.send_json(&json!({"type": "ping", "id": 1, "ref": "r1"}));
    let pong = c.expect_type("pong");
    assert_eq!(pong["id"], 1, "{pong}");
    assert_eq!(pong["ref"], "r1", "{pong}");

    c.send_json(&json!({"type": "who", "channel": "c1", "ref": {"k": [1, 2]}}));
    let state = c.expect_type("state");
    assert_eq!(state["ref"], json!({"k": [1, 2]}), "{state}");
    assert_eq!(state["channel"], "c1", "{state}");
    assert_eq!(user_names(&state), ["alice"], "{state}");

    let err = expect_error(&mut c, r#"{"type":"who","ref":[true]}"#, "bad_request");
    assert_eq!(err["ref"], json!([true]), "{err}");
}

#[test]
fn commands_on_a_channel_not_joined_get_not_joined() {
    let server = Server::start(&["--client-publish"]);
    let (mut c, _) = Client::join(server.addr(), "user=alice&channel=c1");
    for cmd in [
        json!({"type": "who", "channel": "other", "ref": 1}),
        json!({"type": "leave", "channel": "other", "ref": 2}),
        json!({"type": "update", "channel": "other", "meta": {"a": 1}, "ref": 3}),
        json!({"type": "publish", "channel": "other", "data": 1, "ref": 4}),
    ] {
        let err = expect_error(&mut c, &cmd.to_string(), "not_joined");
        assert_eq!(err["ref"], cmd["ref"], "{err}");
    }
    assert!(c.roundtrip_ping().is_empty());
}

#[test]
fn join_command_adds_a_channel_and_is_idempotent() {
    let server = Server::start(&[]);
    let (mut observer, _) = Client::join(server.addr(), "user=observer&channel=c2");
    let (mut c, _) = Client::join(server.addr(), "user=alice&channel=c1");

    c.send_json(&json!({"type": "join", "channel": "c2", "ref": "j1"}));
    let state = c.expect_type("state");
    assert_eq!(state["channel"], "c2", "{state}");
    assert_eq!(state["ref"], "j1", "{state}");
    assert_eq!(user_names(&state), ["alice", "observer"], "{state}");
    let join = observer.expect_type("join");
    assert_eq!(join["user"], "alice", "{join}");

    // Joining again: same state, no event; a new meta acts as an update.
    c.send_json(&json!({"type": "join", "channel": "c2", "ref": "j2"}));
    let again = c.expect_type("state");
    assert_eq!(again["ref"], "j2", "{again}");
    assert_eq!(again["users"]["alice"]["conns"], 1, "{again}");
    assert!(
        observer.roundtrip_ping().is_empty(),
        "repeated join caused events"
    );

    c.send_json(&json!({"type": "join", "channel": "c2", "meta": {"mood": "ok"}}));
    let update = observer.expect_type("update");
    assert_eq!(update["meta"], json!({"mood": "ok"}), "{update}");
    assert_eq!(seq_of(&update), seq_of(&join) + 1, "{update}");
}

#[test]
fn publish_without_flag_is_forbidden_and_big_meta_too_large() {
    let server = Server::start(&["--max-meta-size", "64"]);
    let (mut c, _) = Client::join(server.addr(), "user=alice&channel=c1");

    let err = expect_error(
        &mut c,
        r#"{"type":"publish","channel":"c1","data":"hi","ref":"p"}"#,
        "forbidden",
    );
    assert_eq!(err["ref"], "p", "{err}");

    let big =
        json!({"type": "update", "channel": "c1", "meta": {"bio": "x".repeat(100)}, "ref": "m"});
    let err = expect_error(&mut c, &big.to_string(), "too_large");
    assert_eq!(err["ref"], "m", "{err}");

    // A meta under the limit is accepted (the update event comes back to the updater).
    c.send_json(&json!({"type": "update", "channel": "c1", "meta": {"bio": "short"}}));
    let update = c.expect_type("update");
    assert_eq!(update["meta"], json!({"bio": "short"}), "{update}");

    // A too-large meta in the URL-less join command is refused too.
    let big_join = json!({"type": "join", "channel": "c9", "meta": {"bio": "y".repeat(100)}});
    expect_error(&mut c, &big_join.to_string(), "too_large");
    assert!(c.roundtrip_ping().is_empty());
}

#[test]
fn oversized_message_closes_with_1009_and_others_see_leave_error() {
    let server = Server::start(&["--max-message-size", "1KiB"]);
    let (mut observer, _) = Client::join(server.addr(), "user=observer&channel=c1");
    let (mut big, _) = Client::join(server.addr(), "user=big&channel=c1");
    observer.expect_type("join");

    let mut payload = String::from("{\"type\":\"ping\",\"id\":\"");
    payload.push_str(&"x".repeat(4096));
    payload.push_str("\"}");
    big.send_text(&payload);

    let close = big.expect_closed(STEP);
    let (code, _reason) = close.expect("a Close frame before the connection ends");
    assert_eq!(code, 1009, "close code for an oversized message");

    let leave = observer.expect_type("leave");
    assert_eq!(leave["user"], "big", "{leave}");
    assert_eq!(leave["reason"], "error", "{leave}");
    assert!(observer.roundtrip_ping().is_empty(), "observer still works");

    // A message just under the limit is fine.
    let (mut ok, _) = Client::join(server.addr(), "user=ok&channel=c1");
    let filler = "y".repeat(900);
    ok.send_json(&json!({"type": "ping", "id": filler}));
    let pong = ok.expect_type("pong");
    assert_eq!(pong["id"].as_str().map(str::len), Some(900));
}

#[test]
fn count_mode_gets_coalesced_counts() {
    let server = Server::start(&[]);
    let (mut counter, _) =
        Client::connect_welcomed(server.addr(), "user=counter&channel=c1&events=count");
    let first = counter.expect_type("count");
    assert_eq!(first["channel"], "c1", "{first}");
    assert_eq!(first["users"], 1, "{first}");
    assert_eq!(first["connections"], 1, "{first}");
    assert!(first["seq"].is_u64(), "{first}");

    let _u2 = Client::join(server.addr(), "user=u2&channel=c1");
    let _u3 = Client::join(server.addr(), "user=u3&channel=c1");

    let deadline = Instant::now() + Duration::from_millis(3500);
    let mut pushes: Vec<(Instant, Value)> = Vec::new();
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let msg = counter.try_recv_json(remaining).unwrap_or_else(|| {
            panic!("no count with users=3 within 3.5s; counts so far: {pushes:?}")
        });
        assert_eq!(msg["type"], "count", "events=count got {msg}");
        pushes.push((Instant::now(), msg.clone()));
        if msg["users"] == 3 {
            assert_eq!(msg["connections"], 3, "{msg}");
            break;
        }
    }
    for pair in pushes.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(
            gap >= Duration::from_millis(800),
            "counts not coalesced: {} then {} only {}ms apart",
            pair[0].1,
            pair[1].1,
            ms(gap)
        );
    }
    // Nothing but counts reaches a count-mode connection.
    assert!(counter
        .roundtrip_ping()
        .iter()
        .all(|m| m["type"] == "count"));
}

#[test]
fn none_mode_gets_nothing_pushed_but_who_works() {
    let server = Server::start(&[]);
    let (mut quiet, _) =
        Client::connect_welcomed(server.addr(), "user=quiet&channel=c1&events=none");
    let (mut loud, _) = Client::join(server.addr(), "user=loud&channel=c1");
    loud.send_json(&json!({"type": "update", "channel": "c1", "meta": {"x": 1}}));
    loud.expect_type("update");

    let before = quiet.roundtrip_ping();
    assert!(before.is_empty(), "events=none connection got {before:?}");

    quiet.send_json(&json!({"type": "who", "channel": "c1"}));
    let state = quiet.expect_type("state");
    assert_eq!(user_names(&state), ["loud", "quiet"], "{state}");
    assert_eq!(state["users"]["loud"]["meta"], json!({"x": 1}), "{state}");
}

#[test]
fn protocol_violations_close_with_1002_or_1007_and_others_see_leave_error() {
    let server = Server::start(&[]);
    let (mut observer, _) = Client::join(server.addr(), "user=observer&channel=c1");

    // (user, bytes, expected close code)
    let mut unmasked = masked_frame(0x1, br#"{"type":"ping","id":1}"#);
    // Clear the mask bit and drop the key: the payload becomes garbage, the frame unmasked,
    // which RFC 6455 section 5.1 makes a protocol error.
    unmasked[1] &= 0x7f;
    unmasked.drain(2..6);
    let cases: [(&str, Vec<u8>, u16); 3] = [
        (
            "badutf8",
            masked_frame(0x1, b"{\"type\":\"ping\",\"id\":\"\xff\xfe\"}"),
            1007,
        ),
        ("unmasked", unmasked, 1002),
        ("reservedop", masked_frame(0x3, b"x"), 1002),
    ];
    for (user, bytes, code) in cases {
        let mut raw = RawWs::connect(server.addr(), &format!("/?user={user}&channel=c1"));
        let join = observer.expect_type("join");
        assert_eq!(join["user"], user, "{join}");
        raw.send(&bytes);
        assert_eq!(
            raw.expect_close_frame(STEP),
            Some(code),
            "close code for {user}"
        );
        raw.expect_eof(STEP);
        let leave = observer.expect_type("leave");
        assert_eq!(leave["user"], user, "{leave}");
        assert_eq!(leave["reason"], "error", "{leave}");
    }
    assert!(observer.roundtrip_ping().is_empty());
}

#[test]
fn a_consumer_that_never_reads_is_dropped_as_slow_consumer() {
    let server = Server::start(&["--max-backlog", "64KiB"]);
    let (mut observer, _) = Client::join(server.addr(), "user=observer&channel=c1");
    // Never read from: what the server sends it piles up in the kernel, then in its backlog.
    let _sleepy = Client::connect(server.addr(), "user=sleepy&channel=c1");
    observer.expect_type("join");
    let rss_before = resident_bytes(server.pid());

    // A station publishing 8 KiB messages over HTTP, as fast as they are answered.
    let body = json!({"channel": "c1", "data": "z".repeat(8 * 1024)}).to_string();
    let deadline = Instant::now() + Duration::from_secs(15);
    let (mut published, mut received, mut leave) = (0, 0, None);
    while leave.is_none() {
        assert!(
            Instant::now() < deadline,
            "sleepy was never dropped ({published} published)"
        );
        let resp = http_post(server.addr(), "/publish", &[], body.as_bytes());
        assert_eq!(resp.status, 200, "{resp:?}");
        published += 1;
        // The observer reads every message as it comes: none may be lost on its side.
        while received < published {
            let msg = observer.recv_json(STEP);
            match msg["type"].as_str() {
                Some("message") => received += 1,
                Some("leave") => leave = Some(msg),
                _ => panic!("observer got {msg}"),
            }
        }
    }
    let leave = leave.expect("a leave");
    assert_eq!(leave["user"], "sleepy", "{leave}");
    assert_eq!(leave["reason"], "slow_consumer", "{leave}");
    assert_eq!(received, published, "the observer got every message");
    let grown = resident_bytes(server.pid()).saturating_sub(rss_before);
    assert!(
        grown < 8 << 20,
        "the server grew by {grown} bytes for a 64 KiB backlog"
    );
}

/// Reads text frames until one of `"type":ty` and returns its text as sent: a parsed `Value`
/// would hide how the server spelled its numbers.
#[track_caller]
fn raw_text_of_type(raw: &mut RawWs, ty: &str) -> String {
    let deadline = Instant::now() + STEP;
    let marker = format!(r#"{{"type":"{ty}","#);
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let frame = raw
            .next_frame(remaining)
            .unwrap_or_else(|| panic!("the connection ended before a `{ty}` message"));
        if frame.opcode != 0x1 {
            continue;
        }
        let text = String::from_utf8(frame.payload).expect("a text frame is UTF-8");
        if text.starts_with(&marker) {
            return text;
        }
    }
}

/// Issue 13 item 4: numbers no JSON number type holds (past u64, under i64::MIN, past f64)
/// come back exactly as sent, in the `state`, `update` and `message` the client gets.
#[test]
fn meta_numbers_come_back_byte_exact() {
    const META: &str = r#"{"big":12345678901234567890123,"neg":-9223372036854775809}"#;
    let server = Server::start(&[]);
    let mut raw = RawWs::connect(server.addr(), "/?user=alice&channel=c1");
    raw_text_of_type(&mut raw, "state");

    let join = format!(r#"{{"type":"join","channel":"c2","meta":{META}}}"#);
    raw.send(&masked_frame(0x1, join.as_bytes()));
    let state = raw_text_of_type(&mut raw, "state");
    assert!(
        state.contains(&format!(r#""alice":{{"conns":1,"meta":{META}}}"#)),
        "state: {state}"
    );

    let update = format!(r#"{{"type":"update","channel":"c1","meta":{META}}}"#);
    raw.send(&masked_frame(0x1, update.as_bytes()));
    let update = raw_text_of_type(&mut raw, "update");
    assert!(
        update.contains(&format!(r#""meta":{META},"#)),
        "update: {update}"
    );

    // A publication's data from POST /publish, exponents and trailing zeros included.
    const DATA: &str = r#"[1E5,2.50,1e400,18446744073709551616]"#;
    let body = format!(r#"{{"channel":"c1","data":{DATA}}}"#);
    let resp = http_post(server.addr(), "/publish", &[], body.as_bytes());
    assert_eq!(resp.status, 200, "{resp:?}");
    let message = raw_text_of_type(&mut raw, "message");
    assert!(
        message.ends_with(&format!(r#""data":{DATA}}}"#)),
        "message: {message}"
    );
}
