//! One connection's state machine and the socket work that needs nothing but the connection.
//!
//! Phases move forward only, by value (`mem::replace` with [`Phase::Gone`] for the instant
//! of the move):
//! `Handshake` (reading the request head) → `Responding` (writing 101 or an error) →
//! `Open` (WebSocket frames through tungstenite) or `Closing` (our side shut, draining the
//! peer until it closes or the linger deadline passes) → removed from the slab.
//!
//! Invariants: `user` is `Some` exactly while the connection counts as present (from the
//! upgrade until it is detached); `channels` lists every channel it is subscribed to.

use std::io::{self, Read, Write};
use std::net::Shutdown;

use mio::net::TcpStream;
use tungstenite::WebSocket;

use super::heard::HeardStream;
use crate::heartbeat::Liveness;
use crate::http::Upgrade;
use crate::protocol::EventsMode;
use crate::registry::{ChannelId, UserId};

/// Bytes read per system call while the request head is incomplete; the head itself may
/// grow to [`crate::http::MAX_HEAD`].
const HEAD_READ_CHUNK: usize = 1024;

/// An open WebSocket over a socket that notes incoming bytes.
pub(crate) type Socket = WebSocket<HeardStream>;

/// Where a connection is in its life.
pub(crate) enum Phase {
    /// Reading the HTTP request head; `received` holds the bytes so far.
    Handshake {
        stream: TcpStream,
        received: Vec<u8>,
    },
    /// Writing an HTTP response; `pending` is what is left to write.
    Responding {
        stream: TcpStream,
        pending: Vec<u8>,
        then: AfterResponse,
    },
    /// An open WebSocket.
    Open(Socket),
    /// Our side is shut down; input is read and discarded until the peer closes.
    Closing(TcpStream),
    /// Only observable inside a phase transition.
    Gone,
}

/// What follows a fully written response.
pub(crate) enum AfterResponse {
    /// A 101: open the WebSocket with the bytes that followed the request head.
    Open { upgrade: Upgrade, leftover: Vec<u8> },
    /// An error response: close.
    Close,
}

/// A connection in the slab.
pub(crate) struct Conn {
    pub phase: Phase,
    pub liveness: Liveness,
    pub user: Option<UserId>,
    pub channels: Vec<ChannelId>,
    /// The events mode from the URL, used by `join` commands that name none.
    pub mode: EventsMode,
}

impl Conn {
    pub fn new(stream: TcpStream, liveness: Liveness) -> Conn {
        Conn {
            phase: Phase::Handshake {
                stream,
                received: Vec::new(),
            },
            liveness,
            user: None,
            channels: Vec::new(),
            mode: EventsMode::All,
        }
    }

    /// The socket, whatever the phase (`None` only while `Gone`).
    pub fn stream_mut(&mut self) -> Option<&mut TcpStream> {
        match &mut self.phase {
            Phase::Handshake { stream, .. }
            | Phase::Responding { stream, .. }
            | Phase::Closing(stream) => Some(stream),
            Phase::Open(ws) => Some(ws.get_mut().get_mut()),
            Phase::Gone => None,
        }
    }
}

/// How a read of the request head ended.
pub(crate) enum HeadRead {
    /// The socket has nothing more for now (or the head is complete or over its limit).
    Paused,
    /// The peer closed or reset the connection.
    Ended,
}

/// Reads until `WouldBlock`, end of stream, or until `received` holds a complete head or
/// the head limit. Reading stops at a complete head so that frames pipelined behind it stay
/// in the kernel, bounded by one chunk in `received`.
pub(crate) fn read_head(stream: &mut TcpStream, received: &mut Vec<u8>) -> HeadRead {
    let mut chunk = [0u8; HEAD_READ_CHUNK];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return HeadRead::Ended,
            Ok(n) => {
                received.extend_from_slice(&chunk[..n]);
                if received.len() >= crate::http::MAX_HEAD || has_head_end(received) {
                    return HeadRead::Paused;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return HeadRead::Paused,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return HeadRead::Ended,
        }
    }
}

fn has_head_end(received: &[u8]) -> bool {
    received.windows(4).any(|w| w == b"\r\n\r\n")
}

/// Writes as much of `pending` as the socket takes. `Ok(true)` when all is written.
pub(crate) fn write_pending(stream: &mut TcpStream, pending: &mut Vec<u8>) -> io::Result<bool> {
    while !pending.is_empty() {
        match stream.write(pending) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                pending.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Shuts our sending side so the peer sees the end of stream after what we sent.
pub(crate) fn shut_write(stream: &TcpStream) {
    // A peer that already vanished makes this fail; the connection is ending either way.
    let _ = stream.shutdown(Shutdown::Write);
}

/// Most bytes discarded from a closing peer before it is simply dropped.
const DRAIN_LIMIT: usize = 64 << 10;

/// Reads and discards what a closing peer still sends. `true` once the connection can be
/// dropped: the peer closed, failed, or sent more than [`DRAIN_LIMIT`] in one go.
pub(crate) fn drain(stream: &mut TcpStream) -> bool {
    let mut sink = [0u8; 1024];
    let mut discarded = 0;
    while discarded < DRAIN_LIMIT {
        match stream.read(&mut sink) {
            Ok(0) => return true,
            Ok(n) => discarded += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
    true
}
