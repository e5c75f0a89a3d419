//! The operator endpoints over raw TCP: `/healthz`, `/metrics` (format), `/presence` and
//! `/presence/CHANNEL`, `POST /publish`, the dashboard at `/`, and the errors around them
//! (404, 405 with `Allow`, 400/411/413 for bodies, 408 for a body that never completes).

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// Every metric the contract names, with its type.
const METRICS: &[(&str, &str)] = &[
    ("rollcall_connections", "gauge"),
    ("rollcall_handshakes_pending", "gauge"),
    ("rollcall_timers", "gauge"),
    ("rollcall_users_online", "gauge"),
    ("rollcall_channels", "gauge"),
    ("rollcall_connections_accepted_total", "counter"),
    ("rollcall_connections_closed_total", "counter"),
    ("rollcall_heartbeat_pings_sent_total", "counter"),
    ("rollcall_messages_received_total", "counter"),
    ("rollcall_messages_sent_total", "counter"),
    ("rollcall_bytes_received_total", "counter"),
    ("rollcall_bytes_sent_total", "counter"),
    ("rollcall_accept_paused_seconds_total", "counter"),
    ("rollcall_listen_queue", "gauge"),
    ("rollcall_resident_memory_bytes", "gauge"),
    ("rollcall_process_start_time_seconds", "gauge"),
];

/// What every response shares: the status, `Connection: close`, a `Content-Length` that
/// matches the body (and, since `http_request` reads to EOF, the server closed the socket).
#[track_caller]
fn assert_response(resp: &HttpResponse, status: u16, what: &str) {
    assert_eq!(resp.status, status, "{what}: got {resp:?}");
    let connection = resp.header("connection").unwrap_or_default();
    assert!(
        connection.eq_ignore_ascii_case("close"),
        "{what}: no `Connection: close` in {resp:?}"
    );
    let length: usize = resp
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{what}: no numeric Content-Length in {resp:?}"));
    assert_eq!(
        length,
        resp.body.len(),
        "{what}: Content-Length vs body in {resp:?}"
    );
}

/// A JSON error response of `/presence*` or `/publish`: status, JSON content type and the
/// `error` code, with a string `message`.
#[track_caller]
fn assert_json_error(resp: &HttpResponse, status: u16, code: &str, what: &str) {
    assert_response(resp, status, what);
    assert!(
        resp.content_type().starts_with("application/json"),
        "{what}: content type of a JSON error: {resp:?}"
    );
    let body = resp.json();
    assert_eq!(body["error"], code, "{what}: {body}");
    assert!(body["message"].is_string(), "{what}: message: {body}");
}

/// A text/plain error response (errors outside `/presence*` and `/publish`).
#[track_caller]
fn assert_text_error(resp: &HttpResponse, status: u16, what: &str) {
    assert_response(resp, status, what);
    assert!(
        resp.content_type().starts_with("text/plain"),
        "{what}: content type of a plain error: {resp:?}"
    );
}

/// A successful JSON response; its body.
#[track_caller]
fn json_ok(resp: &HttpResponse, what: &str) -> Value {
    assert_response(resp, 200, what);
    assert!(
        resp.content_type().starts_with("application/json"),
        "{what}: content type: {resp:?}"
    );
    resp.json()
}

/// Publishes `body` and returns the `delivered` count of the 200 reply.
#[track_caller]
fn publish(addr: std::net::SocketAddr, body: &Value) -> u64 {
    let resp = http_post(addr, "/publish", &[], body.to_string().as_bytes());
    let reply = json_ok(&resp, &format!("POST /publish {body}"));
    reply["delivered"]
        .as_u64()
        .unwrap_or_else(|| panic!("publish reply without a numeric delivered: {reply}"))
}

