//! A host that owns the `mio::Poll`: rollcall registers on it with tokens from the host's
//! chosen block, beside a UDP socket of the host's own, all on one thread. Every event must
//! reach its owner: host tokens never collide with rollcall's.

mod common;

use std::net::{SocketAddr, UdpSocket as StdUdp};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use rollcall::{Config, Handle, Server, Stop, TokenSpace};

/// The host's own tokens: the small numbers hosts use.
const UDP: Token = Token(0);
const ROLLCALL: TokenSpace = TokenSpace::new(1);

struct Host {
    ws: SocketAddr,
    udp: SocketAddr,
    handle: Handle,
    /// The host loop's end: how it stopped, or the first misrouted token.
    ended: mpsc::Receiver<Result<Stop, String>>,
}

/// Runs the host loop on its own thread (the loop's state is single-threaded by design).
fn host() -> Host {
    let (ready, started) = mpsc::channel();
    let (end, ended) = mpsc::channel();
    thread::spawn(move || {
        let mut poll = Poll::new().expect("poll");
        let mut udp = UdpSocket::bind("127.0.0.1:0".parse().expect("addr")).expect("udp");
        poll.registry()
            .register(&mut udp, UDP, Interest::READABLE)
            .expect("register udp");
        let config = Config::default().listen(SocketAddr::from(([127, 0, 0, 1], 0)));
        let mut server =
            Server::bind_on(config, poll.registry(), ROLLCALL).expect("bind on the host's poll");
        let _ = ready.send((
            server.local_addr(),
            udp.local_addr().expect("udp addr"),
            server.handle(),
        ));
        let mut events = Events::with_capacity(64);
        let outcome = loop {
            let timeout = server
                .next_deadline()
                .map(|at| at.saturating_duration_since(Instant::now()));
            poll.poll(&mut events, timeout.or(Some(Duration::from_secs(1))))
                .expect("poll");
            let now = Instant::now();
            let mut misrouted = None;
            for event in events.iter() {
                match event.token() {
                    UDP => echo(&udp),
                    token if ROLLCALL.contains(token) => server.handle_event(event, now),
                    token => {
                        misrouted = Some(format!("an event for {token:?}, which nobody registered"))
                    }
                }
            }
            if let Some(problem) = misrouted {
                break Err(problem);
            }
            if let Some(stop) = server.handle_timeout(now) {
                break Ok(stop);
            }
        };
        let _ = end.send(outcome);
    });
    let (ws, udp, handle) = started.recv_timeout(STEP).expect("the host started");
    Host {
        ws,
        udp,
        handle,
        ended,
    }
}

fn echo(socket: &UdpSocket) {
    let mut buffer = [0u8; 512];
    while let Ok((len, peer)) = socket.recv_from(&mut buffer) {
        let _ = socket.send_to(&buffer[..len], peer);
    }
}

#[test]
fn rollcall_and_the_host_share_one_poll_without_colliding_tokens() {
    let host = host();
    let (mut alice, state) = Client::join(host.ws, "user=alice&channel=c1");
    assert_eq!(user_names(&state), ["alice"]);
    let (bob, _) = Client::join(host.ws, "user=bob&channel=c1");
    assert_eq!(alice.expect_type("join")["user"], "bob");

    // The host's own socket keeps working between rollcall's events.
    let probe = StdUdp::bind("127.0.0.1:0").expect("probe");
    probe.set_read_timeout(Some(STEP)).expect("timeout");
    for round in 0..3u8 {
        probe.send_to(&[round], host.udp).expect("send");
        let mut answer = [0u8; 8];
        let (len, _) = probe.recv_from(&mut answer).expect("echoed");
        assert_eq!(&answer[..len], [round]);
        assert!(alice.roundtrip_ping().is_empty());
    }

    bob.close();
    assert_eq!(alice.wait_for_type("leave", STEP).0["user"], "bob");
    host.handle.shutdown().expect("shutdown sent");
    assert_eq!(alice.expect_closed(STEP).map(|(code, _)| code), Some(1001));
    let ended = host
        .ended
        .recv_timeout(Duration::from_secs(10))
        .expect("the host loop ended");
    assert_eq!(ended, Ok(Stop::Graceful));
}

#[test]
fn a_server_on_a_host_s_poll_cannot_run_its_own_loop() {
    let poll = Poll::new().expect("poll");
    let config = Config::default().listen(SocketAddr::from(([127, 0, 0, 1], 0)));
    let mut server = Server::bind_on(config, poll.registry(), ROLLCALL).expect("bind");
    let error = server.run().expect_err("run refuses");
    assert!(error.to_string().contains("bind_on"), "{error}");
}

/// `examples/embed_mio.rs`, the guide's host loop with a timer of its own: SIGTERM reaches
/// rollcall through the host's poll (the interrupted wait is retried), the client is told
/// to go away, and the host loop ends with a graceful stop.
#[test]
fn the_host_loop_example_shuts_down_gracefully_on_sigterm() {
    let (mut host, printed) =
        ChildGuard::spawn_reading(&example("embed_mio"), &["127.0.0.1:0", "127.0.0.1:0"]);
    let addr = printed_address(&printed.recv_timeout(STEP).expect("the example started"));
    let (mut client, _) = Client::join(addr, "user=ada&channel=lab");
    host.signal(libc::SIGTERM);
    assert_eq!(
        client.expect_closed(STEP).map(|(code, _)| code),
        Some(1001),
        "going away"
    );
    drop(client);
    let status = host.wait_exit(STEP).expect("the host loop ended");
    assert!(status.success(), "{status}");
    let last = printed.iter().last().unwrap_or_default();
    assert_eq!(last, "stopped: Graceful");
}
