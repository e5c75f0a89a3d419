//! The application, pure: presence, commands, limits, liveness, tokens, watchers, counts,
//! the cluster's state and shutdown, for connections it knows only by id.
//!
//! The socket layer (`server`) feeds it inputs, each with the loop's `now`: a connection
//! opened ([`Engine::open`]) with the identity its dialect read, bytes heard from it, a
//! decoded command, a connection ended with its reason, a deadline due, a cluster reply.
//! The engine answers with [`Effect`]s the loop takes ([`Engine::take_effects`]) and
//! carries out: deliver this text to these connections, ping, close or drop one, arm a
//! deadline, connect to or let go of Redis. The host's [`Handler`] is called from here as
//! presence changes: it needs no I/O.
//!
//! Invariants:
//! - No socket, no clock: time is a parameter; the only effects are the ones returned.
//! - A session exists from [`Engine::open`] until the connection ends; an input naming a
//!   connection without one (a stale id) does nothing.
//! - A command that fails gets an `error` and changes nothing; once a shutdown has begun,
//!   commands are no longer run and no presence event is sent (everyone is leaving).
//! - Every broadcast is encoded once per dialect in use, and reaches each recipient once.

mod channel_set;
mod cluster;
mod cluster_last_seen;
mod commands;
mod delivery;
mod diff;
mod handler;
#[cfg(feature = "webhooks")]
mod hooks;
#[cfg(not(feature = "webhooks"))]
#[path = "no_hooks.rs"]
mod hooks;
mod host;
#[cfg(feature = "pusher")]
mod pusher;
mod reads;
mod session;
#[cfg(feature = "pusher")]
mod signin;
mod slot_table;
#[cfg(test)]
mod tests;
mod tokens;
mod watch;
mod watched_users;

use std::mem;

use log::debug;

use crate::cluster::session::Session as ClusterSession;
use crate::config::Config;
use crate::dialect::{Decoded, Dialect};
use crate::heartbeat::{Heartbeat, Liveness, Verdict};
use crate::model::{Command, CommandError, ErrorCode, Event, EventsMode, LeaveReason, Meta};
use crate::rate::RateBucket;
use crate::roster::{ChannelId, ConnId, GraceKey, Roster};
use crate::token::Claims;
use crate::wheel::Millis;
use handler::NoHandler;
pub use handler::{ConnectRequest, Decision, Handler, Presence};
pub(crate) use host::{check_channel, check_user, json_text, HostCommand};
pub use host::{Actions, HandleError, MAX_HOOK_CHAIN};
#[cfg(feature = "pusher")]
pub use pusher::PusherChannel;
pub use reads::UserPresence;

use session::Extra;
pub(crate) use session::Session;
use session::Sessions;

/// The application close code for an expired token (RFC 6455 §7.4.2: 4000–4999 are ours).
pub const TOKEN_EXPIRED: u16 = 4001;

/// RFC 6455 §7.4.1: 1008, a message that violates the server's policy (flooding).
pub const POLICY: u16 = 1008;

/// RFC 6455 §7.4.1: 1000, a normal closure (the host disconnected the user).
pub const NORMAL: u16 = 1000;

/// A deadline of the engine's, armed through [`Effect::Arm`] on the loop's wheel and given
/// back to [`Engine::on_timer`] when due. Each kind checks that it still applies, so an
/// entry outlived by its connection or channel does nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// Time to look at the connection's liveness.
    Heartbeat(ConnId),
    /// A user's leave grace ends.
    Grace(GraceKey),
    /// A channel's coalesced `count` is due.
    Counts(ChannelId),
    /// A channel's `diff` window ends (see `diff`).
    Diff(ChannelId),
    /// The connection's token expires (unless it was refreshed meanwhile).
    TokenExpiry(ConnId),
    /// The cluster's periodic look at its Redis connections.
    ClusterTick,
}

/// Who a delivery goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipients {
    /// One connection (a reply).
    One(ConnId),
    /// Several, each once.
    Many(Vec<ConnId>),
}

impl Recipients {
    /// The recipients as a slice.
    pub fn as_slice(&self) -> &[ConnId] {
        match self {
            Recipients::One(id) => std::slice::from_ref(id),
            Recipients::Many(ids) => ids,
        }
    }
}