/// Connects `user` to `channel` in `events` mode and consumes its initial messages; a
/// `ping` round trip proves the join was processed (mode `none` has no reply).
#[track_caller]
fn member(addr: std::net::SocketAddr, user: &str, channel: &str, events: &str) -> Client {
    let (mut client, _) = Client::connect_welcomed(
        addr,
        &format!("user={user}&channel={channel}&events={events}"),
    );
    match events {
        "all" => {
            client.expect_type("state");
        }
        "count" => {
            client.expect_type("count");
        }
        _ => {}
    }
    client.roundtrip_ping();
    client
}

/// Reads until a `message` arrives (skipping `count`s and presence events) and returns it.
#[track_caller]
fn next_message(client: &mut Client) -> Value {
    client.wait_for_type("message", STEP).0
}

#[test]
fn healthz_answers_ok() {
    let server = Server::start(&[]);
    let resp = http_get(server.addr(), "/healthz");
    assert_response(&resp, 200, "GET /healthz");
    assert!(
        resp.content_type().starts_with("text/plain"),
        "GET /healthz content type: {resp:?}"
    );
    assert_eq!(resp.body, "ok\n", "GET /healthz body");
}

#[test]
fn metrics_have_the_prometheus_content_type_and_help_and_type_lines() {
    let server = Server::start(&[]);
    let metrics = scrape(server.addr());
    let resp = &metrics.response;
    assert_response(resp, 200, "GET /metrics");
    assert_eq!(
        resp.content_type(),
        "text/plain; version=0.0.4; charset=utf-8",
        "GET /metrics content type"
    );
    for (name, ty) in METRICS {
        assert!(
            metrics.helps.get(*name).is_some_and(|h| !h.is_empty()),
            "no `# HELP {name} ...` line in:\n{}",
            resp.body
        );
        assert_eq!(
            metrics.types.get(*name).map(String::as_str),
            Some(*ty),
            "`# TYPE {name}` in:\n{}",
            resp.body
        );
    }
    for (name, _) in METRICS {
        if *name == "rollcall_connections_closed_total" {
            for reason in CLOSE_REASONS {
                let _ = metrics.closed(reason);
            }
        } else {
            let _ = metrics.get(name);
        }
    }
    assert_eq!(
        metrics.closed("left"),
        0.0,
        "`left` never ends a connection"
    );
    // Every sample belongs to a metric that has HELP and TYPE lines.
    for series in metrics.samples.keys() {
        let name = series.split('{').next().unwrap_or_default();
        assert!(
            metrics.types.contains_key(name) && metrics.helps.contains_key(name),
            "sample {series} without HELP/TYPE in:\n{}",
            resp.body
        );
    }
}

