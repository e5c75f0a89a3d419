//! The HTTP side of the server over raw TCP: error responses before the upgrade, the
//! handshake timeout, and a first WebSocket frame pipelined behind the upgrade request.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Checks what every error response shares: the status, `Connection: close`, and (because
/// `http_request` reads to EOF) that the server closed the socket.
#[track_caller]
fn assert_error(resp: &HttpResponse, status: u16, what: &str) {
    assert_eq!(resp.status, status, "{what}: got {resp:?}");
    let connection = resp.header("connection").unwrap_or_default();
    assert!(
        connection.eq_ignore_ascii_case("close"),
        "{what}: no `Connection: close` in {resp:?}"
    );
}

#[test]
fn plain_http_requests_get_the_right_errors() {
    let server = Server::start(&[]);
    let addr = server.addr();

    // `GET /` without an upgrade is the dashboard (tests/endpoints.rs); `/ws` only upgrades.
    let resp = http_request(addr, b"GET /ws HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_error(&resp, 426, "GET /ws without upgrade");

    let resp = http_request(addr, b"GET /nope HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_error(&resp, 404, "GET /nope");
    let resp = http_request(addr, upgrade_request("/nope?user=alice").as_bytes());
    assert_error(&resp, 404, "upgrade on /nope");

    let resp = http_request(
        addr,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
    );
    assert_error(&resp, 405, "POST /");
    assert_eq!(resp.header("allow"), Some("GET"), "POST /: {resp:?}");

    let resp = http_request(
        addr,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n",
    );
    assert_error(&resp, 400, "garbage bytes");
}

#[test]
fn invalid_query_parameters_get_400_naming_the_problem() {
    let server = Server::start(&[]);
    let addr = server.addr();
    let long_user = format!("/?user={}", "a".repeat(129));
    let cases = [
        ("/?user=bad%0Dname", "user"),
        ("/?user=", "user"),
        (long_user.as_str(), "user"),
        ("/?user=a&user=b", "user"),
        ("/?user=alice&channel=bad%7Cchannel", "channel"),
        ("/?user=alice&channel=", "channel"),
        ("/?user=alice&events=bogus", "events"),
    ];
    for (target, word) in cases {
        let resp = http_request(addr, upgrade_request(target).as_bytes());
        assert_error(&resp, 400, target);
        assert!(
            resp.body.to_ascii_lowercase().contains(word),
            "{target}: the 400 body should mention `{word}`: {resp:?}"
        );
        let content_type = resp.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("text/plain"),
            "{target}: content type {content_type:?}"
        );
    }

    // Unknown parameters are ignored: this one upgrades.
    let mut stream = tcp_connect(addr);
    stream
        .write_all(upgrade_request("/?user=alice&color=blue").as_bytes())
        .expect("write");
    let mut buf = [0u8; 12];
    stream.read_exact(&mut buf).expect("read the status line");
    assert_eq!(
        &buf,
        b"HTTP/1.1 101",
        "unknown parameter: {:?}",
        String::from_utf8_lossy(&buf)
    );
}

#[test]
fn wrong_websocket_version_gets_426_and_missing_key_400() {
    let server = Server::start(&[]);
    let resp = http_request(
        server.addr(),
        upgrade_request_with_version("/?user=alice", "8").as_bytes(),
    );
    assert_error(&resp, 426, "Sec-WebSocket-Version: 8");
    assert_eq!(resp.header("sec-websocket-version"), Some("13"), "{resp:?}");

    let no_key = upgrade_request("/?user=alice")
        .replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "");
    let resp = http_request(server.addr(), no_key.as_bytes());
    assert_error(&resp, 400, "upgrade without a key");
}

#[test]
fn oversized_request_head_gets_431() {
    let server = Server::start(&[]);
    let request = format!(
        "GET /?user=alice HTTP/1.1\r\nHost: a\r\nX-Filler: {}\r\n\r\n",
        "x".repeat(9 * 1024)
    );
    let mut stream = tcp_connect(server.addr());
    // The server may close before reading all of it; a failed write is fine.
    let _ = stream.write_all(request.as_bytes());
    let resp = parse_http_response(&read_to_eof(&mut stream, STEP));
    assert_error(&resp, 431, "9 KiB request head");
}

