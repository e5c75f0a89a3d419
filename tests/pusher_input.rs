//! Bad input to the Pusher mode over real sockets: an unknown app key and an unsupported
//! protocol version are refused after the upgrade with the close codes pusher-js obeys; a
//! REST call that is unsigned, forged, stale, tampered, oversized or aimed at the wrong
//! thing gets its JSON error and changes nothing; frames a Pusher client should not send get
//! `pusher:error` and the connection stays.

mod common;

use std::time::Duration;

use common::*;
use rollcall::pusher::rest::signed_query;
use rollcall::pusher::App;
use serde_json::{json, Value};

const APP: &str = "42:input-key:input-secret";

fn server() -> Server {
    Server::start(&["--pusher-app", APP])
}

fn app() -> App {
    App::parse(APP).expect("app")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// A text frame's JSON.
#[track_caller]
fn text_of(frame: &RawFrame) -> Value {
    assert_eq!(frame.opcode, 1, "a text frame: {frame:?}");
    serde_json::from_slice(&frame.payload).expect("JSON")
}

#[test]
fn unknown_keys_and_protocols_are_closed_after_the_upgrade_with_pushers_codes() {
    let server = server();
    for (target, code) in [
        ("/app/no-such-key?protocol=7", 4001),
        ("/app/input-key?protocol=6", 4007),
    ] {
        let mut raw = RawWs::connect(server.addr(), target);
        let error = text_of(&raw.next_frame(STEP).expect("pusher:error"));
        assert_eq!(error["event"], "pusher:error", "{target}: {error}");
        assert_eq!(error["data"]["code"], code, "{target}: {error}");
        assert_eq!(raw.expect_close_frame(STEP), Some(code), "{target}");
    }
    // Without an app configured, /app/... is no WebSocket at all.
    let plain = Server::start(&[]);
    let response = upgrade_attempt(plain.addr(), upgrade_request("/app/input-key").as_bytes());
    assert_eq!(response.status, 404, "{response:?}");
}

#[test]
fn frames_a_client_should_not_send_get_pusher_error_and_the_connection_stays() {
    let server = server();
    let mut client = Client::connect_target(server.addr(), "/app/input-key?protocol=7");
    assert_eq!(
        client.recv_json(STEP)["event"],
        "pusher:connection_established"
    );
    for bad in [
        "not json",
        r#"{"event":"nope","data":{}}"#,
        r#"{"event":"pusher:subscribe","data":{"channel":"a b"}}"#,
        r#"{"event":"pusher:subscribe","data":{"channel":"private-x","auth":"input-key:zz"}}"#,
        r#"{"event":"client-x","channel":"private-x","data":{}}"#,
    ] {
        client.send_text(bad);
        let reply = client.recv_json(STEP);
        let event = reply["event"].as_str().unwrap_or_default();
        assert!(
            event == "pusher:error" || event == "pusher:subscription_error",
            "{bad}: {reply}"
        );
    }
    client.send_json(&json!({"event": "pusher:ping", "data": {}}));
    assert_eq!(client.recv_json(STEP)["event"], "pusher:pong", "still open");
}

/// A REST call to `path` with `query` and `body`, as given (signed or not).
fn call(server: &Server, method: &str, path: &str, query: &str, body: &[u8]) -> HttpResponse {
    let target = format!("{path}?{query}");
    match method {
        "POST" => http_post(server.addr(), &target, &[], body),
        _ => http_get(server.addr(), &target),
    }
}

#[test]
fn rest_calls_that_are_not_right_get_their_json_error_and_change_nothing() {
    let server = server();
    let mut member = Client::connect_target(server.addr(), "/app/input-key?protocol=7");
    member.recv_json(STEP);
    member.send_json(&json!({"event": "pusher:subscribe", "data": {"channel": "news"}}));
    assert_eq!(
        member.recv_json(STEP)["event"],
        "pusher_internal:subscription_succeeded"
    );

    let body = json!({"name": "e", "channel": "news", "data": "x"}).to_string();
    let events = "/apps/42/events";
    let signed = |method: &str, path: &str, body: &[u8], at: u64| {
        signed_query(&app(), method, path, &[], body, at)
    };
    let big = json!({"name": "e", "channel": "news", "data": "x".repeat(11 << 10)}).to_string();
    let cases: Vec<(&str, u16, HttpResponse)> = vec![
        (
            "unsigned",
            401,
            call(&server, "POST", events, "", body.as_bytes()),
        ),
        (
            "stale",
            401,
            call(
                &server,
                "POST",
                events,
                &signed("POST", events, body.as_bytes(), now() - 700),
                body.as_bytes(),
            ),
        ),
        (
            "tampered body",
            401,
            call(
                &server,
                "POST",
                events,
                &signed("POST", events, body.as_bytes(), now()),
                br#"{"name":"f","channel":"news","data":"x"}"#,
            ),
        ),
        (
            "another app's path",
            401,
            call(
                &server,
                "POST",
                "/apps/42/batch_events",
                &signed("POST", events, body.as_bytes(), now()),
                body.as_bytes(),
            ),
        ),
        (
            "unknown app",
            404,
            call(
                &server,
                "POST",
                "/apps/7/events",
                &signed("POST", "/apps/7/events", body.as_bytes(), now()),
                body.as_bytes(),
            ),
        ),
        (
            "oversized data",
            413,
            call(
                &server,
                "POST",
                events,
                &signed("POST", events, big.as_bytes(), now()),
                big.as_bytes(),
            ),
        ),
        (
            "users of a public channel",
            400,
            call(
                &server,
                "GET",
                "/apps/42/channels/news/users",
                &signed("GET", "/apps/42/channels/news/users", b"", now()),
                b"",
            ),
        ),
        (
            "unknown call",
            404,
            call(
                &server,
                "GET",
                "/apps/42/nothing",
                &signed("GET", "/apps/42/nothing", b"", now()),
                b"",
            ),
        ),
    ];
    for (what, status, response) in cases {
        assert_eq!(response.status, status, "{what}: {response:?}");
        assert_eq!(response.content_type(), "application/json", "{what}");
        assert!(response.json()["error"].is_string(), "{what}: {response:?}");
    }
    member.expect_silence(Duration::from_millis(200));

    // The same call, signed: delivered.
    let ok = call(
        &server,
        "POST",
        events,
        &signed("POST", events, body.as_bytes(), now()),
        body.as_bytes(),
    );
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.json(), json!({}));
    assert_eq!(
        member.recv_json(STEP),
        json!({"event": "e", "channel": "news", "data": "x"})
    );
}
