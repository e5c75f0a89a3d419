//! Graceful shutdown on SIGTERM/SIGINT: every WebSocket gets a Close 1001, the server drains
//! (`/healthz` 503, new upgrades 503, no more presence events), and exits 0 when its peers have
//! answered or `--shutdown-timeout` has passed; a second signal exits at once with 130.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const GOING_AWAY: u16 = 1001;
const REASON: &str = "server shutting down";

/// Reads until the server's Close frame; returns it and the JSON messages before it, which
/// must contain no presence event.
#[track_caller]
fn expect_going_away(client: &mut Client, who: &str) {
    let deadline = Instant::now() + STEP;
    let mut before: Vec<Value> = Vec::new();
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match client.next(remaining) {
            Incoming::Json(v) => before.push(v),
            Incoming::Close(frame) => {
                assert_eq!(
                    frame,
                    Some((GOING_AWAY, REASON.to_string())),
                    "{who}'s Close frame"
                );
                break;
            }
            other => panic!("{who}: expected a Close frame, got {other:?}; before: {before:?}"),
        }
    }
    assert!(
        presence_events(&before).is_empty(),
        "{who} got presence events during shutdown: {before:?}"
    );
}

/// A raw WebSocket that never answers a Close, joined to `channel`; its initial messages
/// (welcome and state) are consumed.
#[track_caller]
fn silent_peer(addr: std::net::SocketAddr, user: &str, channel: &str) -> RawWs {
    let mut raw = RawWs::connect(addr, &format!("/?user={user}&channel={channel}"));
    for expected in ["welcome", "state"] {
        let frame = raw
            .next_frame(STEP)
            .unwrap_or_else(|| panic!("{user}: connection ended before {expected}"));
        assert_eq!(frame.opcode, 0x1, "{user}: {frame:?}");
        let msg: Value = serde_json::from_slice(&frame.payload).expect("JSON text frame");
        assert_eq!(msg["type"], expected, "{user}: {msg}");
    }
    raw
}

