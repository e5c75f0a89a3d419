//! `/metrics` tells the truth: each test makes known traffic and compares the values (or their
//! growth between two scrapes) with what it did.
//!
//! Every scrape is itself an accepted connection: while being served it is the one pending
//! handshake, and once served it counts in `closed_total{reason="http"}`.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::json;

const CONNECTIONS: &str = "rollcall_connections";
const PENDING: &str = "rollcall_handshakes_pending";
const USERS: &str = "rollcall_users_online";
const CHANNELS: &str = "rollcall_channels";
const ACCEPTED: &str = "rollcall_connections_accepted_total";
const PINGS: &str = "rollcall_heartbeat_pings_sent_total";
const RECEIVED: &str = "rollcall_messages_received_total";
const SENT: &str = "rollcall_messages_sent_total";
const BYTES_IN: &str = "rollcall_bytes_received_total";
const BYTES_OUT: &str = "rollcall_bytes_sent_total";

/// The gauges that describe who is connected.
#[track_caller]
fn assert_gauges(m: &Metrics, connections: f64, users: f64, channels: f64, when: &str) {
    assert_eq!(
        (m.get(CONNECTIONS), m.get(USERS), m.get(CHANNELS)),
        (connections, users, channels),
        "{when}: (connections, users_online, channels) in:\n{}",
        m.response.body
    );
    assert_eq!(
        m.get(PENDING),
        1.0,
        "{when}: the scrape itself is the only pending handshake"
    );
}

/// accepted == sum(closed) + connections + pending, when nothing lingers.
#[track_caller]
fn assert_balance(m: &Metrics, when: &str) {
    assert_eq!(
        m.get(ACCEPTED),
        m.closed_sum() + m.get(CONNECTIONS) + m.get(PENDING),
        "{when}: accepted_total == sum(closed_total) + connections + handshakes_pending in:\n{}",
        m.response.body
    );
}

/// `after - before` for one series.
#[track_caller]
fn delta(before: &Metrics, after: &Metrics, series: &str) -> f64 {
    after.get(series) - before.get(series)
}

/// `after - before` of `closed_total{reason}`.
#[track_caller]
fn closed_delta(before: &Metrics, after: &Metrics, reason: &str) -> f64 {
    after.closed(reason) - before.closed(reason)
}

#[test]
fn gauges_follow_connections_users_and_channels() {
    let server = Server::start(&[]);
    let addr = server.addr();

    let m = scrape(addr);
    assert_gauges(&m, 0.0, 0.0, 0.0, "empty server");
    assert_balance(&m, "empty server");

    let (mut alice, _) = Client::connect_welcomed(addr, "user=alice&channel=c1&channel=c2");
    alice.expect_type("state");
    alice.expect_type("state");
    let (alice_tab2, _) = Client::join(addr, "user=alice&channel=c1");
    let (bob, _) = Client::join(addr, "user=bob&channel=c1");
    let m = scrape(addr);
    assert_gauges(&m, 3.0, 2.0, 2.0, "alice (2 tabs, c1+c2) and bob (c1)");
    assert_balance(&m, "three clients");

    // A third channel through a command.
    alice.send_json(&json!({"type": "join", "channel": "c3"}));
    alice.wait_for_type("state", STEP);
    let m = scrape(addr);
    assert_gauges(&m, 3.0, 2.0, 3.0, "alice joined c3");

    // Leaving the only channel membership of c3 deletes it; the connection stays.
    alice.send_json(&json!({"type": "leave", "channel": "c3"}));
    alice.roundtrip_ping();
    let m = scrape(addr);
    assert_gauges(&m, 3.0, 2.0, 2.0, "alice left c3");

    bob.close();
    let m = scrape(addr);
    assert_gauges(&m, 2.0, 1.0, 2.0, "bob closed");
    assert_balance(&m, "bob closed");

    alice_tab2.close();
    let m = scrape(addr);
    assert_gauges(&m, 1.0, 1.0, 2.0, "alice's second tab closed");

    alice.close();
    let m = scrape(addr);
    assert_gauges(&m, 0.0, 0.0, 0.0, "everyone left");
    assert_balance(&m, "everyone left");
    assert_eq!(m.closed("closed"), 3.0, "three clients sent a Close");
}

