//! A bound on the server's memory per idle connection, so that a regression to an eager
//! buffer (tungstenite's default 128 KiB, a parser context kept by idle connections, or a
//! per-connection allocation that grows) fails CI. The precise figure is measured by the load
//! tool, not asserted here: the bound leaves room for a debug build and allocator noise.

mod common;

use common::*;

/// Connections the test opens: enough that per-connection costs dwarf allocator noise.
const CONNECTIONS: usize = 2_000;

/// What each may add to the server's resident memory. The design is about 400 bytes; before
/// idle connections slept it was about 900.
const BOUND_BYTES: u64 = 1024;

#[test]
fn two_thousand_idle_connections_cost_less_than_1_kib_each() {
    // A short heartbeat, so that every connection has been pinged and has answered.
    let server = Server::start(&[
        "--heartbeat-interval",
        "300ms",
        "--heartbeat-timeout",
        "10s",
    ]);
    let before = resident_bytes(server.pid());
    let mut clients: Vec<RawWs> = (0..CONNECTIONS)
        .map(|index| {
            RawWs::connect(
                server.addr(),
                &format!("/?user=u{index}&events=none&channel=big"),
            )
        })
        .collect();
    for client in &mut clients {
        answer_one_ping(client);
    }
    // A request served after the pongs were sent: the loop has caught up with them.
    let presence = http_get(server.addr(), "/presence/big?count").json();
    assert_eq!(
        presence["users"], CONNECTIONS,
        "every connection is present: {presence}"
    );
    let after = resident_bytes(server.pid());
    let per_connection = after.saturating_sub(before) / CONNECTIONS as u64;
    eprintln!("{CONNECTIONS} idle connections: {per_connection} bytes each");
    assert!(
        per_connection < BOUND_BYTES,
        "{CONNECTIONS} idle connections grew the server from {before} to {after} bytes: \
         {per_connection} bytes each (bound {BOUND_BYTES})"
    );
}

/// Reads until the server's Ping arrives and answers it with a masked Pong (RFC 6455
/// §5.5.3: same payload).
#[track_caller]
fn answer_one_ping(client: &mut RawWs) {
    loop {
        let frame = client
            .next_frame(STEP)
            .expect("the server pings within the heartbeat interval");
        if frame.opcode == 0x9 {
            client.send(&masked_frame(0xA, &frame.payload));
            return;
        }
    }
}