/// What the loop must do for the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Send `text` (a frame of the recipients' dialect) to each recipient.
    Deliver {
        /// Who.
        to: Recipients,
        /// The frame's text.
        text: String,
    },
    /// Send a heartbeat Ping (RFC 6455 §5.5.2).
    Ping(ConnId),
    /// Send a Close frame and let the socket linger until the peer closes; the session has
    /// ended with `leave`.
    Close {
        /// The connection.
        conn: ConnId,
        /// The close code.
        code: u16,
        /// The close reason.
        reason: String,
        /// How its presence ended.
        leave: LeaveReason,
    },
    /// Drop the socket without a word (the peer went silent); the session has ended with
    /// `leave`.
    Drop {
        /// The connection.
        conn: ConnId,
        /// How its presence ended.
        leave: LeaveReason,
    },
    /// A shutdown began: send a Close 1001 (going away, RFC 6455 §7.4.1) and wait for the
    /// peer's answer, which ends the connection.
    GoingAway(ConnId),
    /// Put `timer` on the wheel at `at`.
    Arm {
        /// The deadline's kind.
        timer: Timer,
        /// When.
        at: Millis,
    },
    /// Open both Redis connections, then call [`Engine::cluster_connected`].
    ClusterConnect,
    /// Close both Redis connections (the node has fallen back to local presence).
    ClusterDisconnect,
    /// The answer to [`Engine::ask_last_seen`]'s `lookup`: the users' last-seen times (Unix
    /// ms) in Redis, in the order asked; `None` when Redis did not answer in time.
    LastSeen {
        /// The lookup.
        lookup: u64,
        /// One per user asked about.
        values: Option<Vec<Option<u64>>>,
    },
}

/// A connection the socket layer has upgraded, as its dialect read the request.
pub struct Opened {
    /// The user it connects as.
    pub user: String,
    /// Its wire dialect.
    pub dialect: Dialect,
    /// The events mode for its joins.
    pub events: EventsMode,
    /// The channels to join, in order (none: the default channel, unless it watches or
    /// `default_channel` is false).
    pub channels: Vec<String>,
    /// False when the host chose the channels: an empty list then joins nothing.
    pub default_channel: bool,
    /// The meta of its joins (the host's choice; else the token's, else none).
    pub meta: Option<Meta>,
    /// The channels (or `*`) to watch.
    pub watch: Vec<String>,
    /// True when it presented the admin token.
    pub admin: bool,
    /// Its verified token's claims, when tokens are required.
    pub claims: Option<Claims>,
    /// For a Pusher connection, its app (an index into the configured apps). It joins
    /// nothing at first and is no user until a presence subscription names one.
    pub pusher_app: Option<u16>,
}

/// The application.
pub struct Engine {
    config: Config,
    heartbeat: Heartbeat,
    /// Unix milliseconds at the loop's time 0 (token times are Unix seconds).
    unix_origin_ms: u64,
    sessions: Sessions,
    /// Sessions per dialect: a broadcast is encoded for the dialects in use only.
    in_use: [usize; Dialect::COUNT],
    roster: Roster,
    /// Connections watching every channel.
    watch_all: Vec<ConnId>,
    /// True once a graceful shutdown has begun.
    shutting_down: bool,
    /// This node's Redis session, in a cluster.
    cluster: Option<ClusterSession>,
    /// The Pusher apps' socket ids, cache channels and signed-in users.
    #[cfg(feature = "pusher")]
    pusher: pusher::PusherState,
    /// Webhook events decided and not yet taken (`None`: no webhooks configured).
    #[cfg(feature = "webhooks")]
    notices: Option<Vec<crate::webhook::Notice>>,
    /// When users whose last connection ended were last seen (bounded).
    last_seen: crate::last_seen::LastSeen,
    /// Who follows which users' online status (beside the sessions: see `watched_users`).
    watched_users: watched_users::WatchedUsers,
    /// Last-seen lookups waiting for Redis (see `cluster_last_seen`).
    lookups: cluster_last_seen::Lookups,
    handler: Box<dyn Handler>,
    /// True once a host installed its handler.
    hosted: bool,
    /// What the handler's hooks asked for, carried out once the input that called them
    /// is done.
    actions: Actions,
    effects: Vec<Effect>,
    /// The channels whose `diff` window is open (see `diff`).
    diffs: std::collections::HashMap<ChannelId, diff::DiffWindow>,
}