#[test]
fn accepted_total_counts_every_connection_once() {
    let server = Server::start(&[]);
    let addr = server.addr();

    let before = scrape(addr);
    let (_a, _) = Client::join(addr, "user=a");
    let (_b, _) = Client::join(addr, "user=b");
    let c = Client::connect(addr, "user=c");
    c.close();
    let health = http_get(addr, "/healthz");
    assert_eq!(health.status, 200, "{health:?}");
    let not_found = http_get(addr, "/nope");
    assert_eq!(not_found.status, 404, "{not_found:?}");
    let after = scrape(addr);

    // 3 WebSockets + 2 plain requests + the second scrape.
    assert_eq!(
        delta(&before, &after, ACCEPTED),
        6.0,
        "accepted_total growth"
    );
    // The first scrape and /healthz were served; /nope was refused; c closed.
    assert_eq!(closed_delta(&before, &after, "http"), 2.0, "closed{{http}}");
    assert_eq!(
        closed_delta(&before, &after, "refused"),
        1.0,
        "closed{{refused}}"
    );
    assert_eq!(
        closed_delta(&before, &after, "closed"),
        1.0,
        "closed{{closed}}"
    );
    assert_eq!(after.get(CONNECTIONS), 2.0);
    assert_eq!(after.get(PENDING), 1.0);
    assert_balance(&after, "after the traffic");
}

#[test]
fn closed_total_counts_each_reason() {
    let server = Server::start(&[
        "--heartbeat-interval",
        "200ms",
        "--heartbeat-timeout",
        "500ms",
        "--max-message-size",
        "1KiB",
    ]);
    let addr = server.addr();
    let (mut observer, _) = Client::join(addr, "user=observer&channel=c1");
    let before = scrape(addr);

    // closed: a client Close.
    let (closer, _) = Client::join(addr, "user=closer&channel=c1");
    closer.close();
    let (leave, _) = observer.wait_for(STEP, "leave of closer", |v| {
        v["type"] == "leave" && v["user"] == "closer"
    });
    assert_eq!(leave["reason"], "closed", "{leave}");

    // error: a message over --max-message-size.
    let (mut big, _) = Client::join(addr, "user=big&channel=c1");
    big.send_text(&format!("\"{}\"", "x".repeat(2048)));
    let close = big.expect_closed(STEP);
    assert_eq!(close.map(|c| c.0), Some(1009), "oversized message");
    let (leave, _) = observer.wait_for(STEP, "leave of big", |v| {
        v["type"] == "leave" && v["user"] == "big"
    });
    assert_eq!(leave["reason"], "error", "{leave}");

    // timeout: a client that never reads, so never answers the server's pings.
    let _silent = Client::connect(addr, "user=silent&channel=c1");
    let (leave, _) = observer.wait_for(STEP, "leave of silent", |v| {
        v["type"] == "leave" && v["user"] == "silent"
    });
    assert_eq!(leave["reason"], "timeout", "{leave}");

    // refused: an HTTP error response.
    let resp = http_get(addr, "/nope");
    assert_eq!(resp.status, 404, "{resp:?}");

    // `left` never ends a connection.
    observer.send_json(&json!({"type": "leave", "channel": "c1"}));
    observer.send_json(&json!({"type": "join", "channel": "c1"}));
    observer.expect_type("state");

    let after = scrape(addr);
    let expected = [
        ("closed", 1.0),
        ("timeout", 1.0),
        ("error", 1.0),
        ("slow_consumer", 0.0),
        ("shutdown", 0.0),
        ("left", 0.0),
        ("refused", 1.0),
        ("http", 1.0),
    ];
    for (reason, growth) in expected {
        assert_eq!(
            closed_delta(&before, &after, reason),
            growth,
            "closed_total{{reason={reason:?}}} growth; after:\n{}",
            after.response.body
        );
    }
    assert_eq!(after.closed("left"), 0.0);
    assert_eq!(CLOSE_REASONS.len(), expected.len());
    assert_eq!(after.get(CONNECTIONS), 1.0, "only the observer is left");
    assert_balance(&after, "after the endings");
}

#[test]
fn heartbeat_pings_are_counted() {
    let server = Server::start(&[
        "--heartbeat-interval",
        "200ms",
        "--heartbeat-timeout",
        "400ms",
    ]);
    let addr = server.addr();
    let before = scrape(addr);
    assert_eq!(before.get(PINGS), 0.0, "no WebSocket yet, no ping");

    // timeout = 2 x interval: the server then pings every interval of silence (a longer
    // timeout spaces the pings out, see the report).
    let (mut client, _) = Client::join(addr, "user=idle");
    // Reading answers each ping (`next` returns only for data, Close or the end, so read in
    // short slices); wait, bounded, until three have arrived.
    let deadline = Instant::now() + STEP;
    while client.pings_seen < 3 {
        assert!(
            Instant::now() < deadline,
            "only {} pings within {}ms at a 200ms interval",
            client.pings_seen,
            ms(STEP)
        );
        match client.next(Duration::from_millis(20)) {
            Incoming::Timeout => {}
            Incoming::Json(v) => panic!("unexpected message {v}"),
            other => panic!("connection ended: {other:?}"),
        }
    }
    let seen = f64::from(client.pings_seen);
    let after = scrape(addr);
    let sent = after.get(PINGS);
    // The server may have sent one more while we scraped (not yet read).
    assert!(
        sent >= seen && sent <= seen + 2.0,
        "pings_sent_total {sent}, client saw {seen}"
    );
}