#[test]
fn presence_lists_channels_users_meta_and_connection_counts() {
    let server = Server::start(&[]);
    let addr = server.addr();

    let (mut alice, _) = Client::join(addr, "user=alice&channel=c1");
    alice.send_json(&json!({"type": "update", "channel": "c1", "meta": {"role": "lead"}}));
    alice.expect_type("update");
    let (_alice_tab2, tab2_state) = Client::join(addr, "user=alice&channel=c1");
    assert_eq!(tab2_state["users"]["alice"]["conns"], 2, "{tab2_state}");

    let (mut bob, _) = Client::join(addr, "user=bob&channel=c2");
    bob.send_json(&json!({"type": "update", "channel": "c2", "meta": {"status": "away"}}));
    bob.expect_type("update");

    alice.send_json(&json!({"type": "who", "channel": "c1"}));
    let c1_state = alice.expect_type("state");
    bob.send_json(&json!({"type": "who", "channel": "c2"}));
    let c2_state = bob.expect_type("state");

    let presence = json_ok(&http_get(addr, "/presence"), "GET /presence");
    assert_eq!(presence["connections"], 3, "{presence}");
    assert_eq!(presence["users"], 2, "{presence}");
    let channels = presence["channels"]
        .as_object()
        .unwrap_or_else(|| panic!("no channels object: {presence}"));
    let mut names: Vec<&String> = channels.keys().collect();
    names.sort();
    assert_eq!(names, ["c1", "c2"], "{presence}");
    assert_eq!(
        presence["channels"]["c1"],
        json!({"seq": c1_state["seq"], "users": {"alice": {"conns": 2, "meta": {"role": "lead"}}}}),
        "{presence}"
    );
    assert_eq!(
        presence["channels"]["c2"],
        json!({"seq": c2_state["seq"], "users": {"bob": {"conns": 1, "meta": {"status": "away"}}}}),
        "{presence}"
    );

    let c1 = json_ok(&http_get(addr, "/presence/c1"), "GET /presence/c1");
    assert_eq!(c1, presence["channels"]["c1"], "GET /presence/c1");

    let count = json_ok(
        &http_get(addr, "/presence/c1?count"),
        "GET /presence/c1?count",
    );
    assert_eq!(
        count,
        json!({"users": 1, "connections": 2, "seq": c1_state["seq"]}),
        "GET /presence/c1?count"
    );
    let count = json_ok(
        &http_get(addr, "/presence/c2?count"),
        "GET /presence/c2?count",
    );
    assert_eq!(
        count,
        json!({"users": 1, "connections": 1, "seq": c2_state["seq"]}),
        "GET /presence/c2?count"
    );

    // The queries are not presence: nobody hears about them.
    assert!(alice.roundtrip_ping().is_empty(), "alice got messages");
    assert!(bob.roundtrip_ping().is_empty(), "bob got messages");

    // When the last member leaves, the channel disappears from /presence.
    bob.close();
    let presence = json_ok(&http_get(addr, "/presence"), "GET /presence after bob left");
    assert_eq!(presence["connections"], 2, "{presence}");
    assert_eq!(presence["users"], 1, "{presence}");
    assert!(
        presence["channels"].get("c2").is_none(),
        "c2 is gone: {presence}"
    );
    assert_json_error(
        &http_get(addr, "/presence/c2"),
        404,
        "not_found",
        "GET /presence/c2 after bob left",
    );
}

#[test]
fn presence_of_an_empty_server_and_channel_errors() {
    let server = Server::start(&[]);
    let addr = server.addr();

    let presence = json_ok(&http_get(addr, "/presence"), "GET /presence");
    assert_eq!(
        presence,
        json!({"connections": 0, "users": 0, "watchers": 0, "channels": {}}),
        "empty server"
    );

    for target in ["/presence/nobody", "/presence/nobody?count"] {
        assert_json_error(&http_get(addr, target), 404, "not_found", target);
    }
    let long = format!("/presence/{}", "c".repeat(201));
    for target in [
        "/presence/bad!name",
        "/presence/bad%7Cname",
        "/presence/bad!name?count",
        long.as_str(),
    ] {
        assert_json_error(&http_get(addr, target), 400, "bad_request", target);
    }
}

