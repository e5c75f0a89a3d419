//! Accepting connections and carrying them through the HTTP handshake to an open WebSocket
//! (or to an error response and a close).
//!
//! Invariants: accepting never spins (an accept error pauses it and a wheel entry resumes
//! it, as does any connection ending); a connection over the limit is answered 503 and
//! closed without entering the slab; every admitted connection has a handshake deadline.

use std::io;
use std::mem;

use log::{debug, warn};
use mio::net::TcpStream;
use mio::Interest;
use tungstenite::protocol::Role;
use tungstenite::WebSocket;

use super::conn::{self, AfterResponse, Conn, HeadRead, Phase};
use super::heard::HeardStream;
use super::session::JoinRequest;
use super::{Server, Timer, LINGER_MS};
use crate::heartbeat::Liveness;
use crate::http::{self, Head, Response, Upgrade};
use crate::protocol::event;
use crate::registry::ConnId;
use crate::wheel::Millis;

/// How long accepting pauses after an accept error such as running out of descriptors.
const ACCEPT_BACKOFF_MS: Millis = 100;

impl Server {
    /// Accepts until `WouldBlock`; pauses on any other error instead of spinning.
    pub(super) fn accept(&mut self, now: Millis) {
        let was_paused = std::mem::replace(&mut self.accept_paused, false);
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => self.admit(stream, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if is_transient_accept_error(&e) => continue,
                Err(e) => {
                    // EMFILE/ENFILE and the like: the backlog stays queued in the kernel;
                    // retry when a connection ends or after a short back-off.
                    if !was_paused {
                        warn!("accept failed ({e}); retrying every {ACCEPT_BACKOFF_MS} ms or when a connection ends");
                    }
                    self.accept_paused = true;
                    self.wheel
                        .insert(Timer::AcceptRetry, now + ACCEPT_BACKOFF_MS);
                    return;
                }
            }
        }
    }

    fn admit(&mut self, mut stream: TcpStream, now: Millis) {
        if self.conns.len() >= self.max_connections {
            debug!(
                "refused a connection: at the limit of {} connections",
                self.max_connections
            );
            let mut response = Response::error(503, "server at its connection limit").to_bytes();
            // Best effort on a fresh socket, without taking a slot: answer, shut our side,
            // and discard the request if it is already here so the close is not a reset.
            let _ = conn::write_pending(&mut stream, &mut response);
            conn::shut_write(&stream);
            conn::drain(&mut stream);
            return;
        }
        // Presence events are small and latency-sensitive.
        let _ = stream.set_nodelay(true);
        let id = self.conns.insert(Conn::new(stream, Liveness::new(now)));
        let token = mio::Token(id.to_token());
        let registered = match self.conns.get_mut(id).and_then(Conn::stream_mut) {
            Some(stream) => self.poll.registry().register(
                stream,
                token,
                Interest::READABLE | Interest::WRITABLE,
            ),
            None => return,
        };
        if let Err(error) = registered {
            warn!("conn=#{id} could not be registered with the poll: {error}");
            self.remove(id);
            return;
        }
        let handshake_ms = super::duration_ms(self.config.handshake_timeout);
        self.wheel.insert(Timer::Handshake(id), now + handshake_ms);
        self.read_handshake(id, now);
    }

    pub(super) fn read_handshake(&mut self, id: ConnId, now: Millis) {
        let Some(Conn {
            phase: Phase::Handshake { stream, received },
            ..
        }) = self.conns.get_mut(id)
        else {
            return;
        };
        if let HeadRead::Ended = conn::read_head(stream, received) {
            debug!("conn=#{id} closed during the handshake");
            self.remove(id);
            return;
        }
        match http::examine(received) {
            Head::Partial => {}
            Head::Upgrade { upgrade, head_len } => {
                let leftover = received.split_off(head_len);
                let response = upgrade.response();
                self.respond(id, response, AfterResponse::Open { upgrade, leftover }, now);
            }
            Head::Refuse(response) => {
                debug!("conn=#{id} refused: {} {}", response.status, response.body);
                self.respond(id, response.to_bytes(), AfterResponse::Close, now);
            }
        }
    }

    fn respond(&mut self, id: ConnId, pending: Vec<u8>, then: AfterResponse, now: Millis) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let Phase::Handshake { stream, .. } = mem::replace(&mut conn.phase, Phase::Gone) else {
            unreachable!("respond is only called during the handshake");
        };
        conn.phase = Phase::Responding {
            stream,
            pending,
            then,
        };
        self.write_response(id, now);
    }

    pub(super) fn write_response(&mut self, id: ConnId, now: Millis) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let Phase::Responding {
            stream, pending, ..
        } = &mut conn.phase
        else {
            return;
        };
        match conn::write_pending(stream, pending) {
            Ok(false) => return,
            Ok(true) => {}
            Err(error) => {
                debug!("conn=#{id} failed while writing the handshake response: {error}");
                self.remove(id);
                return;
            }
        }
        let Phase::Responding { stream, then, .. } = mem::replace(&mut conn.phase, Phase::Gone)
        else {
            unreachable!("matched above");
        };
        match then {
            AfterResponse::Open { upgrade, leftover } => {
                self.open(id, stream, upgrade, leftover, now)
            }
            AfterResponse::Close => self.linger(id, stream, now),
        }
    }

    /// Shuts our side and waits (bounded) for the peer to close, so that a response or a
    /// Close frame is not destroyed by a reset caused by unread input.
    pub(super) fn linger(&mut self, id: ConnId, stream: TcpStream, now: Millis) {
        conn::shut_write(&stream);
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        conn.phase = Phase::Closing(stream);
        self.wheel.insert(Timer::Linger(id), now + LINGER_MS);
        self.drive(id, now);
    }

    pub(super) fn handshake_deadline(&mut self, id: ConnId, now: Millis) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        match conn.phase {
            Phase::Handshake { .. } => {
                debug!("conn=#{id} handshake timed out");
                let response = Response::error(408, "the upgrade request did not arrive in time");
                self.respond(id, response.to_bytes(), AfterResponse::Close, now);
            }
            Phase::Responding { .. } => {
                debug!("conn=#{id} did not take its handshake response in time");
                self.remove(id);
            }
            _ => {}
        }
    }

    /// The 101 is out: wrap the socket in a WebSocket, greet the user, join its channels,
    /// and process any frames that arrived behind the request.
    fn open(
        &mut self,
        id: ConnId,
        stream: TcpStream,
        upgrade: Upgrade,
        leftover: Vec<u8>,
        now: Millis,
    ) {
        let name = match upgrade.user {
            Some(name) => name,
            None => {
                self.next_anonymous += 1;
                format!("anon-{}", self.next_anonymous)
            }
        };
        let user = self.registry.connect_user(&name);
        let ws = WebSocket::from_partially_read(
            HeardStream::new(stream),
            leftover,
            Role::Server,
            Some(self.ws_config),
        );
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        conn.phase = Phase::Open(ws);
        conn.user = Some(user.clone());
        conn.mode = upgrade.events;
        conn.liveness = Liveness::new(now);
        self.wheel.insert(
            Timer::Heartbeat(id),
            conn.liveness.first_deadline(self.heartbeat),
        );
        debug!("conn=#{id} open as user {user}");
        let welcome = event::welcome(
            &id.to_string(),
            &user,
            self.heartbeat.interval,
            self.heartbeat.timeout,
        );
        self.send(id, welcome);
        let channels = if upgrade.channels.is_empty() {
            vec![self.config.default_channel.clone()]
        } else {
            upgrade.channels
        };
        for channel in channels {
            let request = JoinRequest {
                channel: &channel,
                meta: None,
                mode: upgrade.events,
                reference: None,
            };
            self.join(id, &user, request, now);
        }
        self.drive_open(id, now);
    }
}

/// Errors of one pending connection (it was reset before we took it), not of the listener.
fn is_transient_accept_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::Interrupted
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}
