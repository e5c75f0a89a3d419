//! One connection's state machine and the socket work that needs nothing but the connection.
//!
//! Phases move forward only, by value (`mem::replace` with [`Phase::Gone`] for the instant
//! of the move):
//! `Handshake` (reading the request head) → `Responding` (writing 101 or an error) →
//! `Open` (WebSocket frames through tungstenite, whose context is dropped while the
//! connection is idle: see `websocket`) or `Closing` (our side shut, draining the
//! peer until it closes or the linger deadline passes) → removed from the slab.
//!
//! Invariant: a connection in phase `Open` has a session in the engine, until the engine
//! ends it (then the phase moves on to `Closing`, or the connection is removed).

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::num::NonZeroU64;

use mio::net::TcpStream;

use super::metered::Traffic;
use super::websocket::OpenSocket;
use crate::dialect::Dialect;
use crate::http::Upgrade;
use crate::ids::Stamped;

/// Bytes read per system call while the request is incomplete.
const REQUEST_READ_CHUNK: usize = 1024;

/// Where a connection is in its life.
// Open is where almost every connection spends its life: boxing it to shrink the other
// variants would cost each connection an allocation and its header for nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Phase {
    /// Reading the HTTP request; `received` holds the bytes so far. `deadline` is the time
    /// of the wheel entry that ends the handshake, when one was put in (the request did not
    /// come with the connection): a connection that opens takes it out.
    Handshake {
        stream: TcpStream,
        received: Vec<u8>,
        deadline: Option<NonZeroU64>,
    },
    /// Writing an HTTP response; `pending` is what is left to write.
    Responding {
        stream: TcpStream,
        pending: Vec<u8>,
        then: AfterResponse,
    },
    /// An open WebSocket.
    Open(OpenSocket),
    /// Our side is shut down; input is read and discarded until the peer closes.
    Closing(TcpStream),
    /// Only observable inside a phase transition.
    Gone,
}

/// What follows a fully written response.
pub(crate) enum AfterResponse {
    /// A 101 (and the welcome): open the WebSocket. Boxed: it is large and lives only
    /// for the instant of the 101, while every connection's slot has room for it.
    Open(Box<Opening>),
    /// An error response: close.
    Close,
}

/// What a WebSocket opens with once its 101 is out.
pub(crate) struct Opening {
    pub upgrade: Upgrade,
    /// The user it is for, and the dialect it speaks.
    pub user: String,
    pub dialect: Dialect,
    /// What followed the request.
    pub leftover: Leftover,
    /// The handshake's wheel entry, if one was put in (see [`Phase::Handshake`]).
    pub deadline: Option<NonZeroU64>,
}

/// A connection in the slab: its socket's phase. What it is to the application (user,
/// channels, limits, liveness) is its session in the engine, under the same id.
pub(crate) struct Conn {
    pub phase: Phase,
    /// True while it is on the server's list of connections with output queued this turn.
    pub queued: bool,
    /// The generation of its id, in the slot's padding (see [`Stamped`]).
    generation: u32,
}

impl Stamped for Conn {
    fn generation(&self) -> u32 {
        self.generation
    }

    fn stamp(&mut self, generation: u32) {
        self.generation = generation;
    }
}

impl Conn {
    pub fn new(stream: TcpStream) -> Conn {
        Conn {
            phase: Phase::Handshake {
                stream,
                received: Vec::new(),
                deadline: None,
            },
            queued: false,
            generation: 0,
        }
    }

    /// True for an open WebSocket.
    pub fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open(_))
    }

    /// True for an open WebSocket that holds tungstenite's context (see `websocket`).
    pub fn is_awake(&self) -> bool {
        matches!(&self.phase, Phase::Open(ws) if ws.is_awake())
    }

    /// True while the connection's request is being read.
    pub fn is_handshaking(&self) -> bool {
        matches!(self.phase, Phase::Handshake { .. })
    }

    /// True while the connection's fate is undecided: its request is being read, or its 101
    /// is being written.
    pub fn is_pending(&self) -> bool {
        matches!(
            self.phase,
            Phase::Handshake { .. }
                | Phase::Responding {
                    then: AfterResponse::Open(_),
                    ..
                }
        )
    }

    /// The socket, whatever the phase (`None` only while `Gone`).
    pub fn stream_mut(&mut self) -> Option<&mut TcpStream> {
        match &mut self.phase {
            Phase::Handshake { stream, .. }
            | Phase::Responding { stream, .. }
            | Phase::Closing(stream) => Some(stream),
            Phase::Open(ws) => Some(ws.stream_mut().get_mut()),
            Phase::Gone => None,
        }
    }
}

/// How a read of the request ended.
pub(crate) enum RequestRead {
    /// The socket has nothing more for now.
    Drained,
    /// `received` reached its limit: the socket may hold more.
    Full,
    /// The peer closed or reset the connection.
    Ended,
}

/// What followed a request on its socket.
pub(crate) struct Leftover {
    /// Bytes read behind the request (frames pipelined behind an upgrade).
    pub bytes: Vec<u8>,
    /// The read stopped at its limit: more may wait in the socket, which no event will
    /// announce again.
    pub unread: bool,
}

/// Reads until `WouldBlock`, end of stream, or until `received` holds `limit` bytes (the
/// largest head plus the largest body; frames pipelined behind an upgrade may come along and
/// are handed to the WebSocket).
///
/// A read that returns less than it asked for emptied the socket's receive queue, and on
/// Linux any byte that arrives later raises a new edge-triggered event: the read that would
/// only say `WouldBlock` is skipped (a system call per handshake), unless `to_the_end` (the
/// event reported the peer's end of stream, which no later event reports again).
pub(crate) fn read_request(
    stream: &mut TcpStream,
    received: &mut Vec<u8>,
    limit: usize,
    traffic: &Traffic,
    to_the_end: bool,
) -> RequestRead {
    let mut chunk = [0u8; REQUEST_READ_CHUNK];
    while received.len() < limit {
        let room = (limit - received.len()).min(REQUEST_READ_CHUNK);
        match stream.read(&mut chunk[..room]) {
            Ok(0) => return RequestRead::Ended,
            Ok(n) => {
                traffic.add_received(n);
                received.extend_from_slice(&chunk[..n]);
                if n < room && !to_the_end {
                    return RequestRead::Drained;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return RequestRead::Drained,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return RequestRead::Ended,
        }
    }
    RequestRead::Full
}

/// Writes as much of `pending` as the socket takes. `Ok(true)` when all is written.
pub(crate) fn write_pending(
    stream: &mut TcpStream,
    pending: &mut Vec<u8>,
    traffic: &Traffic,
) -> io::Result<bool> {
    while !pending.is_empty() {
        match stream.write(pending) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                traffic.add_sent(n);
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
pub(crate) fn drain(stream: &mut TcpStream, traffic: &Traffic) -> bool {
    let mut sink = [0u8; 1024];
    let mut discarded = 0;
    while discarded < DRAIN_LIMIT {
        match stream.read(&mut sink) {
            Ok(0) => return true,
            Ok(n) => {
                traffic.add_received(n);
                discarded += n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::Conn;

    /// A connection's slot in the server's table: the README's memory table counts it (the
    /// release size; mio's sockets carry a selector id in debug builds only).
    #[test]
    fn a_connection_slot_stays_its_documented_size() {
        let size = if cfg!(debug_assertions) { 64 } else { 48 };
        assert_eq!(std::mem::size_of::<Conn>(), size);
    }
}
