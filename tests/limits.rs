//! Limits and hostile input: each test shows the protection working and would fail without
//! it. Every ending hits only the offending connection; the server keeps serving the others.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use serde_json::json;

/// A second client that must be unaffected, and that sees the offender's `leave`.
#[track_caller]
fn observer(server: &Server) -> Client {
    Client::join(server.addr(), "user=observer&channel=c1").0
}

#[test]
fn commands_over_the_rate_limit_are_refused_then_a_flooder_is_closed_with_1008() {
    // One token a second: no token comes back within the test's few milliseconds.
    let server = Server::start(&["--rate-limit", "1/s:5"]);
    let mut observer = observer(&server);
    let (mut flooder, _) = Client::join(server.addr(), "user=flooder&channel=c1");
    observer.expect_type("join");

    for id in 0..5 {
        flooder.send_json(&json!({"type": "ping", "id": id}));
        assert_eq!(flooder.expect_type("pong")["id"], id, "within the burst");
    }
    for _ in 0..5 {
        flooder.send_json(&json!({"type": "ping", "id": "over"}));
        let error = flooder.expect_type("error");
        assert_eq!(error["code"], "rate_limited", "{error}");
    }
    flooder.send_json(&json!({"type": "ping", "id": "flood"}));
    let close = flooder.expect_closed(STEP);
    assert_eq!(close.map(|(code, _)| code), Some(1008), "policy violation");
    let (leave, _) = observer.wait_for_type("leave", STEP);
    assert_eq!(
        (leave["user"].as_str(), leave["reason"].as_str()),
        (Some("flooder"), Some("error"))
    );
    assert!(
        presence_events(&observer.roundtrip_ping()).is_empty(),
        "the observer is untouched"
    );
}

#[test]
fn without_a_rate_limit_a_burst_of_commands_is_all_answered() {
    let server = Server::start(&["--rate-limit", "off"]);
    let (mut client, _) = Client::join(server.addr(), "user=busy&channel=c1");
    for id in 0..500 {
        client.send_json(&json!({"type": "ping", "id": id}));
    }
    for id in 0..500 {
        assert_eq!(client.expect_type("pong")["id"], id);
    }
}

#[test]
fn channels_per_connection_are_capped_in_the_url_and_by_command() {
    let server = Server::start(&["--max-channels-per-conn", "2"]);
    let refused = upgrade_attempt(
        server.addr(),
        upgrade_request("/?user=u&channel=a&channel=b&channel=c").as_bytes(),
    );
    assert_eq!(refused.status, 400, "{refused:?}");
    assert!(refused.body.contains("at most 2 channels"), "{refused:?}");

    let (mut client, _) = Client::connect_welcomed(server.addr(), "user=u&channel=a&channel=b");
    client.expect_type("state");
    client.expect_type("state");
    client.send_json(&json!({"type": "join", "channel": "c", "ref": 1}));
    let error = client.expect_type("error");
    assert_eq!(
        (error["code"].as_str(), &error["ref"]),
        (Some("too_large"), &json!(1)),
        "{error}"
    );
    client.send_json(&json!({"type": "join", "channel": "a", "ref": 2}));
    assert_eq!(
        client.expect_type("state")["ref"],
        2,
        "joining a joined channel again is fine"
    );
    client.send_json(&json!({"type": "leave", "channel": "b"}));
    client.send_json(&json!({"type": "join", "channel": "c", "ref": 3}));
    assert_eq!(
        client.expect_type("state")["ref"],
        3,
        "a freed place can be used"
    );
}