/// Effects whose room the engine, and the loop carrying them out, keep between turns.
pub(crate) const EFFECTS_KEPT: usize = 256;

impl Engine {
    /// An engine for `config` (validated), whose loop time 0 is `unix_origin_ms` in Unix
    /// milliseconds, a node of a cluster when `cluster` is given; `seed` (random) makes
    /// this run's Pusher socket ids unlike another's.
    #[cfg_attr(not(feature = "pusher"), allow(unused_variables))]
    pub fn new(
        config: &Config,
        unix_origin_ms: u64,
        seed: u64,
        mut cluster: Option<ClusterSession>,
    ) -> Engine {
        let mut effects = Vec::new();
        if let Some(cluster) = cluster.as_mut() {
            cluster.set_unix_origin(unix_origin_ms);
            effects.push(Effect::Arm {
                timer: Timer::ClusterTick,
                at: 0,
            });
        }
        Engine {
            heartbeat: Heartbeat {
                interval: millis(config.heartbeat_interval),
                timeout: millis(config.heartbeat_timeout),
            },
            config: config.clone(),
            unix_origin_ms,
            sessions: Sessions::default(),
            in_use: [0; Dialect::COUNT],
            roster: Roster::new(),
            watch_all: Vec::new(),
            shutting_down: false,
            cluster,
            #[cfg(feature = "pusher")]
            pusher: pusher::PusherState::new(seed),
            #[cfg(feature = "webhooks")]
            notices: config.webhooks.enabled().then(Vec::new),
            last_seen: crate::last_seen::LastSeen::new(config.last_seen_capacity),
            watched_users: Default::default(),
            lookups: Default::default(),
            handler: Box::new(NoHandler),
            hosted: false,
            actions: Actions::default(),
            effects,
            diffs: std::collections::HashMap::new(),
        }
    }

    /// Installs the host's hooks.
    pub fn set_handler(&mut self, handler: Box<dyn Handler>) {
        self.handler = handler;
        self.hosted = true;
    }

    /// True when a host installed a handler (whose `on_connect` may want the peer's address).
    pub fn has_handler(&self) -> bool {
        self.hosted
    }

    /// The host's hooks (the socket layer asks them about connection requests).
    pub fn handler_mut(&mut self) -> &mut dyn Handler {
        self.handler.as_mut()
    }

    /// Carries out the actions the hooks queued, then moves the effects decided so far into
    /// `into` (in the order they were decided).
    pub fn take_effects(&mut self, now: Millis, into: &mut Vec<Effect>) {
        self.run_hook_actions(now);
        into.append(&mut self.effects);
        // A tick over a crowd decides an effect per connection: give that room back.
        self.effects.shrink_to(EFFECTS_KEPT);
    }

    /// True once a graceful shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// The presence roster (read only).
    pub fn roster(&self) -> &Roster {
        &self.roster
    }

    /// The dialect of an open connection.
    pub fn dialect(&self, id: ConnId) -> Option<Dialect> {
        self.sessions.get(id).map(|session| session.dialect)
    }

    /// The welcome a connection of `dialect` gets with its 101, if its dialect has one. A
    /// Pusher connection is named by its socket id and told the Pusher activity timeout.
    pub fn welcome(&self, dialect: Dialect, conn: ConnId, user: &str) -> Option<String> {
        let (conn, interval_ms) = match dialect {
            #[cfg(feature = "pusher")]
            Dialect::Pusher => {
                let app = self.pusher_socket(conn).map(|p| p.app);
                let limits = self.config.pusher.limits(app.unwrap_or_default());
                (self.socket_id(conn), millis(limits.activity_timeout))
            }
            _ => (conn.to_string(), self.heartbeat.interval),
        };
        dialect.encode(&Event::Welcome {
            conn: &conn,
            user,
            interval_ms,
            timeout_ms: self.heartbeat.timeout,
        })
    }

    /// Open connections (watchers included).
    pub fn open_connections(&self) -> usize {
        self.sessions.len()
    }

