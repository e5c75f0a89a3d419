//! A host with its own `mio::Poll` running rollcall beside a socket of its own (a UDP echo
//! service) and a timer of its own (a report every few seconds) on one thread: rollcall
//! registers its sockets on the host's poll with tokens from a block the host chose, the host
//! forwards rollcall's events and calls its timeout handler, and sleeps until the earlier of
//! its own deadline and rollcall's. SIGINT or SIGTERM shuts rollcall down gracefully.
//!
//! Run: `cargo run --example embed_mio -- [WS_ADDR] [UDP_ADDR]` (defaults `127.0.0.1:8080`
//! and `127.0.0.1:9000`). Try `echo hi | nc -u -w1 127.0.0.1 9000` and a WebSocket client.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rollcall::mio::net::UdpSocket;
use rollcall::mio::{Events, Interest, Poll, Token};
use rollcall::{Config, Server, TokenSpace};

/// How often the host reports what it echoed (its own timer).
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// The host's own token: small numbers are the host's, rollcall's live in its block.
const UDP: Token = Token(0);

/// rollcall's tokens: every token whose top 16 bits are 1.
const ROLLCALL: TokenSpace = TokenSpace::new(1);

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let ws: SocketAddr = parse(args.next(), "127.0.0.1:8080")?;
    let udp: SocketAddr = parse(args.next(), "127.0.0.1:9000")?;

    let mut poll = Poll::new()?;
    let mut echo = UdpSocket::bind(udp)?;
    poll.registry()
        .register(&mut echo, UDP, Interest::READABLE)?;
    let mut presence = Server::bind_on(Config::default().listen(ws), poll.registry(), ROLLCALL)
        .map_err(io::Error::other)?;
    presence.shutdown_on_signals()?;
    println!(
        "presence on ws://{}/, UDP echo on {}",
        presence.local_addr(),
        echo.local_addr()?
    );

    let mut events = Events::with_capacity(256);
    let mut echoed = 0u64;
    let mut next_report = Instant::now() + REPORT_EVERY;
    loop {
        // Sleep until the earlier deadline: the host's own, or rollcall's (`None` when
        // rollcall has nothing scheduled; it never stands for "forever" here).
        let deadline = presence
            .next_deadline()
            .map_or(next_report, |at| at.min(next_report));
        let timeout = deadline.saturating_duration_since(Instant::now());
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            // A signal (the SIGTERM rollcall listens for, among others) interrupts the wait:
            // poll again, its pipe is readable now.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        let now = Instant::now();
        for event in events.iter() {
            if event.token() == UDP {
                echoed += echo_datagrams(&echo)?;
            } else if ROLLCALL.contains(event.token()) {
                presence.handle_event(event, now);
            }
        }
        if now >= next_report {
            println!("echoed {echoed} datagrams");
            next_report = now + REPORT_EVERY;
        }
        if let Some(stop) = presence.handle_timeout(now) {
            println!("stopped: {stop:?}");
            return Ok(());
        }
    }
}

/// Sends every waiting datagram back where it came from; returns how many.
fn echo_datagrams(socket: &UdpSocket) -> io::Result<u64> {
    let mut buffer = [0u8; 1500];
    let mut echoed = 0;
    loop {
        match socket.recv_from(&mut buffer) {
            Ok((len, peer)) => {
                let _ = socket.send_to(&buffer[..len], peer);
                echoed += 1;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(echoed),
            Err(e) => return Err(e),
        }
    }
}

fn parse(arg: Option<String>, default: &str) -> io::Result<SocketAddr> {
    let text = arg.unwrap_or_else(|| default.to_owned());
    text.parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{text:?} is not an address"),
        )
    })
}