#[test]
fn half_sent_handshake_gets_408_after_the_handshake_timeout() {
    let timeout = Duration::from_millis(500);
    let server = Server::start(&["--handshake-timeout", "500ms"]);
    let started = Instant::now();
    let mut stream = tcp_connect(server.addr());
    stream
        .write_all(b"GET /?user=x HTTP/1.1\r\nHost: a\r\n")
        .expect("write half a request");
    expect_request_timeout(&mut stream, started, timeout);
}

#[test]
fn first_frame_pipelined_with_the_upgrade_is_kept() {
    let server = Server::start(&[]);
    let mut stream = tcp_connect(server.addr());
    let mut bytes = upgrade_request("/?user=alice&channel=c1").into_bytes();
    bytes.extend(masked_frame(0x1, br#"{"type":"ping","id":"pipelined"}"#));
    stream
        .write_all(&bytes)
        .expect("write request and frame at once");

    let deadline = Instant::now() + STEP;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut read_more = |buf: &mut Vec<u8>| {
        let remaining = deadline.saturating_duration_since(Instant::now());
        assert!(
            !remaining.is_zero(),
            "no pong within {}ms; got {:?}",
            ms(STEP),
            String::from_utf8_lossy(buf)
        );
        stream
            .set_read_timeout(Some(remaining))
            .expect("set read timeout");
        match stream.read(&mut chunk) {
            Ok(0) => panic!(
                "server closed the connection; got {:?}",
                String::from_utf8_lossy(buf)
            ),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("read failed ({e}); got {:?}", String::from_utf8_lossy(buf)),
        }
    };

    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        read_more(&mut buf);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    assert!(
        head.starts_with("HTTP/1.1 101"),
        "upgrade response: {head:?}"
    );
    buf.drain(..head_end);

    let mut seen: Vec<Value> = Vec::new();
    loop {
        match parse_frame(&buf) {
            Some((frame, used)) => {
                buf.drain(..used);
                assert!(frame.fin, "unexpected fragmented frame {frame:?}");
                match frame.opcode {
                    0x1 => {
                        let msg: Value =
                            serde_json::from_slice(&frame.payload).expect("text frame is JSON");
                        if msg["type"] == "pong" {
                            assert_eq!(msg["id"], "pipelined", "{msg}");
                            break;
                        }
                        seen.push(msg);
                    }
                    0x9 | 0xA => {}
                    other => panic!("unexpected frame opcode {other:#x}: {frame:?}; seen {seen:?}"),
                }
            }
            None => read_more(&mut buf),
        }
    }
    let types: Vec<&Value> = seen.iter().map(|m| &m["type"]).collect();
    assert_eq!(
        types,
        ["welcome", "state"],
        "messages before the pong: {seen:?}"
    );
}

#[test]
fn connections_over_the_limit_get_503_and_the_others_keep_working() {
    let server = Server::start(&["--max-connections", "2"]);
    let (mut first, _) = Client::join(server.addr(), "user=first&channel=c1");
    let (mut second, _) = Client::join(server.addr(), "user=second&channel=c1");
    first.expect_type("join");

    let refused = http_request(server.addr(), upgrade_request("/?user=third").as_bytes());
    assert_error(&refused, 503, "over the limit");
    assert!(refused.body.contains("limit"), "{refused:?}");

    assert!(
        presence_events(&first.roundtrip_ping()).is_empty(),
        "the refusal is not presence"
    );
    first.close();
    // Once the leave is announced the slot is free.
    let (leave, _) = second.wait_for_type("leave", STEP);
    assert_eq!(leave["user"], "first");
    let (_third, state) = Client::join(server.addr(), "user=third&channel=c1");
    let mut users = user_names(&state);
    users.sort();
    assert_eq!(
        users,
        vec!["second", "third"],
        "a freed slot admits the next"
    );
}
