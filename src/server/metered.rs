//! The socket under an open WebSocket: byte accounting, the "heard from" flag of liveness,
//! and the connection's output queue.
//!
//! [`Traffic`] holds the server's byte totals; every socket read or write, before and after
//! the upgrade, adds to it. [`MeteredStream`] is what tungstenite reads from and writes to:
//! - reads go to the socket and follow the frame boundaries (see [`crate::frame_boundary`]),
//!   which say when tungstenite's context may be dropped (the bytes are counted, for the
//!   totals and for liveness, around each of tungstenite's read calls: `websocket`);
//! - writes never touch the socket: they are appended to the output queue, and so are the
//!   frames the server encodes itself ([`MeteredStream::queue_text`]). The loop writes the
//!   queue to the socket when a turn ends or the socket has room ([`MeteredStream::send_queued`]).
//!
//! Owning the queue (rather than leaving output in tungstenite's buffer) is what keeps memory
//! bounded: tungstenite never shrinks its buffer, so one large `state` or one burst of
//! publications would stay allocated for the life of the connection; this queue is released
//! once it drains. Invariants: bytes leave in the order they were queued; frames are whole
//! in the queue (tungstenite's writes always succeed, so it never holds half a frame).

use std::cell::Cell;
use std::io::{self, Read, Write};

use mio::net::TcpStream;
use tungstenite::protocol::frame::coding::{Data as OpData, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::{Bytes, Utf8Bytes};

use crate::frame_boundary::FrameBoundary;

/// Bytes moved on client sockets since the server started.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    received: Cell<u64>,
    sent: Cell<u64>,
}

impl Traffic {
    pub fn add_received(&self, bytes: usize) {
        self.received.set(self.received.get() + bytes as u64);
    }

    pub fn add_sent(&self, bytes: usize) {
        self.sent.set(self.sent.get() + bytes as u64);
    }

    pub fn received(&self) -> u64 {
        self.received.get()
    }

    pub fn sent(&self) -> u64 {
        self.sent.get()
    }
}

/// Queued output past which the queue is written at once instead of at the end of the turn.
const WRITE_THROUGH: usize = 16 << 10;

/// Why a frame could not be queued.
#[derive(Debug)]
pub(crate) enum QueueError {
    /// More than the backlog limit is waiting that the socket would not take: the peer does
    /// not keep up.
    BacklogFull,
    /// Writing to the socket failed.
    Io(io::Error),
}

/// The socket of an open WebSocket (see the module documentation). 24 bytes (release):
/// every one is kept by every open connection.
pub(crate) struct MeteredStream {
    stream: TcpStream,
    queue: Queue,
    boundary: FrameBoundary,
}

impl MeteredStream {
    pub fn new(stream: TcpStream) -> Self {
        MeteredStream {
            stream,
            queue: Queue::default(),
            boundary: FrameBoundary::default(),
        }
    }

    /// Notes the bytes read behind the upgrade request, which tungstenite parses first.
    pub fn observe_leftover(&mut self, bytes: &[u8]) {
        self.boundary.observe(bytes);
    }

    /// True when what was read so far is whole frames and no message is in progress.
    pub fn at_frame_boundary(&self) -> bool {
        self.boundary.is_idle()
    }

    /// Appends a text frame (RFC 6455 §5.6; a server's frames are unmasked, §5.1). A queue
    /// grown past [`WRITE_THROUGH`] is written at once. Refused when more than `backlog`
    /// bytes already wait unsent: one message may take the queue past it.
    pub fn queue_text(
        &mut self,
        text: Utf8Bytes,
        backlog: usize,
        traffic: &Traffic,
    ) -> Result<(), QueueError> {
        self.queue_data(
            Frame::message(text, OpCode::Data(OpData::Text), true),
            backlog,
            traffic,
        )
    }

    /// Appends a binary frame, like [`MeteredStream::queue_text`].
    pub fn queue_binary(
        &mut self,
        data: Bytes,
        backlog: usize,
        traffic: &Traffic,
    ) -> Result<(), QueueError> {
        self.queue_data(
            Frame::message(data, OpCode::Data(OpData::Binary), true),
            backlog,
            traffic,
        )
    }