#[test]
fn a_full_channel_refuses_new_members_but_not_their_second_tab() {
    let server = Server::start(&["--max-members-per-channel", "2"]);
    let mut observer = observer(&server);
    let (_bob, _) = Client::join(server.addr(), "user=bob&channel=c1");
    observer.expect_type("join");

    let (mut carol, _) = Client::connect_welcomed(server.addr(), "user=carol&channel=c1");
    let error = carol.expect_type("error");
    assert_eq!(error["code"], "too_large", "{error}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("full")),
        "{error}"
    );
    let (_second_tab, state) = Client::join(server.addr(), "user=bob&channel=c1");
    assert_eq!(
        users_of(&state)["bob"]["conns"],
        2,
        "a member's second tab is no new member"
    );
    assert!(
        presence_events(&observer.roundtrip_ping()).is_empty(),
        "carol never joined"
    );
}

/// Half an upgrade request: a peer that keeps its handshake pending.
const HALF_REQUEST: &[u8] = b"GET /?user=slow HTTP/1.1\r\nHost: a\r\n";

/// A connection that sent a whole upgrade request for `target`.
fn requesting(addr: std::net::SocketAddr, target: &str) -> TcpStream {
    let mut stream = tcp_connect(addr);
    stream
        .write_all(upgrade_request(target).as_bytes())
        .expect("request");
    stream
}

/// `count` connections that each sent half an upgrade request and stay silent.
fn half_requests(addr: std::net::SocketAddr, count: usize) -> Vec<TcpStream> {
    (0..count)
        .map(|_| {
            let mut stream = tcp_connect(addr);
            stream.write_all(HALF_REQUEST).expect("half a request");
            stream
        })
        .collect()
}

/// True once `stream` has its `101`, within `wait`.
fn got_101(stream: &mut TcpStream, wait: Duration) -> bool {
    stream.set_read_timeout(Some(wait)).expect("timeout");
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && &head == b"HTTP/1.1 101"
}

/// A request that is not whole when its connection is accepted puts a handshake deadline on
/// the wheel; the connection takes it out when it opens and keeps one timer, its heartbeat
/// (an idle crowd that arrived at once otherwise held two until the deadline passed).
#[test]
fn a_connection_that_opened_keeps_no_handshake_deadline() {
    const CONNS: usize = 50;
    const FIRST: usize = 4;
    let server = Server::start(&[]);
    let requests: Vec<String> = (0..CONNS)
        .map(|i| upgrade_request(&format!("/?user=u{i}&channel=c")))
        .collect();
    // The kernel hands over a connection once bytes arrived (TCP_DEFER_ACCEPT): each sends
    // the start of its request, so each is accepted with it incomplete and gets a deadline.
    // A scrape may leave a deadline and a linger entry of its own: they are counted.
    let mut streams: Vec<TcpStream> = requests
        .iter()
        .map(|request| {
            let mut stream = tcp_connect(server.addr());
            stream
                .write_all(&request.as_bytes()[..FIRST])
                .expect("start");
            stream
        })
        .collect();
    let started = std::time::Instant::now();
    let mut scrapes = 1;
    while scrape(server.addr()).get("rollcall_handshakes_pending") < CONNS as f64 {
        assert!(
            started.elapsed() < STEP,
            "the connections were not all accepted"
        );
        scrapes += 1;
    }
    for (stream, request) in streams.iter_mut().zip(&requests) {
        stream
            .write_all(&request.as_bytes()[FIRST..])
            .expect("the rest");
    }
    for stream in &mut streams {
        assert!(got_101(stream, STEP), "upgraded");
    }
    let timers = scrape(server.addr()).get("rollcall_timers");
    let most = CONNS + 2 * scrapes + 1;
    assert!(most < 2 * CONNS, "{scrapes} scrapes: too many to tell");
    assert!(
        timers <= most as f64,
        "{timers} timers for {CONNS} open connections after {scrapes} scrapes"
    );
    assert!(timers >= CONNS as f64, "a heartbeat each: {timers}");
}

