//! Running one command of an open connection against the roster, and the limits a join
//! must pass: the channels-per-connection cap, the members-per-channel cap, the token's
//! grant. A command that fails returns its error and changes nothing.

use super::{Engine, Session, Timer};
use crate::model::{Action, CommandError, ErrorCode, Event, EventsMode, Json, LeaveReason, Meta};
use crate::roster::{Announcement, Change, ChannelId, ConnId, CountsDue, NotJoined, Outcome};
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

impl Engine {
    pub(super) fn execute(
        &mut self,
        id: ConnId,
        action: Action,
        reference: Option<&Json>,
        now: Millis,
    ) -> Result<(), CommandError> {
        let Some(session) = self.sessions.get(id) else {
            return Ok(());
        };
        let (user, url_mode) = (session.user.clone(), session.mode);
        match action {
            Action::Join {
                channel,
                meta,
                events,
            } => {
                let request = JoinRequest {
                    channel: &channel,
                    meta,
                    mode: events.unwrap_or(url_mode),
                    reference,
                };
                self.join(id, request, now)?;
            }
            Action::Leave { channel } => {
                let channel_id = self.joined(&channel, id)?;
                if let Some(session) = self.sessions.get_mut(id) {
                    session.channels.remove(channel_id);
                }
                let outcome = self
                    .roster
                    .leave(channel_id, id, &user, LeaveReason::Left, false)
                    .map_err(|e| not_joined(e, &channel))?;
                self.apply(channel_id, outcome, None, now);
            }
            Action::Update { channel, meta } => {
                let channel_id = self.joined(&channel, id)?;
                let outcome = self
                    .roster
                    .update(channel_id, id, &user, meta)
                    .map_err(|e| not_joined(e, &channel))?;
                self.apply(channel_id, outcome, None, now);
            }
            Action::Who { channel } => {
                // Watchers may ask too (§12): they recover from a seq gap like members.
                if !self.watches(id, &channel) {
                    self.joined(&channel, id)?;
                }
                self.send_state(id, &channel, reference);
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
            Action::WatchUsers { users } => self.watch_users(id, &users, reference, now)?,
            Action::UnwatchUsers { users } => self.unwatch_users(id, &users),
            Action::Refresh { token } => self.refresh(id, &token, reference, now)?,
            Action::Ping { id: ping_id } => self.send(
                id,
                &Event::Pong {
                    id: &ping_id,
                    reference,
                },
            ),
            #[cfg(feature = "pusher")]
            action @ (Action::Subscribe { .. }
            | Action::Unsubscribe { .. }
            | Action::Signin { .. }
            | Action::ClientEvent { .. }) => self.pusher_action(id, action, now)?,
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
        request: JoinRequest<'_>,
        now: Millis,
    ) -> Result<(), CommandError> {
        let JoinRequest {
            channel,
            meta,
            mode,
            reference,
        } = request;
        self.check_join_limits(id, channel)?;
        // With a token: only the channels it allows, and its meta when the join has none.
        let meta = match self.sessions.get(id).and_then(Session::grant) {
            Some(grant) if !grant.channels.allows(channel) => {
                let message = format!("channel {channel} is not allowed by the connection's token");
                return Err(CommandError::new(ErrorCode::Forbidden, message));
            }
            Some(grant) => meta.or_else(|| grant.meta.clone()),
            None => meta,
        };
        let Some(user) = self.count_user(id) else {
            return Ok(());
        };
        let (channel_id, outcome) = self.roster.join(channel, id, &user, meta, mode);
        if let Some(session) = self.sessions.get_mut(id) {
            session.channels.insert(channel_id);
        }
        // In a cluster the reply reads the view before this join's note comes back: the
        // joiner then gets its own `join` (seq + 1) like every other member.
        match mode {
            EventsMode::Diff if self.defer_diff_state(id, channel_id, reference) => {}
            EventsMode::All | EventsMode::Diff => self.send_join_state(id, channel, reference),
            EventsMode::Count => {
                if let Some(counts) = self.channel_counts(channel_id) {
                    let count = Event::Count {
                        channel,
                        counts,
                        reference,
                    };
                    self.send(id, &count);
                }
            }
            EventsMode::None => {}
        }
        self.apply(channel_id, outcome, Some(id), now);
        Ok(())
    }

    /// `too_large` when a new subscription would pass the channels-per-connection cap, or
    /// a new member the members-per-channel cap. Joining again what is joined always passes.
    fn check_join_limits(&self, id: ConnId, name: &str) -> Result<(), CommandError> {
        let Some(session) = self.sessions.get(id) else {
            return Ok(());
        };
        let channel = self.roster.find(name);
        if channel.is_some_and(|channel| self.roster.mode(channel, id).is_some()) {
            return Ok(());
        }
        let max = self.config.max_channels_per_conn;
        if session.channels.as_slice().len() >= max {
            let message = format!("a connection may join at most {max} channels");
            return Err(CommandError::new(ErrorCode::TooLarge, message));
        }
        if let (Some(max), Some(channel)) = (self.config.max_members_per_channel, channel) {
            let members = self
                .channel_counts(channel)
                .map_or(0, |counts| counts.users);
            if members >= max && !self.is_member(channel, &session.user) {
                let message = format!("channel {name} is full ({max} members)");
                return Err(CommandError::new(ErrorCode::TooLarge, message));
            }
        }
        Ok(())
    }

    /// Registers a connection that only watched as one of its user's connections, now that
    /// it joins a channel, and returns the roster's id of the user.
    pub(super) fn count_user(&mut self, id: ConnId) -> Option<crate::roster::UserId> {
        let session = self.sessions.get_mut(id)?;
        if !session.counted {
            session.user = self.roster.connect_user(&session.user);
            session.counted = true;
        }
        Some(session.user.clone())
    }

    /// Delivers an outcome's announcement and schedules its counts and grace; `joiner` is
    /// left out of an immediate `count` (its join reply already carried the counts).
    ///
    /// In a live cluster the change goes to the other nodes instead, and local clients hear
    /// of it when its note comes back (see `cluster`).
    pub(super) fn apply(
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
            let emptied = !self.roster.has_members(channel);
            self.hook_change(&announcement.name, &announcement.change, emptied);
            self.announce(announcement, now);
        }
        if outcome.counts_changed && !told_by_cluster {
            self.counts_changed(channel, joiner, now);
        }
        if let Some(grace) = outcome.grace {
            let grace_ms = super::millis(self.config.leave_grace);
            self.arm(Timer::Grace(grace), now + grace_ms);
        }
        if let Some(member) = &outcome.member {
            self.watched_user_may_change(&member.user, now);
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
            CountsDue::At(at) => self.arm(Timer::Counts(channel), at),
            CountsDue::Nothing => {}
        }
    }

    pub(super) fn send_error(&mut self, id: ConnId, error: &CommandError) {
        let event = Event::Error {
            code: error.code,
            message: &error.message,
            reference: error.reference.as_ref(),
            channel: error.channel.as_deref(),
        };
        self.send(id, &event);
    }
}

fn not_joined(_: NotJoined, channel: &str) -> CommandError {
    CommandError::new(
        ErrorCode::NotJoined,
        format!("not joined to channel {channel}"),
    )
}