    fn queue_data(
        &mut self,
        frame: Frame,
        backlog: usize,
        traffic: &Traffic,
    ) -> Result<(), QueueError> {
        // Already over: nothing more is accepted, however often we are asked. A message is
        // judged by what waits before it, so one larger than the backlog (the `state` of a
        // channel of 15,000) still goes out to a peer that keeps up, and while it drains the
        // backlog counts beside it: the diffs that follow a joiner's large `state` are not
        // taken for the peer falling behind.
        if self.queue.len() > backlog + self.queue.oversized() {
            return Err(QueueError::BacklogFull);
        }
        let len = frame.len();
        // Formatting into a Vec cannot fail.
        let _ = frame.format(self.queue.bytes_mut());
        if len > backlog {
            self.queue.allow_oversized(len);
        }
        if self.queue.len() > WRITE_THROUGH.min(backlog) {
            self.send_queued(traffic).map_err(QueueError::Io)?;
        }
        Ok(())
    }

    /// Appends a Ping with an empty payload (RFC 6455 §5.5.2). Framed here rather than by
    /// tungstenite, whose output buffer would keep its allocation for good.
    pub fn queue_ping(&mut self) {
        // Formatting into a Vec cannot fail.
        let _ = Frame::ping(Vec::new()).format(self.queue.bytes_mut());
    }

    /// Writes the queue to the socket until it is empty (`Ok(true)`) or the socket is full
    /// (`Ok(false)`; the rest goes on the next writable event).
    pub fn send_queued(&mut self, traffic: &Traffic) -> io::Result<bool> {
        let mut written = 0;
        let result = loop {
            if written == self.queue.len() {
                break Ok(true);
            }
            match self.stream.write(&self.queue.bytes()[written..]) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(e),
            }
        };
        traffic.add_sent(written);
        self.queue.consume(written);
        result
    }

    pub fn get_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    pub fn into_inner(self) -> TcpStream {
        self.stream
    }
}

/// A connection's unsent output: 8 bytes in the connection's slot (a `Vec` would keep 24 in
/// every idle one), the bytes behind one box while there are any, nothing once drained.
#[derive(Default)]
struct Queue(Option<Box<Pending>>);

/// What a queue holds while it holds anything.
#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    /// The size of the message larger than the backlog that waits in it, if one does: the
    /// backlog is counted beside it until the queue drains.
    oversized: usize,
}

impl Queue {
    fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |pending| pending.bytes.len())
    }

    fn bytes(&self) -> &[u8] {
        self.0
            .as_deref()
            .map_or(&[], |pending| pending.bytes.as_slice())
    }

    /// The bytes, to append to (allocated on first use).
    fn bytes_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0.get_or_insert_with(Box::default).bytes
    }

    /// The size of the oversized message allowed beside the backlog (0: none).
    fn oversized(&self) -> usize {
        self.0.as_ref().map_or(0, |pending| pending.oversized)
    }

    /// A message of `len` bytes, larger than the backlog, was just queued. One such message
    /// at a time widens the allowance, so what waits stays under twice the backlog plus twice
    /// the largest message.
    fn allow_oversized(&mut self, len: usize) {
        if let Some(pending) = &mut self.0 {
            if pending.oversized == 0 {
                pending.oversized = len;
            }
        }
    }

    /// Drops the first `n` bytes, which the socket took; an emptied queue lets go of its
    /// memory (and of its allowance), so an idle connection holds none between messages.
    fn consume(&mut self, n: usize) {
        if let Some(pending) = &mut self.0 {
            pending.bytes.drain(..n);
            if pending.bytes.is_empty() {
                self.0 = None;
            }
        }
    }
}

impl Read for MeteredStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stream.read(buf)?;
        self.boundary.observe(&buf[..n]);
        Ok(n)
    }
}