/// A connection that has sent nothing stays with the kernel (TCP_DEFER_ACCEPT) and takes no
/// handshake slot: a browser's speculative preconnect, or a port scan, does not make a real
/// client wait. Without the option the silent one holds the only slot for half of a minute.
#[test]
fn a_connection_that_has_sent_nothing_takes_no_handshake_slot() {
    let server = Server::start(&[
        "--max-pending-handshakes",
        "1",
        "--handshake-timeout",
        "60s",
    ]);
    let _silent = tcp_connect(server.addr());
    let mut client = requesting(server.addr(), "/?user=client");
    assert!(
        got_101(&mut client, STEP),
        "the client got in while the silent connection waits in the kernel"
    );
}

/// The kernel hands a silent connection over once its deferral ends (about a second: one
/// SYN-ACK retransmission), and the handshake timeout ends it as before.
#[test]
fn a_connection_that_sends_nothing_is_still_ended_by_the_handshake_timeout() {
    let server = Server::start(&["--handshake-timeout", "300ms"]);
    let mut silent = tcp_connect(server.addr());
    let started = std::time::Instant::now();
    let answer = read_to_eof(&mut silent, 2 * STEP);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "ended after {:?}, before its handshake timeout",
        started.elapsed()
    );
    assert_eq!(parse_http_response(&answer).status, 408, "{answer:?}");
}

#[test]
fn at_the_pending_limit_accepting_pauses_without_spinning_and_resumes_without_refusing() {
    let server = Server::start(&[
        "--max-pending-handshakes",
        "2",
        "--handshake-timeout",
        "60s",
    ]);
    let mut slow = half_requests(server.addr(), 2);
    // The kernel queues connections in order: both half requests are pending before the
    // next connection could be accepted.
    let mut waiting = requesting(server.addr(), "/?user=third");
    assert!(
        !got_101(&mut waiting, Duration::from_millis(300)),
        "the third connection waits in the backlog: no 503, no 101 yet"
    );
    let cpu_before = cpu_ticks(server.pid());
    std::thread::sleep(Duration::from_secs(1));
    let spent = cpu_ticks(server.pid()) - cpu_before;
    assert!(
        spent <= 20,
        "the server used {spent} ticks of CPU in a second while paused"
    );

    // Finishing one of them makes room: the waiting one is admitted, and so is the next.
    let rest = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    slow[0]
        .write_all(rest.as_bytes())
        .expect("the rest of the request");
    assert!(got_101(&mut slow[0], STEP), "the finished request");
    assert!(got_101(&mut waiting, STEP), "the waiting connection got in");
    let (_client, _) = Client::connect_welcomed(server.addr(), "user=fourth");
    let metrics = scrape(server.addr());
    assert_eq!(metrics.closed("refused"), 0.0, "nobody was refused");
    assert!(
        metrics.get("rollcall_accept_paused_seconds_total") > 0.0,
        "the pause was counted"
    );
    assert_eq!(
        metrics.get("rollcall_listen_queue"),
        0.0,
        "the backlog is drained"
    );
}

#[test]
fn while_accepting_is_paused_a_slow_loris_is_cut_before_its_handshake_timeout() {
    // While paused, a request may take half the handshake timeout (2 s here): the cut comes
    // from the pause, before the handshake timeout would end the slow peer anyway.
    let server = Server::start(&["--max-pending-handshakes", "2", "--handshake-timeout", "4s"]);
    let mut slow = half_requests(server.addr(), 2);
    let mut clients: Vec<TcpStream> = (0..3)
        .map(|index| requesting(server.addr(), &format!("/?user=u{index}")))
        .collect();
    for (index, stream) in clients.iter_mut().enumerate() {
        assert!(
            got_101(stream, Duration::from_secs(30)),
            "client {index} got in"
        );
    }
    // The oldest was cut to make room; then there was room again, so the other keeps its
    // slot until its own handshake timeout.
    let response = parse_http_response(&read_to_eof(&mut slow[0], STEP));
    assert_eq!(response.status, 408, "{response:?}");
    // The clients got in about 2 s after the slow peers arrived: well before the second
    // one's own handshake timeout (4 s).
    slow[1]
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut byte = [0u8; 1];
    assert!(
        slow[1].read(&mut byte).is_err(),
        "the second slow peer was not cut: nobody needed its slot"
    );
}