/// Sends a `ping` command on the raw peer and reads up to its `pong`, so that every message
/// queued before (such as join events) has been consumed.
#[track_caller]
fn raw_sync(raw: &mut RawWs) {
    raw.send(&masked_frame(0x1, br#"{"type":"ping","id":"sync"}"#));
    loop {
        let frame = raw
            .next_frame(STEP)
            .expect("connection ended before the pong");
        if frame.opcode == 0x1 {
            let msg: Value = serde_json::from_slice(&frame.payload).expect("JSON text frame");
            if msg["type"] == "pong" {
                return;
            }
        }
    }
}

/// Skips data frames (which must not be presence events) until the server's Close frame,
/// and checks its code and reason.
#[track_caller]
fn raw_expect_going_away(raw: &mut RawWs) {
    loop {
        let frame = raw
            .next_frame(STEP)
            .expect("connection ended without a Close frame");
        match frame.opcode {
            0x8 => {
                assert!(frame.payload.len() >= 2, "Close without a code: {frame:?}");
                let code = u16::from_be_bytes([frame.payload[0], frame.payload[1]]);
                let reason = String::from_utf8_lossy(&frame.payload[2..]);
                assert_eq!((code, reason.as_ref()), (GOING_AWAY, REASON), "raw Close");
                return;
            }
            0x1 => {
                let msg: Value = serde_json::from_slice(&frame.payload).expect("JSON text frame");
                assert!(
                    msg["type"] != "join" && msg["type"] != "leave",
                    "presence event before the Close (after the signal?): {msg}"
                );
            }
            0x9 | 0xA => {}
            other => panic!("unexpected opcode {other:#x}: {frame:?}"),
        }
    }
}

#[test]
fn sigterm_closes_every_websocket_and_exits_once_they_answer() {
    let mut server = Server::start(&["--shutdown-timeout", "10s"]);
    let addr = server.addr();
    let (mut alice, _) = Client::join(addr, "user=alice&channel=c1");
    let (mut bob, _) = Client::join(addr, "user=bob&channel=c1");
    alice.expect_type("join");

    let signalled = Instant::now();
    server.signal("TERM");
    expect_going_away(&mut alice, "alice");
    expect_going_away(&mut bob, "bob");
    // Reading on flushes tungstenite's Close reply; the server then closes TCP.
    alice.expect_closed(STEP);
    bob.expect_closed(STEP);

    let status = server.wait_exit(STEP);
    let elapsed = signalled.elapsed();
    let status = status.unwrap_or_else(|| {
        panic!(
            "still running {}ms after SIGTERM; stderr:\n{}",
            ms(elapsed),
            server.stderr()
        )
    });
    assert_eq!(
        status.code(),
        Some(0),
        "exit status; stderr:\n{}",
        server.stderr()
    );
    assert!(
        elapsed < Duration::from_secs(3),
        "exit took {}ms although every peer answered (shutdown timeout 10s)",
        ms(elapsed)
    );
}

#[test]
fn sigint_without_clients_exits_0_at_once() {
    let mut server = Server::start(&["--shutdown-timeout", "10s"]);
    let signalled = Instant::now();
    server.signal("INT");
    let status = server.wait_exit(STEP);
    let elapsed = signalled.elapsed();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exit status after SIGINT; stderr:\n{}",
        server.stderr()
    );
    assert!(
        elapsed < Duration::from_secs(3),
        "exit took {}ms with nothing to drain",
        ms(elapsed)
    );
}

#[test]
fn drain_refuses_new_work_and_ends_at_the_shutdown_timeout() {
    let timeout = Duration::from_secs(1);
    let mut server = Server::start(&["--shutdown-timeout", "1s"]);
    let addr = server.addr();
    let mut raw = silent_peer(addr, "raw", "c1");
    let (mut alice, _) = Client::join(addr, "user=alice&channel=c1");
    let (mut bob, _) = Client::join(addr, "user=bob&channel=c1");
    alice.expect_type("join");
    raw_sync(&mut raw);
    let before = scrape(addr);

    let signalled = Instant::now();
    server.signal("TERM");
    raw_expect_going_away(&mut raw);
    expect_going_away(&mut alice, "alice");
    expect_going_away(&mut bob, "bob");
    // alice answers; bob and the raw peer are still there.
    alice.expect_closed(STEP);

    let health = http_get(addr, "/healthz");
    assert_eq!(health.status, 503, "/healthz while draining: {health:?}");
    assert_eq!(health.body, "shutting down\n", "{health:?}");
    let refused = http_request(addr, upgrade_request("/?user=late&channel=c1").as_bytes());
    assert_eq!(refused.status, 503, "upgrade while draining: {refused:?}");
    assert!(
        refused
            .header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close")),
        "{refused:?}"
    );

    // Plain HTTP is still served, and tells the truth about the drain.
    let m = scrape(addr);
    assert_eq!(
        m.closed("shutdown") - before.closed("shutdown"),
        1.0,
        "alice ended with reason shutdown:\n{}",
        m.response.body
    );
    assert_eq!(m.get("rollcall_connections"), 2.0, "bob and raw remain");
    assert_eq!(
        m.get("rollcall_connections_accepted_total"),
        m.closed_sum() + m.get("rollcall_connections") + m.get("rollcall_handshakes_pending"),
        "accepted == closed + connections + pending:\n{}",
        m.response.body
    );

    bob.expect_closed(STEP);
    assert!(server.is_running(), "exited although raw never answered");

    // Nothing after the Close reaches the raw peer (no leave of alice or bob); its connection
    // ends when the process exits at the shutdown timeout.
    if let Some(frame) = raw.next_frame(timeout + Duration::from_secs(3)) {
        panic!("frame after the Close: {frame:?}");
    }
    let status = server.wait_exit(STEP);
    let elapsed = signalled.elapsed();
    let status = status.unwrap_or_else(|| {
        panic!(
            "still running {}ms after SIGTERM (shutdown timeout 1s)",
            ms(elapsed)
        )
    });
    assert_eq!(
        status.code(),
        Some(0),
        "exit status; stderr:\n{}",
        server.stderr()
    );
    assert!(
        elapsed >= timeout - Duration::from_millis(150),
        "exited after {}ms, before the 1s shutdown timeout, with a peer that never answered",
        ms(elapsed)
    );
    assert!(
        elapsed <= timeout + Duration::from_secs(2),
        "exited only after {}ms (shutdown timeout 1s)",
        ms(elapsed)
    );
}

#[test]
fn second_signal_exits_at_once_with_130() {
    let mut server = Server::start(&["--shutdown-timeout", "10s"]);
    let mut raw = silent_peer(server.addr(), "raw", "c1");

    server.signal("TERM");
    raw_expect_going_away(&mut raw);
    assert!(server.is_running(), "exited although raw never answered");

    let second = Instant::now();
    server.signal("TERM");
    let status = server.wait_exit(STEP);
    let elapsed = second.elapsed();
    let status = status
        .unwrap_or_else(|| panic!("still running {}ms after the second SIGTERM", ms(elapsed)));
    assert_eq!(status.code(), Some(130), "exit status {status}");
    assert!(
        elapsed < Duration::from_secs(2),
        "second signal took {}ms",
        ms(elapsed)
    );
}