#[test]
fn publish_reaches_members_in_every_events_mode_and_counts_deliveries() {
    let server = Server::start(&[]);
    let addr = server.addr();

    // c1: all, count, none; `both` is in c1 and c2; `other` only in c2.
    let mut all = member(addr, "all", "c1", "all");
    let mut count = member(addr, "count", "c1", "count");
    let mut none = member(addr, "none", "c1", "none");
    let (mut both, _) = Client::connect_welcomed(addr, "user=both&channel=c1&channel=c2");
    both.expect_type("state");
    both.expect_type("state");
    let mut other = member(addr, "other", "c2", "all");
    all.wait_for(STEP, "join of `both`", |v| {
        v["type"] == "join" && v["user"] == "both"
    });

    let data = json!({"text": "hi", "n": [1, 2]});
    let delivered = publish(addr, &json!({"channel": "c1", "data": data}));
    assert_eq!(delivered, 4, "connections in c1");
    let expected = json!({"type": "message", "channel": "c1", "from": null, "data": data});
    for (name, client) in [
        ("all", &mut all),
        ("count", &mut count),
        ("none", &mut none),
        ("both", &mut both),
    ] {
        let message = next_message(client);
        assert_eq!(message, expected, "{name}'s message");
    }
    let before = other.roundtrip_ping();
    assert!(
        before.iter().all(|m| m["type"] != "message"),
        "c2 member got a c1 message: {before:?}"
    );

    // A list of channels; one of them has no members and counts 0.
    let data = json!(42);
    let delivered = publish(
        addr,
        &json!({"channels": ["c1", "c2", "empty"], "data": data}),
    );
    assert_eq!(delivered, 4 + 2, "c1 (4) + c2 (2) + empty (0)");
    for (name, client) in [
        ("all", &mut all),
        ("count", &mut count),
        ("none", &mut none),
    ] {
        let message = next_message(client);
        assert_eq!(
            message,
            json!({"type": "message", "channel": "c1", "from": null, "data": 42}),
            "{name}'s message"
        );
    }
    let message = next_message(&mut other);
    assert_eq!(
        message,
        json!({"type": "message", "channel": "c2", "from": null, "data": 42}),
        "other's message"
    );
    let mut got: Vec<Value> = vec![next_message(&mut both), next_message(&mut both)];
    got.sort_by_key(|m| m["channel"].as_str().unwrap_or_default().to_string());
    assert_eq!(
        got,
        [
            json!({"type": "message", "channel": "c1", "from": null, "data": 42}),
            json!({"type": "message", "channel": "c2", "from": null, "data": 42}),
        ],
        "a member of two channels gets one message per channel"
    );

    // `null` is valid data; a channel nobody is in is not an error.
    assert_eq!(publish(addr, &json!({"channel": "c2", "data": null})), 2);
    assert_eq!(publish(addr, &json!({"channel": "empty", "data": 1})), 0);
    assert!(
        presence_events(&all.roundtrip_ping()).is_empty(),
        "publishing is not presence"
    );
    // The publication created no channel.
    assert_json_error(
        &http_get(addr, "/presence/empty"),
        404,
        "not_found",
        "GET /presence/empty after publishing to it",
    );
}