    /// Open connections that watch anything.
    pub fn watchers(&self) -> usize {
        self.sessions.iter().filter(|(_, s)| s.is_watcher()).count()
    }

    /// The open connections of `user` (a scan: asked by hosts, rarely).
    pub fn connections_of(&self, user: &str) -> Vec<ConnId> {
        self.sessions
            .iter()
            .filter(|(_, session)| &*session.user == user)
            .map(|(id, _)| id)
            .collect()
    }

    /// A connection's WebSocket is open at `now`: its session starts, it joins and watches
    /// what it asked for (the default channel when it asked for nothing), and its heartbeat
    /// and token deadlines are armed.
    pub fn open(&mut self, id: ConnId, opened: Opened, now: Millis) {
        let Opened {
            user: name,
            dialect,
            events,
            channels,
            default_channel,
            meta,
            watch,
            admin,
            claims,
            pusher_app,
        } = opened;
        let carries_presence = dialect.carries_presence();
        // A connection that only watches is no user (§12): it is counted once it joins. A
        // Pusher connection is one once a presence subscription names its user.
        let watches_only = channels.is_empty() && !watch.is_empty();
        let counted = !watches_only && pusher_app.is_none();
        let user = if counted {
            self.roster.connect_user(&name)
        } else {
            name.as_str().into()
        };
        // Only a token's expiry is armed: a grant that joins nothing never expires.
        let token_deadline = claims.as_ref().map(|c| self.token_deadline(c.expires_at));
        let grant = match claims {
            Some(claims) => Some(claims),
            // Tokens are required but the admin token let it in to watch: it joins nothing.
            None if self.config.token_secret.is_some() => Some(Claims::joining_nothing(&name)),
            None => None,
        };
        // Without a rate limit the bucket is never consulted.
        let bucket = self
            .config
            .rate_limit
            .map_or_else(RateBucket::default, |limit| RateBucket::new(limit, now));
        let liveness = Liveness::new(now);
        self.arm(
            Timer::Heartbeat(id),
            liveness.first_deadline(self.heartbeat),
        );
        if let Some(at) = token_deadline {
            self.arm(Timer::TokenExpiry(id), at);
        }
        let default_allowed = grant
            .as_ref()
            .is_none_or(|grant| grant.channels.allows(&self.config.default_channel));
        self.sessions.insert(
            id,
            Session {
                user: user.clone(),
                channels: Default::default(),
                extra: grant.map(Extra::vouched),
                liveness,
                bucket,
                dialect,
                mode: events,
                admin,
                counted,
                generation: 0,
            },
        );
        self.in_use[dialect.index()] += 1;
        #[cfg(feature = "pusher")]
        if let Some(app) = pusher_app {
            self.open_pusher_socket(id, app);
        }
        // Quoted and escaped: a user id may hold spaces, quotes or right-to-left text.
        debug!("conn=#{id} open as user {user:?}");
        if counted {
            self.watched_user_may_change(&user, now);
        }
        if !carries_presence {
            return;
        }
        // Only a connection that asks for nothing lands in the default channel: a watcher
        // that names no channel stays out of presence, and so does one whose channels the
        // host chose (none is none). With a token, only if it allows it.
        let default_channel = default_channel && pusher_app.is_none();
        let channels = if channels.is_empty() && watch.is_empty() && default_channel {
            let default = &self.config.default_channel;
            default_allowed
                .then(|| default.clone())
                .into_iter()
                .collect()
        } else {
            channels
        };
        for channel in channels {
            let request = commands::JoinRequest {
                channel: &channel,
                meta: meta.clone(),
                mode: events,
                reference: None,
            };
            if let Err(error) = self.join(id, request, now) {
                self.send_error(id, &error);
            }
        }
        for target in watch {
            self.watch(id, &target, None);
        }
    }

    /// Bytes arrived from the connection at `now` (any byte counts as activity, even part
    /// of a message not yet complete).
    pub fn heard(&mut self, id: ConnId, now: Millis) {
        if let Some(session) = self.sessions.get_mut(id) {
            session.liveness.heard(now);
        }
    }

