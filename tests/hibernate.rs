//! Idle connections sleep without tungstenite's context and wake for whatever arrives.
//!
//! `rollcall_connections_awake` says how many open connections hold a frame parser, so each
//! test can wait for the state it needs: asleep after the welcome, awake while a frame or a
//! fragmented message is incomplete, asleep again once it is whole. Frames are written by hand
//! over raw TCP so that they can stop anywhere.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const AWAKE: &str = "rollcall_connections_awake";
const WAIT: Duration = Duration::from_secs(5);

/// A raw connection for `user` in channel `room`, welcomed, given its state, and asleep.
fn asleep(server: &Server, user: &str) -> RawWs {
    let mut ws = RawWs::connect(server.addr(), &format!("/?user={user}&channel=room"));
    let welcome = text_of(ws.next_frame(WAIT).expect("welcome"));
    assert_eq!(welcome["type"], "welcome");
    next_of_type(&mut ws, "state");
    wait_metric(server.addr(), "asleep after the welcome", AWAKE, 0.0, WAIT);
    ws
}

fn text_of(frame: RawFrame) -> Value {
    assert_eq!(frame.opcode, 0x1, "a text frame: {frame:?}");
    serde_json::from_slice(&frame.payload).expect("JSON")
}

/// The next text message whose type is `ty`, skipping others (state, presence events).
fn next_of_type(ws: &mut RawWs, ty: &str) -> Value {
    loop {
        let frame = ws.next_frame(WAIT).expect("a frame");
        if frame.opcode == 0x1 {
            let message = text_of(frame);
            if message["type"] == ty {
                return message;
            }
        }
    }
}

fn update_frame(meta: &Value) -> Vec<u8> {
    let command = json!({"type": "update", "channel": "room", "meta": meta}).to_string();
    masked_frame(0x1, command.as_bytes())
}

/// A `who` for `room` carrying `reference`.
fn who_frame(reference: u64) -> Vec<u8> {
    let command = json!({"type": "who", "channel": "room", "ref": reference}).to_string();
    masked_frame(0x1, command.as_bytes())
}

/// `user`'s meta in the `state` that answers the `who` carrying `reference`.
fn meta_in_reply(ws: &mut RawWs, reference: u64, user: &str) -> Value {
    let state = loop {
        let message = next_of_type(ws, "state");
        if message["ref"] == reference {
            break message;
        }
    };
    state["users"][user]["meta"].clone()
}

#[test]
fn a_frame_split_anywhere_keeps_the_connection_awake_until_it_is_whole() {
    let server = Server::start(&[]);
    let mut ws = asleep(&server, "alice");
    // Inside the header, inside the mask, inside the payload.
    for (reference, cut) in [(1, 1), (2, 4), (3, 20)] {
        let frame = who_frame(reference);
        ws.send(&frame[..cut]);
        wait_metric(server.addr(), "awake on a partial frame", AWAKE, 1.0, WAIT);
        ws.send(&frame[cut..]);
        assert_eq!(meta_in_reply(&mut ws, reference, "alice"), json!({}));
        wait_metric(server.addr(), "asleep once it is whole", AWAKE, 0.0, WAIT);
    }
}

#[test]
fn several_frames_in_one_write_are_all_answered() {
    let server = Server::start(&[]);
    let mut ws = asleep(&server, "alice");
    let mut burst = update_frame(&json!({"n": 1}));
    burst.extend(masked_frame(0x9, b"are you there"));
    burst.extend(update_frame(&json!({"n": 2})));
    ws.send(&burst);
    assert_eq!(next_of_type(&mut ws, "update")["meta"], json!({"n": 1}));
    let pong = loop {
        let frame = ws.next_frame(WAIT).expect("the Pong");
        if frame.opcode == 0xa {
            break frame;
        }
    };
    assert_eq!(
        pong.payload, b"are you there",
        "RFC 6455 §5.5.3: the Ping's payload"
    );
    assert_eq!(next_of_type(&mut ws, "update")["meta"], json!({"n": 2}));
    wait_metric(server.addr(), "asleep after the burst", AWAKE, 0.0, WAIT);
}

