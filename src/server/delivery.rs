//! Delivery: one encoded message (the engine decided who hears it) written to many
//! connections, and the write-error bookkeeping every write shares.
//!
//! Messages are queued in each connection's tungstenite buffer and written when the turn
//! ends ([`Server::flush_queued`]): several messages for one connection in one turn (a burst
//! of publications, a join with its state) then cost one system call, not one each.
//!
//! Invariants: the same bytes go to every recipient of a message; a connection is on the
//! `queued` list at most once; a recipient whose write fails is queued on `doomed`, never
//! removed while a delivery is being written.

use std::io;

use log::debug;
use tungstenite::Utf8Bytes;

use super::conn::{Conn, Phase};
use super::metered::{QueueError, Traffic};
use super::websocket::OpenSocket;
use super::Server;
use crate::ids::Slots;
use crate::model::LeaveReason;
use crate::roster::ConnId;

impl Server {
    /// Writes what the turn queued, one system call per connection (the rest, if the socket
    /// is full, on its next writable event).
    pub(super) fn flush_queued(&mut self) {
        for id in std::mem::take(&mut self.outbox.queued) {
            if let Some(Conn {
                phase: Phase::Open(ws),
                queued,
                ..
            }) = self.conns.get_mut(id)
            {
                *queued = false;
                self.outbox.flush(ws, id);
            }
        }
    }
}

/// What a turn owes its connections: the ones with messages queued (written when the turn
/// ends, one system call each) and the endings decided while connections could not be
/// removed (carried out by [`Server::reap`]). Every delivery goes through it, and every
/// byte a client socket moves is counted in its [`Traffic`].
///
/// Invariant: a connection is on `queued` at most once (its `Conn::queued` flag says so).
pub(super) struct Outbox {
    /// Connections with messages queued this turn.
    pub queued: Vec<ConnId>,
    /// Endings decided during the turn.
    pub doomed: Vec<(ConnId, LeaveReason)>,
    /// Unsent bytes a connection may hold before it is a slow consumer (`--max-backlog`).
    backlog: usize,
    /// Messages queued so far (`rollcall_messages_sent_total`, with the welcomes).
    sent: u64,
    /// Bytes moved on client sockets.
    pub traffic: Traffic,
}

impl Outbox {
    /// An empty outbox for connections that may hold `backlog` unsent bytes.
    pub fn new(backlog: usize) -> Outbox {
        Outbox {
            queued: Vec::new(),
            doomed: Vec::new(),
            backlog,
            sent: 0,
            traffic: Traffic::default(),
        }
    }

    /// Messages queued by deliveries so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Queues `text` to each recipient and lists it on `queued` for the end of the turn; a
    /// recipient over its backlog is doomed as a slow consumer. Returns how many
    /// connections it was queued to.
    pub fn deliver(
        &mut self,
        conns: &mut Slots<Conn>,
        recipients: impl Iterator<Item = ConnId>,
        text: String,
    ) -> usize {
        let text = Utf8Bytes::from(text);
        let backlog = self.backlog;
        let mut delivered = 0;
        for id in recipients {
            let Some(Conn {
                phase: Phase::Open(ws),
                queued: is_queued,
                ..
            }) = conns.get_mut(id)
            else {
                continue;
            };
            // After our Close (shutdown) nothing more may be sent (RFC 6455 §5.5.1).
            if !ws.can_write() {
                continue;
            }
            delivered += 1;
            match ws
                .stream_mut()
                .queue_text(text.clone(), backlog, &self.traffic)
            {
                Ok(()) => {}
                Err(QueueError::BacklogFull) => {
                    debug!("conn=#{id} has more than {backlog} bytes unsent: slow consumer");
                    self.doomed.push((id, LeaveReason::SlowConsumer));
                    continue;
                }
                Err(QueueError::Io(error)) => {
                    doom_on_write_error(id, &error, &mut self.doomed);
                    continue;
                }
            }
            if !*is_queued {
                *is_queued = true;
                self.queued.push(id);
            }
        }
        self.sent += delivered as u64;
        delivered
    }

    /// Sends a heartbeat Ping (empty payload, RFC 6455 §5.5.2) at once; false when the
    /// connection is closing and may send nothing more.
    pub fn send_ping(&mut self, ws: &mut OpenSocket, id: ConnId) -> bool {
        if !ws.can_write() {
            return false;
        }
        ws.stream_mut().queue_ping();
        self.flush(ws, id);
        true
    }

    /// Moves what tungstenite holds (a Pong or Close reply) to the queue and writes the
    /// queue to the socket as far as it takes it.
    pub fn flush(&mut self, ws: &mut OpenSocket, id: ConnId) {
        ws.flush();
        if let Err(error) = ws.stream_mut().send_queued(&self.traffic) {
            doom_on_write_error(id, &error, &mut self.doomed);
        }
    }
}

/// A failed write ends the connection: `closed` when the peer reset it, else `error`.
fn doom_on_write_error(id: ConnId, error: &io::Error, doomed: &mut Vec<(ConnId, LeaveReason)>) {
    let reason = match error.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => LeaveReason::Closed,
        _ => LeaveReason::Error,
    };
    debug!("conn=#{id} write failed ({error}): {reason}");
    doomed.push((id, reason));
}
