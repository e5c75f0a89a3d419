//! Accepting connections and carrying them through their HTTP request: to an open
//! WebSocket, to an operator endpoint's response, or to a refusal; then to a close.
//!
//! Backpressure: while `--max-pending-handshakes` connections are still sending their
//! request, accepting pauses and new connections wait in the kernel's listen backlog (a
//! reconnect storm is admitted at the pace requests arrive, none refused). The listener is
//! edge-triggered, so its events while paused say nothing new: the end of each turn accepts
//! again once there is room ([`Server::resume_accept`]) until `WouldBlock`. Slow peers cannot
//! hold the slots: while paused, a handshake pending longer than half `--handshake-timeout`
//! ([`PAUSED_HANDSHAKE_SHARE`]) is read once more, and answered 408 and closed, oldest first,
//! only if its request is still incomplete: a request that arrived while the server was busy
//! (its readiness event not yet handled) is served, never cut.
//!
//! Invariants: accepting never spins (an accept error pauses it and a wheel entry resumes
//! it, as does any connection ending; a full pause resumes when a handshake ends or a
//! stalled one is cut); a connection over `--max-connections` is answered 503 and closed
//! without entering the slab; every admitted connection has a handshake deadline; every
//! accepted connection's ending is counted exactly once, when it is decided.

use std::io;
use std::mem;
use std::net::SocketAddr;
use std::num::NonZeroU64;