#[test]
fn message_counters_match_what_one_client_sent_and_received() {
    let server = Server::start(&[]);
    let addr = server.addr();
    let before = scrape(addr);

    // Received by the client: welcome, state.
    let (mut client, _) = Client::join(addr, "user=solo&channel=c1");
    // Six data messages; each gets exactly one reply.
    client.send_text("not json");
    assert_eq!(client.expect_type("error")["code"], "bad_request");
    client.send_binary(b"\x01\x02");
    assert_eq!(client.expect_type("error")["code"], "bad_request");
    client.send_json(&json!({"type": "who", "channel": "c1"}));
    client.expect_type("state");
    client.send_json(&json!({"type": "bogus"}));
    assert_eq!(client.expect_type("error")["code"], "unknown_type");
    for _ in 0..2 {
        assert!(client.roundtrip_ping().is_empty());
    }
    let after = scrape(addr);

    assert_eq!(
        delta(&before, &after, RECEIVED),
        6.0,
        "messages_received_total growth (6 commands sent)"
    );
    assert_eq!(
        delta(&before, &after, SENT),
        2.0 + 6.0,
        "messages_sent_total growth (welcome + state + 6 replies)"
    );

    // The leave of a lone member goes to nobody; a publish to nobody sends nothing.
    client.send_json(&json!({"type": "leave", "channel": "c1"}));
    assert!(client.roundtrip_ping().is_empty());
    let last = scrape(addr);
    assert_eq!(delta(&after, &last, RECEIVED), 2.0, "leave + ping");
    assert_eq!(delta(&after, &last, SENT), 1.0, "the pong");
}

#[test]
fn byte_counters_match_plain_http_traffic() {
    let server = Server::start(&[]);
    let addr = server.addr();

    let scrape_request = build_request("GET", "/metrics", &[], None);
    let before = scrape(addr);
    let first_response_len = before.response.head.len() + 4 + before.response.body.len();

    let request = build_request("GET", "/healthz", &[("X-Padding", "0123456789")], None);
    let mut stream = tcp_connect(addr);
    std::io::Write::write_all(&mut stream, &request).expect("write the request");
    let response = read_to_eof(&mut stream, STEP);
    assert!(
        String::from_utf8_lossy(&response).starts_with("HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&response)
    );

    let after = scrape(addr);
    // In: the /healthz request and the second scrape's request.
    assert_eq!(
        delta(&before, &after, BYTES_IN),
        (request.len() + scrape_request.len()) as f64,
        "bytes_received_total growth"
    );
    // Out: the first scrape's response (written after it was rendered) and /healthz's.
    assert_eq!(
        delta(&before, &after, BYTES_OUT),
        (first_response_len + response.len()) as f64,
        "bytes_sent_total growth"
    );

    // WebSocket traffic grows both.
    let (mut client, _) = Client::join(addr, "user=bytes");
    client.send_text(&format!(
        "{{\"type\":\"ping\",\"id\":\"{}\"}}",
        "p".repeat(500)
    ));
    client.expect_type("pong");
    let last = scrape(addr);
    assert!(
        delta(&after, &last, BYTES_IN) > 500.0 + scrape_request.len() as f64,
        "bytes_received_total grew by {} only",
        delta(&after, &last, BYTES_IN)
    );
    assert!(
        delta(&after, &last, BYTES_OUT) > 500.0 + after.response.body.len() as f64,
        "bytes_sent_total grew by {} only",
        delta(&after, &last, BYTES_OUT)
    );
}

#[test]
fn process_gauges_are_plausible() {
    let server = Server::start(&[]);
    let m = scrape(server.addr());
    let rss = m.get("rollcall_resident_memory_bytes");
    assert!(
        rss > 1_000_000.0 && rss < 1e10,
        "resident memory {rss} bytes"
    );
    let start = m.get("rollcall_process_start_time_seconds");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64();
    assert!(
        (now - start).abs() < Duration::from_secs(60).as_secs_f64(),
        "start time {start} vs now {now}"
    );
    assert!(start <= now + 1.0, "start time {start} is in the future");
}