    /// A data frame arrived, as its dialect decoded it ([`Decoded::Echo`] never comes here:
    /// the socket layer sends it back). The rate limit applies first; then the command runs
    /// or the refusal is answered.
    pub fn on_frame(&mut self, id: ConnId, decoded: Decoded, now: Millis) {
        if self.shutting_down || !self.admit_command(id, now) {
            return;
        }
        match decoded {
            Decoded::Command(command) => self.on_command(id, command, now),
            Decoded::Refused(error) => self.send_error(id, &error),
            Decoded::Echo | Decoded::Activity => {}
        }
    }

    fn on_command(&mut self, id: ConnId, command: Command, now: Millis) {
        let Command { reference, action } = command;
        if let Err(error) = self.execute(id, action, reference.as_ref(), now) {
            self.send_error(id, &CommandError { reference, ..error });
        }
    }

    /// The connection ended at `now` for `reason` (the peer closed, failed, or could not
    /// keep up): its presence leaves. Returns the reason it ended with (`shutdown` during
    /// a shutdown), or `None` when it had no session.
    pub fn end(&mut self, id: ConnId, reason: LeaveReason, now: Millis) -> Option<LeaveReason> {
        let reason = if self.shutting_down {
            LeaveReason::Shutdown
        } else {
            reason
        };
        self.detach(id, reason, now).then_some(reason)
    }

    /// A deadline the engine armed is due at `now`.
    pub fn on_timer(&mut self, timer: Timer, now: Millis) {
        match timer {
            Timer::Heartbeat(id) => self.heartbeat_deadline(id, now),
            Timer::Grace(key) => {
                if let Some((channel, outcome)) = self.roster.end_grace(key) {
                    self.apply(channel, outcome, None, now);
                }
            }
            Timer::Counts(channel) => {
                if self.roster.flush_counts(channel, now) {
                    self.send_counts(channel, None);
                }
            }
            Timer::Diff(channel) => self.diff_due(channel, now),
            Timer::TokenExpiry(id) => self.token_deadline_passed(id, now),
            Timer::ClusterTick => self.cluster_tick(now),
        }
    }

