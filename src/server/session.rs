//! Open WebSocket sessions: reading frames, running commands against the roster, and
//! turning what changed into deliveries and timers.
//!
//! Invariants: peer input never panics (every tungstenite error ends only that connection,
//! with a reason); a command that fails gets an `error` and changes nothing; once a shutdown
//! has begun, commands are no longer run.

use std::io;
use std::mem;

use log::debug;
use mio::net::TcpStream;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Error as WsError, Message, Utf8Bytes};

use super::conn::{Conn, Phase};
use super::delivery::flush;
use super::{Server, Timer, MESSAGES_PER_TURN};
use crate::metrics::Ending;
use crate::protocol::event;
use crate::protocol::{
    self, Action, Command, CommandError, ErrorCode, EventsMode, Json, LeaveReason, Meta,
};
use crate::rate::Admission;
use crate::roster::{
    Announcement, Change, ChannelId, ConnId, CountsDue, NotJoined, Outcome, UserId,
};
use crate::wheel::Millis;

/// A join of one channel, from the URL or from a `join` command.
pub(super) struct JoinRequest<'a> {
    pub channel: &'a str,
    /// The user's meta; `None` keeps the current one.
    pub meta: Option<Meta>,
    pub mode: EventsMode,
    /// The command's `ref`, echoed by the reply.
    pub reference: Option<&'a Json>,
}

