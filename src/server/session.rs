//! Open WebSockets: reading frames through tungstenite, handing their data to the
//! connection's dialect and the engine, and ending the connection on what tungstenite
//! reports.
//!
//! Invariants: peer input never panics (every tungstenite error ends only that connection,
//! with a reason); at most [`MESSAGES_PER_TURN`] messages are read per connection per turn;
//! once a shutdown has begun, what a peer sends is not acted on.

use std::io;

use log::debug;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Error as WsError, Message};

use super::conn::{Conn, Phase};
use super::{Server, MESSAGES_PER_TURN};
use crate::dialect::{Decoded, Dialect, Frame};
use crate::metrics::Ending;
use crate::model::LeaveReason;
use crate::roster::ConnId;
use crate::wheel::Millis;

impl Server {
    /// Flushes what is pending and reads messages until `WouldBlock` or the turn's budget.
    pub(super) fn drive_open(&mut self, id: ConnId, now: Millis) {
        for _ in 0..MESSAGES_PER_TURN {
            let Some(Conn {
                phase: Phase::Open(ws),
                ..
            }) = self.conns.get_mut(id)
            else {
                return;
            };
            // Any byte counts as activity, even part of a message not yet complete.
            let (result, received) = ws.read(self.ws_config);
            self.outbox.traffic.add_received(received);
            if let Err(WsError::Io(e)) = &result {
                if e.kind() == io::ErrorKind::WouldBlock {
                    self.outbox.flush(ws, id);
                    ws.sleep_if_idle();
                }
            }
            if received > 0 {
                self.engine.heard(id, now);
            }
            match result {
                Ok(message) => self.on_message(id, message, now),
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) => {
                    self.on_read_error(id, error, now);
                    return;
                }
            }
            // What the message decided (a reply, or the connection's end) happens now.
            self.carry_out(now);
            let ended = self.outbox.doomed.iter().any(|(doomed, _)| *doomed == id);
            if ended || !self.conns.get(id).is_some_and(Conn::is_open) {
                return;
            }
        }
        self.ready.push(id);
    }

    fn on_message(&mut self, id: ConnId, message: Message, now: Millis) {
        let frame = match &message {
            // During a shutdown the Close is out; what the peer still says is not acted on.
            Message::Text(_) | Message::Binary(_) if self.shutdown.is_some() => return,
            Message::Text(text) => Frame::Text(text),
            Message::Binary(data) => Frame::Binary(data),
            // tungstenite queues the Pong itself; the frame already counted as activity.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return,
            Message::Close(_) => {
                // tungstenite queued the Close reply (RFC 6455 §5.5.1); send it, then close
                // the TCP connection first, as the server should (§7.1.1).
                if let Some(Conn {
                    phase: Phase::Open(ws),
                    ..
                }) = self.conns.get_mut(id)
                {
                    self.outbox.flush(ws, id);
                }
                self.end(id, LeaveReason::Closed, now);
                return;
            }
        };
        self.counters.messages_received += 1;
        let dialect = self.engine.dialect(id).unwrap_or(Dialect::V1);
        match dialect.decode(frame, self.config.max_meta_size) {
            Decoded::Echo => self.echo(id, message),
            decoded => self.engine.on_frame(id, decoded, now),
        }
    }

    /// The dialect sends the frame back as it came (conformance mode).
    fn echo(&mut self, id: ConnId, message: Message) {
        let backlog = self.config.max_backlog;
        let Some(Conn {
            phase: Phase::Open(ws),
            queued,
            ..
        }) = self.conns.get_mut(id)
        else {
            return;
        };
        let queued_now = match message {
            Message::Text(text) => ws
                .stream_mut()
                .queue_text(text, backlog, &self.outbox.traffic),
            Message::Binary(data) => {
                ws.stream_mut()
                    .queue_binary(data, backlog, &self.outbox.traffic)
            }
            _ => Ok(()),
        };
        match queued_now {
            Ok(()) if !*queued => {
                *queued = true;
                self.outbox.queued.push(id);
            }
            Ok(()) => {}
            Err(_) => self.outbox.doomed.push((id, LeaveReason::SlowConsumer)),
        }
        self.counters.messages_sent += 1;
    }

    fn on_read_error(&mut self, id: ConnId, error: WsError, now: Millis) {
        match error {
            WsError::ConnectionClosed | WsError::AlreadyClosed => {
                self.end(id, LeaveReason::Closed, now)
            }
            // End of stream without a Close frame, or a reset: the peer is gone.
            WsError::Protocol(tungstenite::error::ProtocolError::ResetWithoutClosingHandshake) => {
                self.end(id, LeaveReason::Closed, now)
            }
            WsError::Io(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                ) =>
            {
                self.end(id, LeaveReason::Closed, now)
            }
            // RFC 6455 §7.4.1: 1009 for a message too big to process.
            WsError::Capacity(e) => self.fail(id, CloseCode::Size, &e.to_string(), now),
            // §8.1: text that is not UTF-8 fails the connection with 1007.
            WsError::Utf8(_) => self.fail(
                id,
                CloseCode::Invalid,
                "invalid UTF-8 in a text message",
                now,
            ),
            // §7.4.1: 1002 for a protocol error (unmasked frame, reserved bits or opcodes...).
            WsError::Protocol(e) => self.fail(id, CloseCode::Protocol, &e.to_string(), now),
            WsError::WriteBufferFull(_) => self.end(id, LeaveReason::SlowConsumer, now),
            other => {
                debug!("conn=#{id} read failed: {other}");
                self.end(id, LeaveReason::Error, now)
            }
        }
    }

    /// Fails the connection for what the peer sent (RFC 6455 §7.1.7): presence leaves with
    /// reason `error`, a Close frame with `code` goes out, then the socket lingers.
    fn fail(&mut self, id: ConnId, code: CloseCode, reason: &str, now: Millis) {
        if let Some(leave) = self.engine.end(id, LeaveReason::Error, now) {
            self.counters.closed(Ending::WebSocket(leave));
        }
        self.close(id, code, reason, now);
    }
}