    /// Starts a graceful shutdown at `now`: every open connection is told to go away, and
    /// in a cluster the node's users leave with reason `shutdown`.
    pub fn begin_shutdown(&mut self, now: Millis) {
        if mem::replace(&mut self.shutting_down, true) {
            return;
        }
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.goodbye(now);
        }
        let open: Vec<ConnId> = self.sessions.iter().map(|(id, _)| id).collect();
        for id in open {
            // A dialect that explains closes in its own frames (Pusher) says why first.
            if let Some(dialect) = self.dialect(id) {
                let code = dialect.going_away_code();
                self.send(
                    id,
                    &Event::Coded {
                        code,
                        reason: "server shutting down",
                    },
                );
            }
            self.effects.push(Effect::GoingAway(id));
        }
    }

    /// Ends the connection with a Close frame of `code` and `reason` (RFC 6455 §7.1.7):
    /// presence leaves with reason `leave`.
    fn fail(&mut self, id: ConnId, code: u16, reason: &str, leave: LeaveReason, now: Millis) {
        debug!("conn=#{id} closed: {reason} (close code {code})");
        self.send(id, &Event::Coded { code, reason });
        let leave = self.end(id, leave, now);
        if let Some(leave) = leave {
            self.effects.push(Effect::Close {
                conn: id,
                code,
                reason: reason.to_owned(),
                leave,
            });
        }
    }

    /// The host disconnects every connection of `user` (Close 1000); returns how many.
    pub fn disconnect_user(&mut self, user: &str, now: Millis) -> usize {
        let connections = self.connections_of(user);
        for &id in &connections {
            self.fail(
                id,
                NORMAL,
                "disconnected by the server",
                LeaveReason::Closed,
                now,
            );
        }
        connections.len()
    }

    /// The host disconnects one connection (Close 1000); false when no such connection is
    /// open.
    pub fn disconnect_connection(&mut self, id: ConnId, now: Millis) -> bool {
        if self.sessions.get(id).is_none() {
            return false;
        }
        self.fail(
            id,
            NORMAL,
            "disconnected by the server",
            LeaveReason::Closed,
            now,
        );
        true
    }

    fn heartbeat_deadline(&mut self, id: ConnId, now: Millis) {
        // A Pusher connection quiet since its last client events keeps no bucket for them.
        #[cfg(feature = "pusher")]
        self.pusher.client_events.forget_if_full(&id, now);
        let heartbeat = self.heartbeat;
        let Some(session) = self.sessions.get_mut(id) else {
            return;
        };
        match session.liveness.on_deadline(now, heartbeat) {
            Verdict::Recheck(at) => self.arm(Timer::Heartbeat(id), at),
            Verdict::Ping(at) => {
                let dialect = session.dialect;
                self.effects.push(Effect::Ping(id));
                // A dialect with pings of its own (Pusher) gets one too: its clients count
                // only their own frames as activity.
                if let Some(text) = dialect.encode(&Event::Ping) {
                    self.effects.push(Effect::Deliver {
                        to: Recipients::One(id),
                        text,
                    });
                }
                self.arm(Timer::Heartbeat(id), at);
            }
            #[cfg(feature = "pusher")]
            Verdict::Expired if session.dialect == Dialect::Pusher => {
                // Told why, and closed with 4201: pusher-js reconnects at once.
                let reason = "pong reply not received";
                let code = pusher::PONG_NOT_RECEIVED;
                self.fail(id, code, reason, LeaveReason::Timeout, now);
            }
            Verdict::Expired => {
                debug!(
                    "conn=#{id} silent for {} ms: dropped",
                    now - session.liveness.last_seen()
                );
                if let Some(leave) = self.end(id, LeaveReason::Timeout, now) {
                    self.effects.push(Effect::Drop { conn: id, leave });
                }
            }
        }
    }

    /// Applies the command rate limit: false when the command must not run (it was refused
    /// with `rate_limited`, or the connection is flooding and is being closed with 1008).
    fn admit_command(&mut self, id: ConnId, now: Millis) -> bool {
        let Some(session) = self.sessions.get_mut(id) else {
            return false;
        };
        let Some(limit) = self.config.rate_limit else {
            return true;
        };
        match session.bucket.admit(limit, now) {
            crate::rate::Admission::Allowed => true,
            crate::rate::Admission::Limited => {
                let message = format!(
                    "more than {} commands per second (bursts of {})",
                    limit.per_second, limit.burst
                );
                self.send_error(id, &CommandError::new(ErrorCode::RateLimited, message));
                false
            }
            crate::rate::Admission::Flooding => {
                self.fail(id, POLICY, "rate limit exceeded", LeaveReason::Error, now);
                false
            }
        }
    }

    /// Takes the connection out of presence: it leaves every channel with `reason` (or
    /// starts the leave grace), stops counting as its user's connection and stops watching.
    /// False when it had no session.
    fn detach(&mut self, id: ConnId, reason: LeaveReason, now: Millis) -> bool {
        let Some(session) = self.sessions.remove(id) else {
            return false;
        };
        self.in_use[session.dialect.index()] -= 1;
        // Watches end first: the connection is then on no list a leave below is told to.
        if let Some(watching) = session.watching() {
            self.unwatch_everything(id, watching);
        }
        let grace = !self.config.leave_grace.is_zero();
        for &channel in session.channels.as_slice() {
            let hooked = self.subscription_hook_name(channel);
            if let Ok(outcome) = self.roster.leave(channel, id, &session.user, reason, grace) {
                self.apply(channel, outcome, None, now);
            }
            if let Some(name) = hooked {
                self.hook_subscriptions(channel, &name, false);
            }
        }
        if session.counted {
            self.roster.disconnect_user(&session.user);
            if self.roster.user_connections(&session.user) == 0 {
                let unix_ms = self.unix_origin_ms.saturating_add(now);
                self.last_seen.record(&session.user, unix_ms);
            }
        }
        #[cfg(feature = "pusher")]
        if let Some(socket) = self.close_pusher_socket(id) {
            if socket.signed_in {
                self.signed_out(id, socket.app, &session.user);
            }
        }
        self.forget_watched_users(id);
        self.watched_user_may_change(&session.user, now);
        true
    }

    fn arm(&mut self, timer: Timer, at: Millis) {
        self.effects.push(Effect::Arm { timer, at });
    }
}

/// A duration in whole milliseconds (saturating).
pub(crate) fn millis(duration: std::time::Duration) -> Millis {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
