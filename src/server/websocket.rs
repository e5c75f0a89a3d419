//! An open WebSocket that holds tungstenite's context only while it is awake.
//!
//! Most connections are idle most of the time, and an idle connection needs no parser state:
//! after a read ends in `WouldBlock` with the input at a frame boundary (see
//! [`crate::frame_boundary`]: whole frames, no fragmented message, no Close) and no close
//! handshake under way, the context holds nothing but its configuration, and tungstenite's
//! output already sits in the connection's own queue. Dropping it then frees the context and
//! its read buffer (about 420 bytes per connection); the next read builds a fresh one, which
//! continues exactly where the old one stopped.
//!
//! Invariants: a connection without a context is active (it can read and write); it is put to
//! sleep only between reads, never with a partial frame, a fragmented message, a Close or an
//! unsent tungstenite reply.

use std::io::{self, Read, Write};

use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig, WebSocketContext};
use tungstenite::{Error as WsError, Message};

use super::metered::MeteredStream;

/// The socket of an open WebSocket, and tungstenite's context while it is awake.
pub(crate) struct OpenSocket {
    stream: MeteredStream,
    context: Option<Box<WebSocketContext>>,
}

impl OpenSocket {
    /// A WebSocket over `stream`, whose peer already sent `leftover` behind its request.
    /// Without leftover bytes it starts asleep: nothing is parsed until the peer speaks.
    pub fn new(mut stream: MeteredStream, leftover: Vec<u8>, config: WebSocketConfig) -> Self {
        let context = (!leftover.is_empty()).then(|| {
            stream.observe_leftover(&leftover);
            Box::new(WebSocketContext::from_partially_read(
                leftover,
                Role::Server,
                Some(config),
            ))
        });
        OpenSocket { stream, context }
    }

    /// The next message, waking the context if it sleeps, and the bytes read from the socket
    /// meanwhile: liveness counts every byte, even of a message not yet complete.
    pub fn read(&mut self, config: WebSocketConfig) -> (Result<Message, WsError>, usize) {
        let (ws, stream) = self.awake(config);
        let mut counting = Counting {
            stream,
            received: 0,
        };
        let result = ws.read(&mut counting);
        (result, counting.received)
    }

    /// After a read that ended in `WouldBlock`: drops the context when the connection is idle
    /// (see the module documentation).
    pub fn sleep_if_idle(&mut self) {
        let active = self.context.as_ref().is_some_and(|ws| ws.can_write());
        if active && self.stream.at_frame_boundary() {
            self.context = None;
        }
    }

    /// True while it holds tungstenite's context.
    pub fn is_awake(&self) -> bool {
        self.context.is_some()
    }

    /// True while the connection may send (it has neither sent nor received a Close).
    pub fn can_write(&self) -> bool {
        self.context.as_ref().is_none_or(|ws| ws.can_write())
    }

    /// Moves what tungstenite holds (a Pong or Close reply) to the connection's queue. A
    /// sleeping connection holds nothing.
    pub fn flush(&mut self) {
        if let Some(ws) = &mut self.context {
            // Only an already-closed WebSocket refuses; then there is nothing to move.
            let _ = ws.flush(&mut self.stream);
        }
    }

    /// Queues a Close frame and enters the closing handshake (RFC 6455 §5.5.1).
    pub fn close(&mut self, frame: CloseFrame, config: WebSocketConfig) {
        // tungstenite only refuses after a Close, and then there is nothing more to send.
        let (ws, stream) = self.awake(config);
        let _ = ws.close(stream, Some(frame));
    }

    pub fn stream_mut(&mut self) -> &mut MeteredStream {
        &mut self.stream
    }

    pub fn into_stream(self) -> MeteredStream {
        self.stream
    }

    /// The context, built if the connection sleeps, and the stream it reads.
    fn awake(&mut self, config: WebSocketConfig) -> (&mut WebSocketContext, &mut MeteredStream) {
        let ws = self
            .context
            .get_or_insert_with(|| Box::new(WebSocketContext::new(Role::Server, Some(config))));
        (ws, &mut self.stream)
    }
}

/// The stream as tungstenite sees it during one read call, counting the bytes read (kept
/// here for the call rather than in every connection's stream).
struct Counting<'a> {
    stream: &'a mut MeteredStream,
    received: usize,
}

impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stream.read(buf)?;
        self.received += n;
        Ok(n)
    }
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}