#[test]
fn publish_errors() {
    let server = Server::start(&["--max-body-size", "1KiB"]);
    let addr = server.addr();
    let (mut member, _) = Client::join(addr, "user=m&channel=c1");

    let bad: &[(&str, &[u8])] = &[
        ("invalid JSON", b"{\"channel\":\"c1\",\"data\":"),
        ("not an object", b"[\"c1\", 1]"),
        ("missing data", br#"{"channel":"c1"}"#),
        (
            "channel and channels",
            br#"{"channel":"c1","channels":["c1"],"data":1}"#,
        ),
        ("neither channel nor channels", br#"{"data":1}"#),
        (
            "invalid channel name",
            br#"{"channel":"bad name","data":1}"#,
        ),
        ("channel not a string", br#"{"channel":7,"data":1}"#),
        ("channels not a list", br#"{"channels":"c1","data":1}"#),
        (
            "invalid name in channels",
            br#"{"channels":["c1","bad|name"],"data":1}"#,
        ),
        ("empty body", b""),
    ];
    for (what, body) in bad {
        let resp = http_post(addr, "/publish", &[], body);
        assert_json_error(&resp, 400, "bad_request", what);
    }
    // None of them was delivered, not even partly.
    let before = member.roundtrip_ping();
    assert!(
        before.iter().all(|m| m["type"] != "message"),
        "a rejected publish was delivered: {before:?}"
    );

    let resp = http_request(
        addr,
        b"POST /publish HTTP/1.1\r\nHost: a\r\n\r\n{\"channel\":\"c1\",\"data\":1}",
    );
    assert_json_error(&resp, 411, "length_required", "no Content-Length");

    // Exactly --max-body-size is fine; one byte more is 413.
    let prefix = r#"{"channel":"c1","data":""#;
    let filler = "x".repeat(1024 - prefix.len() - 2);
    let body = format!("{prefix}{filler}\"}}");
    assert_eq!(body.len(), 1024);
    let resp = http_post(addr, "/publish", &[], body.as_bytes());
    assert_eq!(json_ok(&resp, "1 KiB body")["delivered"], 1, "{resp:?}");
    member.wait_for_type("message", STEP);

    // 413 comes as soon as the head arrives: the body is never sent, and the handshake
    // timeout (10 s) is far away.
    let started = Instant::now();
    let mut stream = tcp_connect(addr);
    stream
        .write_all(b"POST /publish HTTP/1.1\r\nHost: a\r\nContent-Length: 1025\r\n\r\n")
        .expect("write the head");
    let resp = parse_http_response(&read_to_eof(&mut stream, STEP));
    assert_json_error(&resp, 413, "payload_too_large", "1025-byte body announced");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "413 only after {}ms",
        ms(started.elapsed())
    );
}

#[test]
fn unknown_paths_and_wrong_methods() {
    let server = Server::start(&[]);
    let addr = server.addr();

    for target in ["/nope", "/healthz/x", "/metricsx", "/publish/c1"] {
        let resp = http_get(addr, target);
        assert_eq!(resp.status, 404, "GET {target}: {resp:?}");
        assert_response(&resp, 404, target);
    }
    let resp = http_get(addr, "/nope");
    assert_text_error(&resp, 404, "GET /nope");

    let resp = http_get(addr, "/publish");
    assert_json_error(&resp, 405, "method_not_allowed", "GET /publish");
    assert_eq!(resp.header("allow"), Some("POST"), "GET /publish: {resp:?}");

    for (method, target, body) in [
        ("POST", "/healthz", Some(&b""[..])),
        ("POST", "/metrics", Some(&b""[..])),
        ("DELETE", "/healthz", None),
        ("POST", "/", Some(&b""[..])),
        ("POST", "/ws", Some(&b""[..])),
    ] {
        let resp = http_request(addr, &build_request(method, target, &[], body));
        let what = format!("{method} {target}");
        assert_text_error(&resp, 405, &what);
        assert_eq!(resp.header("allow"), Some("GET"), "{what}: {resp:?}");
    }
    for target in ["/presence", "/presence/c1"] {
        let resp = http_post(addr, target, &[], b"{}");
        let what = format!("POST {target}");
        assert_json_error(&resp, 405, "method_not_allowed", &what);
        assert_eq!(resp.header("allow"), Some("GET"), "{what}: {resp:?}");
    }

    // /ws without an upgrade is still 426.
    let resp = http_get(addr, "/ws");
    assert_eq!(resp.status, 426, "GET /ws: {resp:?}");
}

#[test]
fn half_sent_publish_body_gets_408_after_the_handshake_timeout() {
    let timeout = Duration::from_millis(500);
    let server = Server::start(&["--handshake-timeout", "500ms"]);
    let (mut member, _) = Client::join(server.addr(), "user=m&channel=c1");

    let started = Instant::now();
    let mut stream = tcp_connect(server.addr());
    stream
        .write_all(
            b"POST /publish HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\n\r\n{\"channel\":\"c1\",",
        )
        .expect("write the head and part of the body");
    expect_request_timeout(&mut stream, started, timeout);
    let before = member.roundtrip_ping();
    assert!(
        before.is_empty(),
        "the cut publish did something: {before:?}"
    );
}

#[test]
fn get_root_serves_the_dashboard() {
    let server = Server::start(&[]);
    let resp = http_get(server.addr(), "/");
    assert_response(&resp, 200, "GET /");
    assert!(
        resp.content_type().starts_with("text/html"),
        "GET / content type: {resp:?}"
    );
    assert!(
        resp.body.to_ascii_lowercase().contains("<html"),
        "GET / body has no <html: {}",
        &resp.body[..resp.body.len().min(300)]
    );
    // A WebSocket upgrade on / still works.
    let (_client, welcome) = Client::connect_welcomed(server.addr(), "user=alice");
    assert_eq!(welcome["user"], "alice");
}

/// `GET /rollcall.js`: the repository's client byte for byte, as JavaScript, with a strong
/// ETag that a conditional GET turns into a bodiless 304; public like `/healthz`.
#[test]
fn rollcall_js_is_served_with_an_etag_and_revalidated_with_304() {
    let server = Server::start(&["--admin-token", "s3cret", "--endpoints", "none"]);
    let addr = server.addr();
    let source = include_str!("../clients/js/rollcall.js");
    let resp = http_get(addr, "/rollcall.js");
    assert_response(&resp, 200, "GET /rollcall.js");
    assert_eq!(resp.content_type(), "text/javascript; charset=utf-8");
    assert_eq!(resp.body, source, "the body is clients/js/rollcall.js");
    assert_eq!(resp.header("Cache-Control"), Some("no-cache"), "{resp:?}");
    assert_eq!(
        resp.header("Access-Control-Allow-Origin"),
        Some("*"),
        "pages of any origin may import it: {resp:?}"
    );
    let etag = resp.header("ETag").expect("an ETag").to_owned();
    assert!(
        etag.len() > 2 && etag.starts_with('"') && etag.ends_with('"'),
        "a strong ETag is a quoted string: {etag}"
    );
    assert_eq!(
        http_get(addr, "/rollcall.js?v=1").header("ETag"),
        Some(etag.as_str()),
        "the same content, the same tag"
    );

    for current in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"x\", {etag}"),
        "*".into(),
    ] {
        let resp = http_get_with(addr, "/rollcall.js", &[("If-None-Match", &current)]);
        assert_eq!(resp.status, 304, "If-None-Match: {current}: {resp:?}");
        assert_eq!(resp.body, "", "a 304 has no body");
        assert_eq!(resp.header("Content-Length"), None, "{resp:?}");
        assert_eq!(resp.header("ETag"), Some(etag.as_str()), "{resp:?}");
        assert_eq!(resp.header("Cache-Control"), Some("no-cache"), "{resp:?}");
    }
    for stale in [
        "\"0000000000000000\"",
        etag.trim_matches('"'),
        "",
        "garbage, ,,",
    ] {
        let resp = http_get_with(addr, "/rollcall.js", &[("If-None-Match", stale)]);
        assert_eq!(resp.status, 200, "If-None-Match: {stale:?}");
        assert_eq!(resp.body, source, "If-None-Match: {stale:?}");
    }
    let post = http_post(addr, "/rollcall.js", &[], b"x");
    assert_response(&post, 405, "POST /rollcall.js");
    assert_eq!(post.header("Allow"), Some("GET"));
    assert_response(&http_get(addr, "/rollcall.jsx"), 404, "GET /rollcall.jsx");
}

/// `--endpoints` switches groups off: they answer 404 (JSON on the API paths), `/healthz`
/// and the WebSocket stay, and what is left on still works.
#[test]
fn switched_off_endpoints_answer_404_and_the_rest_still_serve() {
    let server = Server::start(&["--endpoints", "metrics"]);
    let addr = server.addr();
    for (raw, what) in [
        (
            &b"GET /presence HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            "/presence",
        ),
        (
            &b"GET /presence/lobby HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            "/presence/lobby",
        ),
        (
            &b"POST /publish HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"[..],
            "/publish",
        ),
    ] {
        let resp = http_request(addr, raw);
        assert_response(&resp, 404, what);
        assert_eq!(resp.json()["error"], "not_found", "{what}: {resp:?}");
    }
    let dashboard = http_request(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_response(&dashboard, 404, "the dashboard");
    assert_response(
        &http_request(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
        200,
        "/metrics stays on",
    );
    assert_response(
        &http_request(addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
        200,
        "/healthz is always served",
    );
    let (_client, state) = Client::join(addr, "user=alice");
    assert_eq!(state["type"], "state", "the WebSocket is always served");

    let none = Server::start(&["--endpoints", "none"]);
    let resp = http_request(none.addr(), b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_response(&resp, 404, "/metrics with --endpoints none");
}