#[test]
fn a_fragmented_message_with_a_ping_between_its_fragments_survives_the_pauses() {
    let server = Server::start(&[]);
    let mut ws = asleep(&server, "alice");
    let command = json!({"type": "update", "channel": "room", "meta": {"f": "ragmented"}});
    let text = command.to_string();
    let (first, rest) = text.as_bytes().split_at(10);
    let (middle, last) = rest.split_at(10);

    ws.send(&masked_fragment(false, 0x1, first));
    wait_metric(server.addr(), "awake inside a message", AWAKE, 1.0, WAIT);
    ws.send(&masked_frame(0x9, b"mid"));
    let pong = ws.next_frame(WAIT).expect("the Pong");
    assert_eq!((pong.opcode, pong.payload.as_slice()), (0xa, &b"mid"[..]));
    ws.send(&masked_fragment(false, 0x0, middle));
    // Still awake: the message is not whole (a Ping between fragments changes nothing).
    let metrics = scrape(server.addr());
    assert_eq!(metrics.get(AWAKE), 1.0);
    ws.send(&masked_fragment(true, 0x0, last));
    ws.send(&who_frame(9));
    assert_eq!(
        meta_in_reply(&mut ws, 9, "alice"),
        json!({"f": "ragmented"})
    );
    wait_metric(
        server.addr(),
        "asleep once the message is whole",
        AWAKE,
        0.0,
        WAIT,
    );
}

#[test]
fn a_close_to_a_sleeping_connection_is_answered_and_the_user_leaves() {
    let server = Server::start(&[]);
    let mut bob = asleep(&server, "bob");
    let mut alice = asleep(&server, "alice");
    next_of_type(&mut bob, "join");
    alice.send(&masked_frame(0x8, &1000u16.to_be_bytes()));
    assert_eq!(alice.expect_close_frame(WAIT), Some(1000));
    alice.expect_eof(WAIT);
    let leave = next_of_type(&mut bob, "leave");
    assert_eq!(
        (&leave["user"], &leave["reason"]),
        (&json!("alice"), &json!("closed"))
    );
}

#[test]
fn garbage_to_a_sleeping_connection_fails_only_that_connection() {
    let server = Server::start(&[]);
    let mut bob = asleep(&server, "bob");
    let mut mallory = asleep(&server, "mallory");
    next_of_type(&mut bob, "join");
    // An unmasked client frame: RFC 6455 §5.1 says fail the connection (1002).
    mallory.send(&[0x81, 0x02, b'h', b'i']);
    assert_eq!(mallory.expect_close_frame(WAIT), Some(1002));
    let leave = next_of_type(&mut bob, "leave");
    assert_eq!(
        (&leave["user"], &leave["reason"]),
        (&json!("mallory"), &json!("error"))
    );
    // bob, asleep all along, still answers.
    bob.send(&update_frame(&json!({"still": "here"})));
    assert_eq!(
        next_of_type(&mut bob, "update")["meta"],
        json!({"still": "here"})
    );
}

#[test]
fn a_sleeping_connection_is_pinged_and_its_pong_keeps_it_present() {
    let server = Server::start(&[
        "--heartbeat-interval",
        "300ms",
        "--heartbeat-timeout",
        "900ms",
    ]);
    let mut ws = asleep(&server, "alice");
    // Three timeouts' worth of heartbeats, each Ping answered from a sleeping connection.
    for _ in 0..8 {
        let ping = loop {
            let frame = ws.next_frame(WAIT).expect("a heartbeat Ping");
            if frame.opcode == 0x9 {
                break frame;
            }
        };
        ws.send(&masked_frame(0xa, &ping.payload));
    }
    let metrics = scrape(server.addr());
    assert_eq!(metrics.get("rollcall_users_online"), 1.0);
    assert_eq!(metrics.closed("timeout"), 0.0);
}
