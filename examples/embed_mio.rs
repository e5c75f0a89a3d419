//! A host with its own `mio::Poll` running rollcall beside a socket of its own (a UDP echo
//! service) on one thread: rollcall registers its sockets on the host's poll with tokens from
//! a block the host chose, the host forwards rollcall's events and calls its timeout handler,
//! and sleeps no longer than rollcall's next deadline.
//!
//! Run: `cargo run --example embed_mio -- [WS_ADDR] [UDP_ADDR]` (defaults `127.0.0.1:8080`
//! and `127.0.0.1:9000`). Try `echo hi | nc -u -w1 127.0.0.1 9000` and a WebSocket client.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use rollcall::{Config, Server, TokenSpace};

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
    println!(
        "presence on ws://{}/, UDP echo on {}",
        presence.local_addr(),
        echo.local_addr()?
    );

    let mut events = Events::with_capacity(256);
    loop {
        let timeout = presence
            .next_deadline()
            .map(|at| at.saturating_duration_since(Instant::now()));
        poll.poll(&mut events, timeout.or(Some(Duration::from_secs(60))))?;
        let now = Instant::now();
        for event in events.iter() {
            if event.token() == UDP {
                echo_datagrams(&echo)?;
            } else if ROLLCALL.contains(event.token()) {
                presence.handle_event(event, now);
            }
        }
        if presence.handle_timeout(now).is_some() {
            return Ok(());
        }
    }
}

/// Sends every waiting datagram back where it came from.
fn echo_datagrams(socket: &UdpSocket) -> io::Result<()> {
    let mut buffer = [0u8; 1500];
    loop {
        match socket.recv_from(&mut buffer) {
            Ok((len, peer)) => {
                let _ = socket.send_to(&buffer[..len], peer);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
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