#[test]
fn out_of_descriptors_the_server_neither_spins_nor_strands_the_backlog() {
    // 64 descriptors: about 55 connections fit; the connection limit is set higher so that
    // accept(2) itself runs out (EMFILE).
    let server = Server::start_with_fd_limit(&["--max-connections", "1000"], 64);
    let mut clients: Vec<TcpStream> = (0..90)
        .map(|index| requesting(server.addr(), &format!("/?user=u{index}&events=none")))
        .collect();
    // The kernel queues the backlog in order: the first client not admitted is where
    // the descriptors ran out, and every later one waits too.
    let first_waiting = clients
        .iter_mut()
        .position(|stream| !got_101(stream, Duration::from_millis(300)))
        .expect("more clients than descriptors");
    assert!(
        first_waiting > 20,
        "only {first_waiting} admitted under 64 descriptors"
    );
    let waiting = clients.split_off(first_waiting);

    let cpu_before = cpu_ticks(server.pid());
    std::thread::sleep(Duration::from_secs(1));
    let spent = cpu_ticks(server.pid()) - cpu_before;
    assert!(
        spent <= 20,
        "the server used {spent} ticks of CPU in a second while out of descriptors"
    );

    // Closing as many admitted connections as there are waiting ones frees descriptors:
    // every waiting client gets in.
    assert!(
        clients.len() >= waiting.len(),
        "{} admitted, {} waiting",
        clients.len(),
        waiting.len()
    );
    clients.truncate(clients.len() - waiting.len());
    for (index, mut stream) in waiting.into_iter().enumerate() {
        assert!(
            got_101(&mut stream, STEP),
            "waiting client {index} never got in"
        );
    }
}

/// User plus system CPU time of a process, in clock ticks (usually 10 ms).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("comm")
        .1
        .split_whitespace()
        .collect();
    // After the comm field: state is field 3, utime 14 and stime 15 (1-based, man proc).
    let utime: u64 = fields[11].parse().expect("utime");
    let stime: u64 = fields[12].parse().expect("stime");
    utime + stime
}

/// Frames after a valid upgrade that end the connection with the right Close code, while
/// the other client keeps working.
#[track_caller]
fn bad_frames_close_with(bytes: &[u8], codes: &[u16]) {
    let server = Server::start(&[]);
    let mut observer = observer(&server);
    let mut raw = RawWs::connect(server.addr(), "/?user=bad&channel=c1");
    observer.expect_type("join");
    raw.send(bytes);
    let code = raw.expect_close_frame(STEP);
    assert!(
        code.is_some_and(|code| codes.contains(&code)),
        "close code {code:?}, expected one of {codes:?}"
    );
    let (leave, _) = observer.wait_for_type("leave", STEP);
    assert_eq!(leave["user"], "bad", "{leave}");
    assert!(
        observer.roundtrip_ping().is_empty(),
        "the observer keeps working"
    );
    assert_eq!(
        http_get(server.addr(), "/healthz").status,
        200,
        "the server keeps serving"
    );
}

#[test]
fn a_frame_header_announcing_2_to_the_63_bytes_closes_with_1009() {
    let mut frame = vec![0x82, 0x80 | 127];
    frame.extend_from_slice(&(1u64 << 63).to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    bad_frames_close_with(&frame, &[1009]);
}

#[test]
fn a_close_frame_with_an_invalid_code_closes_with_1002() {
    // RFC 6455 §7.4.2: 999 and 1005 (reserved, never sent on the wire) are invalid codes.
    for code in [999u16, 1005] {
        bad_frames_close_with(&masked_frame(0x8, &code.to_be_bytes()), &[1002]);
    }
}

#[test]
fn random_bytes_after_a_valid_upgrade_close_only_that_connection() {
    // A fixed pseudo-random stream (xorshift), so a failure can be replayed.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let garbage: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    bad_frames_close_with(&garbage, &[1002, 1007, 1009]);
}