use log::{debug, warn};
use mio::net::TcpStream;
use mio::Interest;
use tungstenite::protocol::frame::coding::{CloseCode, Data as OpData, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::CloseFrame;

use super::conn::{self, AfterResponse, Conn, Leftover, Opening, Phase, RequestRead};
use super::metered::MeteredStream;
use super::websocket::OpenSocket;
use super::{Server, Timer, LINGER_MS};
use crate::dialect::Dialect;
use crate::engine::{ConnectRequest, Decision, Opened};
use crate::http::upgrade::{Access, TokenPolicy};
use crate::http::{self, Examined, Request, Response, Route, Upgrade};
use crate::metrics::Ending;
use crate::model::{Event, Meta};
use crate::names;
use crate::roster::ConnId;
use crate::wheel::Millis;

/// How long accepting pauses after an accept error such as running out of descriptors.
const ACCEPT_BACKOFF_MS: Millis = 100;

/// While accepting is paused at `--max-pending-handshakes`, the share of
/// `--handshake-timeout` a connection may take to send its request before it is cut (408) to
/// make room for the backlog: half (5 s by default). An honest client sends its request with
/// its first flight after the TCP handshake, which the kernel completed before we accepted,
/// so the request is usually waiting when we accept; half the timeout leaves room for a lost
/// segment or two (each costs a retransmission timeout, 1 s at first, RFC 6298 §2), while a
/// slow loris holds a slot for half as long as it could otherwise.
const PAUSED_HANDSHAKE_SHARE: u64 = 2;

impl Server {
    /// Accepts until `WouldBlock`; pauses on any other error instead of spinning, and while
    /// the pending handshakes are at their limit (see the module's doc).
    pub(super) fn accept(&mut self, now: Millis) {
        let was_paused = mem::replace(&mut self.accept_paused, false);
        loop {
            if self.pending >= self.config.max_pending_handshakes && !self.make_room(now) {
                return;
            }
            match self.listener.accept() {
                Ok((stream, _)) => {
                    self.admit(stream, now);
                    // An endpoint served here (a publish) may have doomed slow consumers:
                    // end them before the next request can queue more for them.
                    self.reap(now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.end_full_pause(now);
                    return;
                }
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

    /// At the pending limit: cuts the handshakes pending longer than the paused deadline
    /// whose request is still incomplete (oldest first) and tells whether there is room now.
    /// Without room, accepting stays paused (timed from its start) and a wheel entry wakes it
    /// when the oldest is due.
    fn make_room(&mut self, now: Millis) -> bool {
        let deadline = super::duration_ms(self.config.handshake_timeout) / PAUSED_HANDSHAKE_SHARE;
        while self.pending >= self.config.max_pending_handshakes {
            let Some(&(id, since)) = self.handshakes.front() else {
                break;
            };
            if !self.conns.get(id).is_some_and(Conn::is_handshaking) {
                self.handshakes.pop_front();
                continue;
            }
            if since + deadline > now {
                if self.stall_check != Some(since + deadline) {
                    self.stall_check = Some(since + deadline);
                    self.wheel
                        .insert(Timer::StalledHandshakes, since + deadline);
                }
                break;
            }
            self.handshakes.pop_front();
            // Its request may be in the socket, its readiness event not handled yet (a busy
            // turn): read it first, and cut only a connection that has not sent it all.
            self.read_request(id, false, now);
            if !self.conns.get(id).is_some_and(Conn::is_handshaking) {
                self.reap(now);
                continue;
            }
            debug!("conn=#{id} cut: its request took over {deadline} ms while accepting waits");
            let response = Response::error(408, "the request did not arrive in time");
            self.refuse(id, response, now);
            self.reap(now);
        }
        let room = self.pending < self.config.max_pending_handshakes;
        if !room && self.full_since.is_none() {
            debug!("accepting paused: {} handshakes pending", self.pending);
            self.full_since = Some(now);
        }
        room
    }

    /// The backlog is drained: a pause for the pending limit, if any, ends here.
    fn end_full_pause(&mut self, now: Millis) {
        if let Some(since) = self.full_since.take() {
            self.counters.accept_paused_ms += now.saturating_sub(since);
        }
    }

    /// Called at the end of each turn: accepting paused at the pending limit resumes once a
    /// handshake ended. The listener is edge-triggered and its backlog was left unread, so no
    /// event would say so.
    pub(super) fn resume_accept(&mut self, now: Millis) {
        if self.full_since.is_some()
            && !self.accept_paused
            && self.pending < self.config.max_pending_handshakes
        {
            self.accept(now);
        }
    }

    fn admit(&mut self, mut stream: TcpStream, now: Millis) {
        self.counters.accepted += 1;
        if self.conns.len() >= self.max_connections {
            let reason = "server at its connection limit";
            debug!("refused a connection: {reason}");
            self.counters.closed(Ending::Refused);
            let mut response = Response::error(503, reason).to_bytes();
            // Best effort on a fresh socket, without taking a slot: answer, shut our side,
            // and discard the request if it is already here so the close is not a reset.
            let _ = conn::write_pending(&mut stream, &mut response, &self.outbox.traffic);
            conn::shut_write(&stream);
            conn::drain(&mut stream, &self.outbox.traffic);
            return;
        }
        let id = self.conns.insert(Conn::new(stream));
        self.pending += 1;
        self.note_handshake(id, now);
        self.trimmer.grew(self.conns.len());
        // The request is usually here already: read (and answer) it before registering.
        // Registering reports what the socket holds then (RFC-less but epoll(7): a socket
        // added while readable raises an event), so nothing that arrives meanwhile is missed,
        // and a socket drained by this read raises no read event at all.
        self.read_request(id, false, now);
        self.arm_handshake_deadline(id, now);
        self.register(id, now);
    }

    /// Puts the handshake deadline on the wheel while the request or its answer is still
    /// under way (the deadline covers both): a request answered at once needs none. A request
    /// still to come remembers the entry, which its connection takes out when it opens: an
    /// idle connection keeps one wheel entry (its heartbeat), not two until the deadline
    /// would have passed.
    fn arm_handshake_deadline(&mut self, id: ConnId, now: Millis) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let handshake_ms = super::duration_ms(self.config.handshake_timeout);
        let at = now + handshake_ms;
        match &mut conn.phase {
            Phase::Handshake { deadline, .. } => *deadline = NonZeroU64::new(at),
            Phase::Responding { .. } => {}
            _ => return,
        }
        self.wheel.insert(Timer::Handshake(id), at);
    }

    /// Remembers when a handshake began, in order, for [`Server::make_room`]; entries of
    /// handshakes that ended are dropped from the front as they come up.
    fn note_handshake(&mut self, id: ConnId, now: Millis) {
        while let Some(&(front, _)) = self.handshakes.front() {
            if self.conns.get(front).is_some_and(Conn::is_handshaking) {
                break;
            }
            self.handshakes.pop_front();
        }
        self.handshakes.push_back((id, now));
    }

    /// Puts a newly accepted connection on the poll, unless its request already ended it.
    fn register(&mut self, id: ConnId, now: Millis) {
        let token = self.tokens.connection(id);
        let Some(stream) = self.conns.get_mut(id).and_then(Conn::stream_mut) else {
            return;
        };
        let registered =
            self.poll_registry
                .register(stream, token, Interest::READABLE | Interest::WRITABLE);
        if let Err(error) = registered {
            warn!("conn=#{id} could not be registered with the poll: {error}");
            if self.conns.get(id).is_some_and(Conn::is_open) {
                self.end(id, crate::model::LeaveReason::Error, now);
            } else {
                self.counters.closed(Ending::Refused);
                self.remove(id);
            }
        }
    }

    /// Reads what the request has so far and acts once it is complete; `to_the_end` when the
    /// event reported the peer's end of stream (see [`conn::read_request`]).
    pub(super) fn read_request(&mut self, id: ConnId, to_the_end: bool, now: Millis) {
        let limit = http::MAX_HEAD + self.config.max_body_size;
        // A parked request was read whole: what follows it waits for its answer.
        if self.is_parked(id) {
            return;
        }
        let Some(Conn {
            phase: Phase::Handshake {
                stream, received, ..
            },
            ..
        }) = self.conns.get_mut(id)
        else {
            return;
        };
        let read = conn::read_request(stream, received, limit, &self.outbox.traffic, to_the_end);
        if let RequestRead::Ended = read {
            debug!("conn=#{id} closed during its request");
            self.counters.closed(Ending::Refused);
            self.remove(id);
            return;
        }
        match http::examine(received, self.config.max_body_size) {
            Examined::Partial => {}
            Examined::Refuse(response) => self.refuse(id, response, now),
            Examined::Complete(request) => {
                let leftover = Leftover {
                    bytes: received.split_off(request.len),
                    unread: matches!(read, RequestRead::Full),
                };
                match http::route(&request) {
                    Ok(Route::WebSocket) => {
                        // Only a host's `on_connect` reads the address: no system call
                        // for it otherwise.
                        let peer = self
                            .engine
                            .has_handler()
                            .then(|| stream.peer_addr().ok())
                            .flatten();
                        self.upgrade(id, &request, peer, leftover, now)
                    }
                    Ok(route) => {
                        let Some(response) = self.serve(id, &route, &request, now) else {
                            return;
                        };
                        if response.is_refusal() {
                            self.refuse(id, response, now);
                        } else {
                            self.counters.closed(Ending::Http);
                            self.respond(id, response.to_bytes(), AfterResponse::Close, now);
                        }
                    }
                    Err(response) => self.refuse(id, response, now),
                }
            }
        }
    }

    fn upgrade(
        &mut self,
        id: ConnId,
        request: &Request,
        peer: Option<SocketAddr>,
        leftover: Leftover,
        now: Millis,
    ) {
        if self.shutdown.is_some() {
            self.refuse(id, Response::error(503, "server shutting down"), now);
            return;
        }
        let Some(dialect) = Dialect::for_request(request, &self.config) else {
            self.refuse(
                id,
                Response::error(404, "no WebSocket protocol is served here"),
                now,
            );
            return;
        };
        let tokens = self
            .config
            .token_secret
            .as_deref()
            .map(|secret| TokenPolicy {
                secret: secret.as_bytes(),
                now_ms: self.engine.unix_millis(now),
                leeway: self.config.token_leeway.as_secs(),
                max_meta_size: self.config.max_meta_size,
            });
        let access = Access {
            allowed_origins: &self.config.allowed_origins,
            admin_token: self.config.admin_token.as_deref(),
            tokens,
        };
        let max = self.config.max_channels_per_conn;
        match dialect.upgrade(request, access, &self.config) {
            // Joins and watches are capped apart, each at `max`.
            Ok(upgrade) if upgrade.channels.len() > max || upgrade.watch.len() > max => {
                let verb = if upgrade.channels.len() > max {
                    "join"
                } else {
                    "watch"
                };
                let message = format!("a connection may {verb} at most {max} channels");
                self.refuse(id, Response::error(400, message), now);
            }
            Ok(upgrade) if upgrade.close_at_once.is_some() => {
                self.upgrade_then_close(id, dialect, &upgrade, now);
            }
            Ok(mut upgrade) => {
                if let Err(response) = self.ask_handler(request, peer, &mut upgrade) {
                    self.refuse(id, response, now);
                    return;
                }
                let user = upgrade.user.take().unwrap_or_else(|| self.anonymous_name());
                let mut response = upgrade.response();
                // The welcome rides with the 101: an idle connection's WebSocket then never
                // allocates an output buffer for it (tungstenite keeps the largest one forever).
                if let Some(welcome) = self.engine.welcome(dialect, id, &user) {
                    append_text_frame(&mut response, welcome);
                    self.counters.messages_sent += 1;
                }
                self.respond(
                    id,
                    response,
                    AfterResponse::Open(Box::new(Opening {
                        upgrade,
                        user,
                        dialect,
                        leftover,
                        deadline: None,
                    })),
                    now,
                );
            }
            Err(response) => self.refuse(id, response, now),
        }
    }

    /// Completes the upgrade, tells the client why in its dialect's words and closes with
    /// the dialect's code: for the refusals a client must see after the upgrade (Pusher's
    /// unknown app key, 4001: an HTTP refusal would make pusher-js retry forever).
    fn upgrade_then_close(&mut self, id: ConnId, dialect: Dialect, upgrade: &Upgrade, now: Millis) {
        let Some((code, reason)) = &upgrade.close_at_once else {
            return;
        };
        debug!("conn=#{id} upgraded to be closed: {reason} (close code {code})");
        let mut response = upgrade.response();
        let closing = Event::Coded {
            code: *code,
            reason,
        };
        if let Some(text) = dialect.encode(&closing) {
            append_text_frame(&mut response, text);
        }
        let close = CloseFrame {
            code: CloseCode::from(*code),
            reason: reason.as_str().into(),
        };
        // Writing into a Vec cannot fail.
        let _ = Frame::close(Some(close)).format(&mut response);
        self.counters.closed(Ending::Refused);
        self.respond(id, response, AfterResponse::Close, now);
    }

    /// Lets the handler decide on a valid upgrade: it may change the user and channels, or
    /// refuse with its own status and reason.
    fn ask_handler(
        &mut self,
        request: &Request,
        peer: Option<SocketAddr>,
        upgrade: &mut Upgrade,
    ) -> Result<(), Response> {
        let target = if request.query.is_empty() {
            request.path.clone()
        } else {
            format!("{}?{}", request.path, request.query)
        };
        let asked = ConnectRequest {
            target,
            user: upgrade.user.as_deref(),
            channels: &upgrade.channels,
            headers: &request.headers,
            peer_addr: peer,
        };
        match self.engine.handler_mut().on_connect(&asked) {
            Decision::Accept => Ok(()),
            // A Pusher connection's user and channels come from its signed subscriptions:
            // the handler may refuse it, not rename it.
            Decision::AcceptAs { .. } if upgrade.pusher_app.is_some() => Ok(()),
            Decision::AcceptAs {
                user,
                channels,
                meta,
            } => {
                let invalid = names::validate_user(&user)
                    .map_err(|error| format!("user {user:?} {error}"))
                    .and_then(|()| {
                        channels.iter().try_for_each(|channel| {
                            names::validate_channel(channel)
                                .map_err(|error| format!("channel {channel:?} {error}"))
                        })
                    });
                if let Err(error) = invalid {
                    warn!("the handler chose an invalid name: {error}");
                    return Err(Response::error(
                        500,
                        "the server chose an invalid user or channel",
                    ));
                }
                let meta = match meta.as_ref().map(Meta::from_value) {
                    Some(None) => {
                        warn!("the handler chose a meta that is not a JSON object");
                        return Err(Response::error(500, "the server chose an invalid meta"));
                    }
                    chosen => chosen.flatten(),
                };
                upgrade.user = Some(user);
                upgrade.channels = channels;
                upgrade.meta = meta;
                upgrade.default_channel = false;
                Ok(())
            }
            Decision::Refuse { status, reason } => {
                Err(Response::error(status.clamp(400, 599), reason))
            }
        }
    }

    /// Answers with an error status and closes; counted as `refused`.
    fn refuse(&mut self, id: ConnId, response: Response, now: Millis) {
        debug!(
            "conn=#{id} refused: {} {}",
            response.status,
            String::from_utf8_lossy(&response.body).trim_end()
        );
        self.counters.closed(Ending::Refused);
        self.respond(id, response.to_bytes(), AfterResponse::Close, now);
    }

    pub(super) fn respond(
        &mut self,
        id: ConnId,
        pending: Vec<u8>,
        mut then: AfterResponse,
        now: Millis,
    ) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let Phase::Handshake {
            stream, deadline, ..
        } = mem::replace(&mut conn.phase, Phase::Gone)
        else {
            self.broken_invariant(id, "respond outside the handshake", now);
            return;
        };
        if let AfterResponse::Open(opening) = &mut then {
            opening.deadline = deadline;
        }
        self.pending -= 1;
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
            stream,
            pending,
            then,
        } = &mut conn.phase
        else {
            return;
        };
        match conn::write_pending(stream, pending, &self.outbox.traffic) {
            Ok(false) => return,
            Ok(true) => {}
            Err(error) => {
                debug!("conn=#{id} failed while writing its response: {error}");
                if let AfterResponse::Open(_) = then {
                    self.counters.closed(Ending::Refused);
                }
                self.remove(id);
                return;
            }
        }
        let Phase::Responding { stream, then, .. } = mem::replace(&mut conn.phase, Phase::Gone)
        else {
            self.broken_invariant(id, "a response finished outside the responding phase", now);
            return;
        };
        match then {
            AfterResponse::Open(opening) => {
                let Opening {
                    upgrade,
                    user,
                    dialect,
                    leftover,
                    deadline,
                } = *opening;
                // Met: its wheel entry would only fire to be skipped, and holds 16 bytes (and
                // its slot's room) for the rest of the timeout.
                if let Some(deadline) = deadline {
                    self.wheel.cancel(Timer::Handshake(id), deadline.get());
                }
                let Upgrade {
                    channels,
                    events,
                    watch,
                    admin,
                    claims,
                    meta,
                    default_channel,
                    pusher_app,
                    ..
                } = upgrade;
                let opened = Opened {
                    user,
                    dialect,
                    events,
                    channels,
                    default_channel,
                    meta,
                    watch,
                    admin,
                    claims,
                    pusher_app,
                };
                self.open(id, stream, opened, leftover, now);
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
        self.drive(id, super::Readiness::INPUT, now);
    }

    pub(super) fn handshake_deadline(&mut self, id: ConnId, now: Millis) {
        if self.unpark_late(id, now) {
            debug!("conn=#{id} gave up waiting for Redis");
            return;
        }
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        match &conn.phase {
            Phase::Handshake { .. } => {
                debug!("conn=#{id} request timed out");
                let response = Response::error(408, "the request did not arrive in time");
                self.refuse(id, response, now);
            }
            Phase::Responding { then, .. } => {
                debug!("conn=#{id} did not take its response in time");
                if let AfterResponse::Open(_) = then {
                    self.counters.closed(Ending::Refused);
                }
                self.remove(id);
            }
            _ => {}
        }
    }

    /// A name for a connection that gave no `user`: `anon-N`.
    fn anonymous_name(&mut self) -> String {
        self.next_anonymous += 1;
        format!("anon-{}", self.next_anonymous)
    }

    /// The 101 and the welcome are out: wrap the socket in a WebSocket, start its session
    /// (its joins and watches), and process any frames that arrived behind the request.
    fn open(
        &mut self,
        id: ConnId,
        stream: TcpStream,
        opened: Opened,
        leftover: Leftover,
        now: Millis,
    ) {
        let stream = MeteredStream::new(stream);
        // With nothing behind the request, the connection starts asleep: the next bytes
        // raise an event, and until then there is nothing to parse.
        let more = !leftover.bytes.is_empty() || leftover.unread;
        let ws = OpenSocket::new(stream, leftover.bytes, self.ws_config);
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        conn.phase = Phase::Open(ws);
        self.engine.open(id, opened, now);
        self.carry_out(now);
        if more {
            self.drive_open(id, now);
        }
    }
}

/// Appends a server-to-client text frame (unmasked, RFC 6455 §5.1) to raw output.
fn append_text_frame(output: &mut Vec<u8>, text: String) {
    let frame = Frame::message(text, OpCode::Data(OpData::Text), true);
    // Writing into a Vec cannot fail.
    let _ = frame.format(output);
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
