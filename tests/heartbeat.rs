//! Heartbeats over real sockets: a peer that never answers pings is dropped on time with reason
//! `timeout`, while a peer that keeps reading (so tungstenite answers every ping) stays.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn silent_client_is_dropped_with_timeout_while_reader_stays() {
    let interval = Duration::from_millis(300);
    let timeout = Duration::from_millis(700);
    let server = Server::start(&[
        "--heartbeat-interval",
        "300ms",
        "--heartbeat-timeout",
        "700ms",
    ]);

    let (mut observer, welcome) =
        Client::connect_welcomed(server.addr(), "user=observer&channel=c1");
    assert_eq!(
        welcome["heartbeat"]["interval_ms"], 300,
        "welcome: {welcome}"
    );
    assert_eq!(
        welcome["heartbeat"]["timeout_ms"], 700,
        "welcome: {welcome}"
    );
    observer.expect_type("state");

    // The silent client's last frame is its handshake: we never read, so never answer pings.
    let connected_at = Instant::now();
    let mut silent = Client::connect(server.addr(), "user=silent&channel=c1");
    let join = observer.expect_type("join");
    assert_eq!(join["user"], "silent");

    let (leave, skipped) = observer.wait_for_type("leave", timeout + Duration::from_secs(3));
    let elapsed = connected_at.elapsed();
    assert!(
        skipped.is_empty(),
        "unexpected messages before the leave: {skipped:?}"
    );
    assert_eq!(leave["user"], "silent", "leave: {leave}");
    assert_eq!(leave["reason"], "timeout", "leave: {leave}");
    let slack = Duration::from_secs(1).max(interval / 8);
    assert!(
        elapsed >= timeout - Duration::from_millis(100),
        "dropped after {}ms, before the {}ms timeout",
        ms(elapsed),
        ms(timeout)
    );
    assert!(
        elapsed <= timeout + slack + Duration::from_millis(500),
        "dropped only after {}ms (timeout {}ms + slack {}ms)",
        ms(elapsed),
        ms(timeout),
        ms(slack)
    );

    // The silent client's socket is closed by the server (no close handshake required).
    silent.expect_closed(STEP);

    // The observer, which only ever answered pings, outlives several timeouts.
    observer.expect_silence(timeout + Duration::from_millis(600));
    assert!(
        observer.roundtrip_ping().is_empty(),
        "observer got unexpected messages"
    );
    assert!(
        observer.pings_seen >= 2,
        "server sent only {} pings to the idle observer",
        observer.pings_seen
    );
}

#[test]
fn any_frame_counts_as_activity() {
    // A client that sends text commands but never reads (so never answers pings) stays alive.
    let server = Server::start(&[
        "--heartbeat-interval",
        "300ms",
        "--heartbeat-timeout",
        "700ms",
    ]);
    let (mut observer, _) = Client::join(server.addr(), "user=observer&channel=c1");
    let mut chatty = Client::connect(server.addr(), "user=chatty&channel=c1");
    observer.expect_type("join");

    let until = Instant::now() + Duration::from_millis(1800);
    while Instant::now() < until {
        // Proving that nothing happens for a while: the observer reads (and answers pings)
        // for 200ms at a time while chatty sends a frame each round.
        chatty.send_text("{\"type\":\"ping\",\"id\":0}");
        let got = observer.try_recv_json(Duration::from_millis(200));
        assert!(
            got.is_none(),
            "observer got {got:?} while chatty was active"
        );
    }
    assert!(presence_events(&observer.roundtrip_ping()).is_empty());
}

#[test]
fn a_message_arriving_slowly_in_fragments_counts_as_activity() {
    // The raw client never answers pings: only its fragments keep it alive.
    let server = Server::start(&[
        "--heartbeat-interval",
        "300ms",
        "--heartbeat-timeout",
        "700ms",
    ]);
    let (mut observer, _) = Client::join(server.addr(), "user=observer&channel=c1");
    let mut slow = RawWs::connect(server.addr(), "/?user=slow&channel=c1");
    observer.expect_type("join");

    let command = br#"{"type":"ping","id":7}"#;
    let pieces: Vec<&[u8]> = command.chunks(2).collect();
    let started = Instant::now();
    for (index, piece) in pieces.iter().enumerate() {
        let opcode = if index == 0 { 0x1 } else { 0x0 };
        let fin = index + 1 == pieces.len();
        slow.send(&masked_fragment(fin, opcode, piece));
        if !fin {
            // Reading the observer for a while both paces the fragments and proves that no
            // leave is announced in the meantime.
            let got = observer.try_recv_json(Duration::from_millis(150));
            assert!(
                got.is_none(),
                "observer got {got:?} while fragments arrived"
            );
        }
    }
    assert!(
        started.elapsed() > Duration::from_millis(1400),
        "the message must take two heartbeat timeouts to arrive"
    );
    // Before the pong: the welcome and the state sent at connect.
    let pong = loop {
        let frame = slow.next_frame(STEP).expect("slow client still connected");
        if frame.opcode != 0x1 {
            continue;
        }
        let message: serde_json::Value = serde_json::from_slice(&frame.payload).expect("JSON");
        if message["type"] == "pong" {
            break message;
        }
    };
    assert_eq!(pong, serde_json::json!({"type": "pong", "id": 7}));
    assert!(presence_events(&observer.roundtrip_ping()).is_empty());
}

#[test]
fn an_answering_client_is_pinged_every_interval_even_with_a_long_timeout() {
    let server = Server::start(&["--heartbeat-interval", "200ms", "--heartbeat-timeout", "5s"]);
    let (mut client, _) = Client::join(server.addr(), "user=steady&channel=c1");
    // Reading answers each Ping at once, so each answer starts a new 200 ms silence.
    client.expect_silence(Duration::from_millis(1500));
    assert!(
        client.pings_seen >= 4,
        "only {} pings in 1.5 s at a 200 ms interval",
        client.pings_seen
    );
}