impl Server {
    /// Flushes what is pending and reads messages until `WouldBlock` or the turn's budget.
    pub(super) fn drive_open(&mut self, id: ConnId, now: Millis) {
        for _ in 0..MESSAGES_PER_TURN {
            let Some(Conn {
                phase: Phase::Open(ws),
                liveness,
                ..
            }) = self.conns.get_mut(id)
            else {
                return;
            };
            let result = ws.read();
            // Any byte counts as activity, even part of a message not yet complete.
            if ws.get_mut().take_heard() {
                liveness.heard(now);
            }
            match result {
                Ok(message) => self.on_message(id, message, now),
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    flush(ws, id, &mut self.outbox.doomed);
                    return;
                }
                Err(error) => {
                    self.on_read_error(id, error, now);
                    return;
                }
            }
            if self.outbox.doomed.iter().any(|(doomed, _)| *doomed == id) {
                return;
            }
        }
        self.ready.push(id);
    }

    fn on_message(&mut self, id: ConnId, message: Message, now: Millis) {
        match message {
            // During a shutdown the Close is out; what the peer still says is not acted on.
            Message::Text(_) | Message::Binary(_) if self.shutdown.is_some() => {}
            Message::Text(_) | Message::Binary(_) if self.config.echo => self.echo(id, message),
            Message::Text(_) | Message::Binary(_) if !self.admit_command(id, now) => {
                self.counters.messages_received += 1;
            }
            Message::Text(text) => {
                self.counters.messages_received += 1;
                self.on_text(id, &text, now);
            }
            Message::Binary(_) => {
                self.counters.messages_received += 1;
                let error = CommandError::new(
                    ErrorCode::BadRequest,
                    "binary frames are not part of the protocol; send JSON text",
                );
                self.send_error(id, &error);
            }
            // tungstenite queues the Pong itself; the frame already counted as activity.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            Message::Close(_) => {
                // tungstenite queued the Close reply (RFC 6455 §5.5.1); send it, then close
                // the TCP connection first, as the server should (§7.1.1).
                if let Some(Conn {
                    phase: Phase::Open(ws),
                    ..
                }) = self.conns.get_mut(id)
                {
                    flush(ws, id, &mut self.outbox.doomed);
                }
                self.end(id, LeaveReason::Closed, now);
            }
        }
    }

    /// Applies the command rate limit: false when the command must not run (it was refused
    /// with `rate_limited`, or the connection is flooding and is being closed with 1008).
    fn admit_command(&mut self, id: ConnId, now: Millis) -> bool {
        let Some(limit) = self.config.rate_limit else {
            return true;
        };
        let Some(conn) = self.conns.get_mut(id) else {
            return false;
        };
        match conn.bucket.admit(limit, now) {
            Admission::Allowed => true,
            Admission::Limited => {
                let message = format!(
                    "more than {} commands per second (bursts of {})",
                    limit.per_second, limit.burst
                );
                self.send_error(id, &CommandError::new(ErrorCode::RateLimited, message));
                false
            }
            Admission::Flooding => {
                // RFC 6455 §7.4.1: 1008 for a message that violates the server's policy.
                self.fail(
                    id,
                    CloseCode::Policy,
                    "rate limit exceeded",
                    LeaveReason::Error,
                    now,
                );
                false
            }
        }
    }

    /// Conformance mode ([`crate::Config::echo`]): the message goes back as it came.
    fn echo(&mut self, id: ConnId, message: Message) {
        self.counters.messages_received += 1;
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
            Message::Text(text) => ws.get_mut().queue_text(text, backlog),
            Message::Binary(data) => ws.get_mut().queue_binary(data, backlog),
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
            WsError::Capacity(e) => {
                self.fail(id, CloseCode::Size, &e.to_string(), LeaveReason::Error, now)
            }
            // §8.1: text that is not UTF-8 fails the connection with 1007.
            WsError::Utf8(_) => self.fail(
                id,
                CloseCode::Invalid,
                "invalid UTF-8 in a text message",
                LeaveReason::Error,
                now,
            ),
            // §7.4.1: 1002 for a protocol error (unmasked frame, reserved bits or opcodes...).
            WsError::Protocol(e) => self.fail(
                id,
                CloseCode::Protocol,
                &e.to_string(),
                LeaveReason::Error,
                now,
            ),
            WsError::WriteBufferFull(_) => self.end(id, LeaveReason::SlowConsumer, now),
            other => {
                debug!("conn=#{id} read failed: {other}");
                self.end(id, LeaveReason::Error, now)
            }
        }
    }

    /// Fails the connection (RFC 6455 §7.1.7): a Close frame with `code`, presence leaves
    /// with reason `leave`, then the socket lingers until the peer closes.
    pub(super) fn fail(
        &mut self,
        id: ConnId,
        code: CloseCode,
        reason: &str,
        leave: LeaveReason,
        now: Millis,
    ) {
        debug!(
            "conn=#{id} closed: {reason} (close code {})",
            u16::from(code)
        );
        match self.conns.get(id) {
            Some(conn) if conn.is_open() => {}
            Some(_) => return self.broken_invariant(id, "fail on a connection not open", now),
            None => return,
        }
        self.counters.closed(Ending::WebSocket(leave));
        self.detach(id, leave, now);
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let Phase::Open(mut ws) = mem::replace(&mut conn.phase, Phase::Gone) else {
            return;
        };
        // A close reason is limited to 123 bytes (§5.5: control frames carry at most 125).
        let reason = truncate_utf8(reason, 123);
        let _ = ws.close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from(reason.to_owned()),
        }));
        // Best effort: a peer that cannot take the Close now is not waited for.
        let _ = ws.flush();
        let _ = ws.get_mut().send_queued();
        let stream: TcpStream = ws.into_inner().into_inner();
        self.linger(id, stream, now);
    }

    fn on_text(&mut self, id: ConnId, text: &str, now: Millis) {
        let result = protocol::decode(text, self.config.max_meta_size).and_then(|command| {
            let Command { reference, action } = command;
            self.execute(id, action, reference.as_ref(), now)
                .map_err(|error| CommandError { reference, ..error })
        });
        if let Err(error) = result {
            self.send_error(id, &error);
        }
    }

    fn execute(
        &mut self,
        id: ConnId,
        action: Action,
        reference: Option<&Json>,
        now: Millis,
    ) -> Result<(), CommandError> {
        let Some(Conn {
            user: Some(user),
            mode: url_mode,
            ..
        }) = self.conns.get(id)
        else {
            return Ok(());
        };
        let (user, url_mode) = (user.clone(), *url_mode);
        match action {
            Action::Join {
                channel,
                meta,
                events,
            } => {
                let mode = events.unwrap_or(url_mode);
                let request = JoinRequest {
                    channel: &channel,
                    meta,
                    mode,
                    reference,
                };
                self.join(id, &user, request, now)?;
            }
            Action::Leave { channel } => {
                let channel_id = self.joined(&channel, id)?;
                if let Some(conn) = self.conns.get_mut(id) {
                    conn.channels.remove(channel_id);
                }
                let outcome = self
                    .roster
                    .leave(channel_id, id, &user, LeaveReason::Left, false);
                self.apply(
                    channel_id,
                    outcome.map_err(|e| not_joined(e, &channel))?,
                    now,
                );
            }
            Action::Update { channel, meta } => {
                let channel_id = self.joined(&channel, id)?;
                let outcome = self.roster.update(channel_id, id, &user, meta);
                self.apply(
                    channel_id,
                    outcome.map_err(|e| not_joined(e, &channel))?,
                    now,
                );
            }
            Action::Who { channel } => {
                // Watchers may ask too (§12): they recover from a seq gap like members.
                if !self.watches(id, &channel) {
                    self.joined(&channel, id)?;
                }
                let state = self.state_named(&channel, reference);
                self.send(id, state);
            }
            Action::Publish { channel, data } => {
                if !self.config.client_publish {
                    return Err(CommandError::new(
                        ErrorCode::Forbidden,
                        "publishing is disabled on this server (--client-publish)",
                    ));
                }
                self.joined(&channel, id)?;
                self.publish(&channel, Some(&user), &data, now);
            }
            Action::Watch { channel } => {
                self.check_watch(id, &channel)?;
                self.watch(id, &channel, reference);
            }
            Action::Unwatch { channel } => self.unwatch(id, &channel)?,
            Action::Refresh { token } => self.refresh(id, &token, reference, now)?,
            Action::Ping { id: ping_id } => self.send(id, event::pong(&ping_id, reference)),
        }
        Ok(())
    }

    /// The channel `name` if this connection has joined it, else a `not_joined` error.
    fn joined(&self, name: &str, id: ConnId) -> Result<ChannelId, CommandError> {
        self.roster
            .joined(name, id)
            .map_err(|e| not_joined(e, name))
    }

    /// Subscribes the connection to a channel, replies according to the mode, and tells
    /// the channel what changed.
    pub(super) fn join(
        &mut self,
        id: ConnId,
        user: &UserId,
        request: JoinRequest<'_>,
        now: Millis,
    ) -> Result<(), CommandError> {
        let JoinRequest {
            channel,
            meta,
            mode,
            reference,
        } = request;
        self.check_join_limits(id, user, channel)?;
        // With a token: only the channels it allows, and its meta when the join has none.
        let meta = match self.conns.get(id).and_then(|conn| conn.grant.as_deref()) {
            Some(grant) if !grant.channels.allows(channel) => {
                let message = format!("channel {channel} is not allowed by the connection's token");
                return Err(CommandError::new(ErrorCode::Forbidden, message));
            }
            Some(grant) => meta.or_else(|| grant.meta.clone()),
            None => meta,
        };
        let user = self.count_user(id).unwrap_or_else(|| user.clone());
        let (channel_id, outcome) = self.roster.join(channel, id, &user, meta, mode);
        if let Some(conn) = self.conns.get_mut(id) {
            conn.channels.insert(channel_id);
        }
        // In a cluster the reply reads the view before this join's note comes back: the
        // joiner then gets its own `join` (seq + 1) like every other member.
        match mode {
            EventsMode::All => {
                let state = self.state_message(channel_id, reference);
                self.send(id, state);
            }
            EventsMode::Count => {
                if let Some(counts) = self.channel_counts(channel_id) {
                    self.send(id, event::count(channel, counts, reference));
                }
            }
            EventsMode::None => {}
        }
        self.apply_except(channel_id, outcome, Some(id), now);
        Ok(())
    }

    /// `too_large` when a new subscription would pass the channels-per-connection cap, or
    /// a new member the members-per-channel cap. Joining again what is joined always passes.
    fn check_join_limits(&self, id: ConnId, user: &UserId, name: &str) -> Result<(), CommandError> {
        let channel = self.roster.find(name);
        if channel.is_some_and(|channel| self.roster.mode(channel, id).is_some()) {
            return Ok(());
        }
        let joined = self
            .conns
            .get(id)
            .map_or(0, |conn| conn.channels.as_slice().len());
        let max = self.config.max_channels_per_conn;
        if joined >= max {
            let message = format!("a connection may join at most {max} channels");
            return Err(CommandError::new(ErrorCode::TooLarge, message));
        }
        if let (Some(max), Some(channel)) = (self.config.max_members_per_channel, channel) {
            let members = self
                .channel_counts(channel)
                .map_or(0, |counts| counts.users);
            if members >= max && !self.is_member(channel, user) {
                let message = format!("channel {name} is full ({max} members)");
                return Err(CommandError::new(ErrorCode::TooLarge, message));
            }
        }
        Ok(())
    }

    /// Delivers an outcome's announcement and schedules its counts and grace.
    pub(super) fn apply(&mut self, channel: ChannelId, outcome: Outcome, now: Millis) {
        self.apply_except(channel, outcome, None, now);
    }

    /// [`Server::apply`], with `joiner` left out of an immediate `count` (its join reply
    /// already carried the counts).
    ///
    /// In a live cluster the change goes to the other nodes instead, and local clients hear
    /// of it when its note comes back (see `cluster`).
    fn apply_except(
        &mut self,
        channel: ChannelId,
        outcome: Outcome,
        joiner: Option<ConnId>,
        now: Millis,
    ) {
        if let Some(member) = &outcome.member {
            let leave = match &outcome.announcement {
                Some(Announcement {
                    change: Change::Leave { reason, .. },
                    ..
                }) => Some(*reason),
                _ => None,
            };
            self.tell_cluster(channel, member, leave, now);
        }
        let told_by_cluster = self.cluster_view().is_some();
        if let Some(announcement) = outcome.announcement.filter(|_| !told_by_cluster) {
            self.announce(announcement);
        }
        if outcome.counts_changed && !told_by_cluster {
            self.counts_changed(channel, joiner, now);
        }
        if let Some(grace) = outcome.grace {
            let grace_ms = super::duration_ms(self.config.leave_grace);
            self.wheel.insert(Timer::Grace(grace), now + grace_ms);
        }
    }

    /// The channel's counts changed: tells its `count` subscribers and watchers (but
    /// `except`) now, or schedules it (at most one `count` per second).
    pub(super) fn counts_changed(
        &mut self,
        channel: ChannelId,
        except: Option<ConnId>,
        now: Millis,
    ) {
        let watched_elsewhere = !self.watch_all.is_empty();
        match self.roster.counts_changed(channel, now, watched_elsewhere) {
            CountsDue::Now => self.send_counts(channel, except),
            CountsDue::At(at) => self.wheel.insert(Timer::Counts(channel), at),
            CountsDue::Nothing => {}
        }
    }

    fn send_error(&mut self, id: ConnId, error: &CommandError) {
        self.send(
            id,
            event::error(error.code, &error.message, error.reference.as_ref()),
        );
    }

    /// Takes the connection out of presence: it leaves every channel with `reason` (or
    /// starts the leave grace) and stops counting as its user's connection.
    pub(super) fn detach(&mut self, id: ConnId, reason: LeaveReason, now: Millis) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let Some(user) = conn.user.take() else {
            return;
        };
        let counted = mem::take(&mut conn.counted);
        let channels = mem::take(&mut conn.channels);
        let grace = !self.config.leave_grace.is_zero();
        for &channel in channels.as_slice() {
            if let Ok(outcome) = self.roster.leave(channel, id, &user, reason, grace) {
                self.apply(channel, outcome, now);
            }
        }
        if counted {
            self.roster.disconnect_user(&user);
        }
        self.unwatch_everything(id);
    }

    /// Registers a connection that only watched as one of its user's connections, now that
    /// it joins a channel, and returns the roster's id of the user.
    fn count_user(&mut self, id: ConnId) -> Option<UserId> {
        let conn = self.conns.get_mut(id)?;
        if !conn.counted {
            let name = conn.user.take()?;
            conn.user = Some(self.roster.connect_user(&name));
            conn.counted = true;
        }
        conn.user.clone()
    }
}

fn not_joined(_: NotJoined, channel: &str) -> CommandError {
    CommandError::new(
        ErrorCode::NotJoined,
        format!("not joined to channel {channel}"),
    )
}

fn truncate_utf8(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