/// tungstenite's own output (Pongs, Close replies, our Pings) joins the queue.
impl Write for MeteredStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.queue.bytes_mut().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connected pair of sockets on loopback: the server side wrapped, the peer plain.
    fn pair() -> (MeteredStream, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let peer =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        server.set_nonblocking(true).expect("nonblocking");
        (MeteredStream::new(TcpStream::from_std(server)), peer)
    }

    #[test]
    fn queued_frames_leave_in_order_and_the_queue_is_released() {
        let (mut stream, mut peer) = pair();
        stream
            .write_all(&[0x8a, 0x00])
            .expect("a Pong from tungstenite");
        let traffic = Traffic::default();
        stream
            .queue_text("x".repeat(300).into(), 1 << 20, &traffic)
            .expect("room");
        assert_eq!(stream.queue.len(), 2 + 4 + 300);
        assert!(stream.send_queued(&traffic).expect("write"));
        assert!(
            stream.queue.0.is_none(),
            "a large queue is released once drained"
        );
        let mut received = vec![0u8; 2 + 4 + 300];
        peer.read_exact(&mut received).expect("read");
        assert_eq!(&received[..2], [0x8a, 0x00]);
        assert_eq!(
            &received[2..6],
            [0x81, 126, 1, 44],
            "text frame, 16-bit length 300"
        );
        assert_eq!(traffic.sent(), received.len() as u64);
    }

    #[test]
    fn a_peer_that_does_not_read_fills_its_backlog() {
        let (mut stream, _peer) = pair();
        let traffic = Traffic::default();
        let chunk = "y".repeat(8 << 10);
        let backlog = 64 << 10;
        let refused = (0..10_000).find_map(|_| {
            stream
                .queue_text(chunk.clone().into(), backlog, &traffic)
                .err()
        });
        assert!(
            matches!(refused, Some(QueueError::BacklogFull)),
            "{refused:?}"
        );
        assert!(traffic.sent() > 0, "the socket took what it could first");
        assert!(stream.queue.len() <= backlog + chunk.len() + 4);
        let before = stream.queue.len();
        for _ in 0..100 {
            assert!(matches!(
                stream.queue_text(chunk.clone().into(), backlog, &traffic),
                Err(QueueError::BacklogFull)
            ));
        }
        assert_eq!(stream.queue.len(), before, "a full queue does not grow");
    }

    #[test]
    fn one_message_larger_than_the_backlog_is_taken_when_nothing_waits() {
        let (mut stream, _peer) = pair();
        let traffic = Traffic::default();
        let backlog = 64 << 10;
        let state = "s".repeat(16 << 20);
        let queued = stream.queue_text(state.into(), backlog, &traffic);
        assert!(queued.is_ok(), "{queued:?}");
        assert!(
            stream.queue.len() > backlog,
            "the socket did not take it all"
        );
        // While it waits, the backlog counts beside it: what follows is taken up to the
        // backlog (and what the socket took of the state meanwhile), then refused.
        let diff = "d".repeat(1 << 10);
        let taken = (0..100_000)
            .take_while(|_| {
                stream
                    .queue_text(diff.clone().into(), backlog, &traffic)
                    .is_ok()
            })
            .count();
        assert!(taken >= backlog / diff.len(), "only {taken} taken");
        assert!(taken < 100_000, "never refused");
        let oversized = stream.queue.oversized();
        assert_eq!(
            oversized,
            (16 << 20) + 10,
            "the state's frame: header 10 bytes"
        );
        assert!(stream.queue.len() <= backlog + oversized + diff.len() + 4);
    }

    #[test]
    fn the_allowance_ends_when_the_queue_drains() {
        let (mut stream, mut peer) = pair();
        let traffic = Traffic::default();
        let backlog = 1 << 10;
        let size = 8 << 20;
        stream
            .queue_text("s".repeat(size).into(), backlog, &traffic)
            .expect("nothing waits");
        assert!(
            stream.queue.oversized() > 0,
            "the socket took 8 MiB at once"
        );
        let reader = std::thread::spawn(move || {
            let mut frame = vec![0u8; size + 10];
            peer.read_exact(&mut frame).map(|()| frame[..2].to_vec())
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !stream.send_queued(&traffic).expect("write") {
            assert!(
                std::time::Instant::now() < deadline,
                "the peer never drained it"
            );
            std::thread::yield_now();
        }
        let header = reader.join().expect("reader").expect("read");
        assert_eq!(header, [0x81, 127], "text frame, 64-bit length");
        assert_eq!(stream.queue.oversized(), 0);
    }
}
