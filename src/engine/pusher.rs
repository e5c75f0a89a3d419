//! Pusher connections: subscriptions signed by the app's backend, presence by the `user_id`
//! of the signed channel data, client events; and what the Pusher REST API asks of the
//! engine (events, channel reads, terminating a user's connections).
//!
//! Rules (protocol 7, `../shared/pusher-protocol.md` §2-§5):
//! - A subscription to a public channel needs nothing; private and presence ones need the
//!   app's signature over the socket id, the channel and (presence) the channel data, as
//!   sent. Every subscribe is answered: `subscription_succeeded` or `subscription_error`.
//! - Presence members are users: a user's first socket in the channel is announced
//!   (`member_added`), its last one leaving too (`member_removed`), after the leave grace.
//!   A connection is one user: a presence subscription naming another user is refused.
//! - Public and private subscribers are no members: they only hear the channel's events.
//! - Client events go to the channel's other subscribers, never back to the sender.

use super::commands::JoinRequest;
use super::signin::Online;
use super::slot_table::Beside;
use super::{Effect, Engine, Recipients};
use crate::cluster::note::Note;
use crate::dialect::Dialect;
use crate::model::{Action, CommandError, ErrorCode, Event, EventsMode, Json, LeaveReason, Meta};
use crate::names;
use crate::pusher::cache::EventCache;
use crate::pusher::socket_id::SocketIds;
use crate::pusher::{auth, channel, split_internal, App, ChannelKind, MAX_EVENT_NAME};
use crate::rate::{Admission, RateBuckets, RateLimit};
use crate::roster::ConnId;
use crate::wheel::Millis;

/// The Pusher apps' state beside the roster.
pub(super) struct PusherState {
    /// How Pusher connections are named on the wire.
    socket_ids: SocketIds,
    /// The last event of each Pusher `cache-` channel.
    event_cache: EventCache,
    /// Pusher users signed in, and who watches them.
    pub(super) online: Online,
    /// Each Pusher connection's socket state, in the slot of its id: 4 bytes in one table,
    /// not an allocation of its own beside the session (see `PusherSocket`).
    sockets: Beside<PusherSocket>,
    /// The client-event rate limits of the connections that sent any lately (most never
    /// do: a bucket of their own would cost every Pusher connection 8 bytes).
    pub(super) client_events: RateBuckets<ConnId>,
}

impl PusherState {
    /// `seed` (random) makes this run's socket ids unlike another's.
    pub(super) fn new(seed: u64) -> PusherState {
        PusherState {
            socket_ids: SocketIds::new(seed),
            event_cache: EventCache::default(),
            online: Online::default(),
            sockets: Beside::default(),
            client_events: RateBuckets::new(CLIENT_EVENTS),
        }
    }
}

/// A Pusher connection's state beside its session: 4 bytes, every one of them paid by every
/// Pusher connection. What few have is kept apart: the watchlist (`Online`) and the
/// client-event rate limit (`PusherState::client_events`).
pub(crate) struct PusherSocket {
    /// Its app, an index into the configured apps.
    pub app: u16,
    /// True once it signed in (as its session's user).
    pub signed_in: bool,
}

/// Pusher's limit on client events: 10 a second per connection (a burst of 10).
pub const CLIENT_EVENTS: RateLimit = RateLimit {
    per_second: 10,
    burst: 10,
};

/// The close code for a connection the app terminated, or whose sign-in is refused.
pub const UNAUTHORIZED: u16 = 4009;

impl Engine {
    /// Runs one of the Pusher dialect's own commands.
    pub(super) fn pusher_action(
        &mut self,
        id: ConnId,
        action: Action,
        now: Millis,
    ) -> Result<(), CommandError> {
        match action {
            Action::Subscribe {
                channel,
                auth,
                channel_data,
            } => {
                self.pusher_subscribe(id, &channel, auth.as_deref(), channel_data.as_deref(), now)?
            }
            Action::Unsubscribe { channel } => self.pusher_unsubscribe(id, &channel, now),
            Action::Signin { auth, user_data } => {
                self.signin(id, &auth, &user_data);
                // A sign-in may count the connection as its user's (see `watched_users`).
                if let Some(user) = self.sessions.get(id).map(|s| s.user.clone()) {
                    self.watched_user_may_change(&user, now);
                }
            }
            Action::ClientEvent {
                channel,
                event,
                data,
            } => self.client_event(id, &channel, &event, &data, now)?,
            // The native commands run in `execute`, which hands this function no other.
            _ => {}
        }
        Ok(())
    }

    /// Delivers a Pusher app's event that another node received (a client event or a REST
    /// trigger), to this node's subscribers.
    pub(super) fn apply_named(&mut self, note: Note, now: Millis) {
        let Note::Named {
            origin,
            channel,
            event,
            user_id,
            except,
            data,
        } = note
        else {
            return;
        };
        // The origin delivered to its own clients already.
        if self
            .cluster
            .as_ref()
            .is_none_or(|cluster| cluster.node() == origin)
        {
            return;
        }
        let named = Named {
            channel: &channel,
            event: &event,
            data: data.as_str(),
            user_id: user_id.as_deref(),
        };
        let except = except
            .as_deref()
            .and_then(|socket| self.socket_by_id(socket));
        self.deliver_named(&named, except, now);
    }

    /// Gives the new connection `id` the state of a Pusher connection of app `app`.
    pub(super) fn open_pusher_socket(&mut self, id: ConnId, app: u16) {
        let socket = PusherSocket {
            app,
            signed_in: false,
        };
        self.pusher.sockets.set(id.slot, socket);
    }

    /// Takes the Pusher state of the ending connection `id`, if it is a Pusher connection.
    pub(super) fn close_pusher_socket(&mut self, id: ConnId) -> Option<PusherSocket> {
        self.pusher.client_events.forget(&id);
        self.pusher.sockets.take(id.slot)
    }

    /// How many connections have a client-event rate limit.
    #[cfg(test)]
    pub(super) fn client_event_limits(&self) -> usize {
        self.pusher.client_events.len()
    }

    /// The Pusher state of connection `id`, if it is a Pusher connection.
    pub(super) fn pusher_socket(&self, id: ConnId) -> Option<&PusherSocket> {
        self.sessions.get(id)?;
        self.pusher.sockets.get(id.slot)
    }

    /// The Pusher state of connection `id`, to change, if it is a Pusher connection.
    pub(super) fn pusher_socket_mut(&mut self, id: ConnId) -> Option<&mut PusherSocket> {
        self.sessions.get(id)?;
        self.pusher.sockets.get_mut(id.slot)
    }

    /// The socket id of connection `id` (what a Pusher client and its backend call it).
    pub fn socket_id(&self, id: ConnId) -> String {
        self.pusher.socket_ids.format(id)
    }

    /// The connection a socket id names, if it is open.
    pub fn socket_by_id(&self, socket_id: &str) -> Option<ConnId> {
        self.pusher
            .socket_ids
            .parse(socket_id)
            .filter(|&id| self.sessions.get(id).is_some())
    }

    /// The app of a Pusher connection.
    fn app_of(&self, id: ConnId) -> Option<(u16, &App)> {
        let index = self.pusher_socket(id)?.app;
        Some((index, self.config.pusher.app(index)?))
    }

    /// `pusher:subscribe`: checks the name, the signature and the limits, then subscribes
    /// and answers. Errors name the channel (the dialect sends `subscription_error`).
    pub(super) fn pusher_subscribe(
        &mut self,
        id: ConnId,
        wire: &str,
        signature: Option<&str>,
        channel_data: Option<&str>,
        now: Millis,
    ) -> Result<(), CommandError> {
        self.try_subscribe(id, wire, signature, channel_data, now)
            .map_err(|error| error.on_channel(wire))
    }

    fn try_subscribe(
        &mut self,
        id: ConnId,
        wire: &str,
        signature: Option<&str>,
        channel_data: Option<&str>,
        now: Millis,
    ) -> Result<(), CommandError> {
        let Some((_, app)) = self.app_of(id) else {
            return Ok(());
        };
        channel::validate(wire).map_err(|e| CommandError::new(ErrorCode::BadRequest, e))?;
        let kind = ChannelKind::of(wire);
        if kind == ChannelKind::ServerToUser
            && !self.signed_in_as(id, &wire[channel::SERVER_TO_USER.len()..])
        {
            return Err(auth_error(
                "a server-to-user channel is its signed-in user's only",
            ));
        }
        if kind.needs_auth() {
            let socket_id = self.socket_id(id);
            let data = channel_data.filter(|_| kind == ChannelKind::Presence);
            if kind == ChannelKind::Presence && data.is_none() {
                return Err(auth_error("a presence subscription needs channel_data"));
            }
            auth::verify_channel(app, &socket_id, wire, data, signature.unwrap_or(""))
                .map_err(|error| auth_error(error.message()))?;
        }
        let internal = app.internal_name(wire);
        match (kind, channel_data) {
            (ChannelKind::Presence, Some(data)) => self.join_presence(id, &internal, data, now)?,
            _ => self.subscribe_only(id, &internal, now)?,
        }
        if channel::is_cache(wire) {
            self.send_cached(id, &internal, now);
        }
        Ok(())
    }

    /// A new subscriber of a `cache-` channel gets its last event, or `pusher:cache_miss`.
    fn send_cached(&mut self, id: ConnId, internal: &str, now: Millis) {
        let event = match self.pusher.event_cache.last(internal, now) {
            Some((event, data)) => Event::Named {
                channel: internal,
                event,
                data,
                user_id: None,
            },
            None => Event::CacheMiss { channel: internal },
        };
        let Some(text) = Dialect::Pusher.encode(&event) else {
            return;
        };
        self.effects.push(Effect::Deliver {
            to: Recipients::One(id),
            text,
        });
    }

    /// A presence subscription: the member is the channel data's `user_id`.
    fn join_presence(
        &mut self,
        id: ConnId,
        internal: &str,
        channel_data: &str,
        now: Millis,
    ) -> Result<(), CommandError> {
        let Some((app, _)) = self.app_of(id) else {
            return Ok(());
        };
        let limits = self.config.pusher.limits(app);
        let (user, info) = read_channel_data(channel_data, limits.max_user_info)?;
        let session = self.sessions.get(id).ok_or_else(gone)?;
        if session.counted && *session.user != *user {
            return Err(CommandError::new(
                ErrorCode::Forbidden,
                format!(
                    "this connection is user {:?}; one connection is one user",
                    &*session.user
                ),
            ));
        }
        if let Some(channel) = self.roster.find(internal) {
            let members = self.channel_counts(channel).map_or(0, |c| c.users);
            let max = limits.max_presence_members;
            if members >= max && !self.is_member(channel, &user) {
                return Err(CommandError::new(
                    ErrorCode::TooLarge,
                    format!("the channel is full ({max} members)"),
                ));
            }
        }
        if let Some(session) = self.sessions.get_mut(id).filter(|s| !s.counted) {
            session.user = user.as_str().into();
        }
        let request = JoinRequest {
            channel: internal,
            meta: Some(info),
            mode: EventsMode::All,
            reference: None,
        };
        self.join(id, request, now)
    }

    /// A public or private subscription: the connection hears the channel, as no member.
    fn subscribe_only(
        &mut self,
        id: ConnId,
        internal: &str,
        now: Millis,
    ) -> Result<(), CommandError> {
        let joined = self.roster.joined(internal, id).is_ok();
        let session = self.sessions.get(id).ok_or_else(gone)?;
        let max = self.config.max_channels_per_conn;
        if !joined && session.channels.as_slice().len() >= max {
            return Err(CommandError::new(
                ErrorCode::TooLarge,
                format!("a connection may subscribe to at most {max} channels"),
            ));
        }
        let (channel, outcome) = self.roster.subscribe_only(internal, id);
        if let Some(session) = self.sessions.get_mut(id) {
            session.channels.insert(channel);
        }
        self.send(id, &Event::Subscribed { channel: internal });
        let subscribed = outcome.counts_changed;
        self.apply(channel, outcome, Some(id), now);
        if subscribed {
            self.hook_subscriptions(channel, internal, true);
        }
        Ok(())
    }

    /// `pusher:unsubscribe`: leaves the channel if subscribed; nothing is answered.
    pub(super) fn pusher_unsubscribe(&mut self, id: ConnId, wire: &str, now: Millis) {
        let Some((_, app)) = self.app_of(id) else {
            return;
        };
        let internal = app.internal_name(wire);
        let Ok(channel) = self.roster.joined(&internal, id) else {
            return;
        };
        let Some(session) = self.sessions.get_mut(id) else {
            return;
        };
        session.channels.remove(channel);
        let user = session.user.clone();
        let hooked = self.subscription_hook_name(channel);
        if let Ok(outcome) = self
            .roster
            .leave(channel, id, &user, LeaveReason::Left, false)
        {
            self.apply(channel, outcome, None, now);
        }
        if let Some(name) = hooked {
            self.hook_subscriptions(channel, &name, false);
        }
    }

    /// A client event: checked, rate limited, and relayed to the channel's other
    /// subscribers, with the sender's `user_id` on a presence channel.
    pub(super) fn client_event(
        &mut self,
        id: ConnId,
        wire: &str,
        event: &str,
        data: &Json,
        now: Millis,
    ) -> Result<(), CommandError> {
        let Some((index, app)) = self.app_of(id) else {
            return Ok(());
        };
        let settings = self.config.pusher.limits(index);
        let refuse = |message: String| Err(CommandError::new(ErrorCode::Forbidden, message));
        if !settings.client_events {
            return refuse("client events are disabled on this server".into());
        }
        let plain = !event.contains(char::is_control);
        if !event.starts_with("client-") || event.len() > MAX_EVENT_NAME || !plain {
            return refuse(format!(
                "a client event's name starts with client- and has at most {MAX_EVENT_NAME} \
                 bytes, no control characters"
            ));
        }
        let kind = ChannelKind::of(wire);
        if !kind.takes_client_events() {
            return refuse(format!(
                "client events go to private and presence channels, not {wire}"
            ));
        }
        if data.as_str().len() > settings.max_event_data {
            return Err(CommandError::new(
                ErrorCode::TooLarge,
                format!("event data is over {} bytes", settings.max_event_data),
            ));
        }
        let internal = app.internal_name(wire);
        self.roster.joined(&internal, id).map_err(|_| {
            CommandError::new(
                ErrorCode::NotJoined,
                format!("subscribe to {wire} before sending it events"),
            )
        })?;
        self.admit_client_event(id, now)?;
        let session = self.sessions.get(id).ok_or_else(gone)?;
        let user = (kind == ChannelKind::Presence).then(|| session.user.clone());
        let named = Named {
            channel: &internal,
            event,
            data: data.as_str(),
            user_id: user.as_deref(),
        };
        let socket = self.socket_id(id);
        self.publish_named(&named, Some(&socket), now);
        self.hook_client_event(&internal, event, data.as_str(), &socket, user.as_deref());
        Ok(())
    }

    /// Delivers a named event to this node's subscribers of the channel but the socket
    /// `except`, and in a cluster publishes it to the other nodes. Returns how many
    /// connections of this node it went to.
    fn publish_named(&mut self, named: &Named<'_>, except: Option<&str>, now: Millis) -> usize {
        if let Some(cluster) = self.cluster.as_mut() {
            let node = cluster.node().to_owned();
            let note = Note::named(
                &node,
                named.channel,
                named.event,
                named.user_id,
                except,
                named.data,
            );
            if let Some(note) = note {
                cluster.publish_named(&note, now);
            }
        }
        let except = except.and_then(|socket| self.socket_by_id(socket));
        self.deliver_named(named, except, now)
    }

    /// Delivers a named event to this node's subscribers of the channel but `except` (and
    /// remembers it, on a `cache-` channel).
    pub(super) fn deliver_named(
        &mut self,
        named: &Named<'_>,
        except: Option<ConnId>,
        now: Millis,
    ) -> usize {
        let is_cache =
            split_internal(named.channel).is_some_and(|(_, wire)| channel::is_cache(wire));
        if is_cache {
            self.pusher
                .event_cache
                .remember(named.channel, named.event, named.data, now);
        }
        let Some(channel) = self.roster.find(named.channel) else {
            return 0;
        };
        let recipients: Vec<ConnId> = self
            .roster
            .subscribers(channel)
            .map(|(conn, _)| conn)
            .filter(|&conn| Some(conn) != except)
            .collect();
        let event = Event::Named {
            channel: named.channel,
            event: named.event,
            data: named.data,
            user_id: named.user_id,
        };
        self.deliver(recipients.into_iter(), &event)
    }

    fn admit_client_event(&mut self, id: ConnId, now: Millis) -> Result<(), CommandError> {
        if self.pusher_socket(id).is_none() {
            return Ok(());
        }
        match self.pusher.client_events.admit(id, now) {
            Admission::Allowed => Ok(()),
            Admission::Limited | Admission::Flooding => Err(CommandError::new(
                ErrorCode::RateLimited,
                "more than 10 client events a second",
            )),
        }
    }

    /// The REST API's event: `data` (JSON text, a string for the SDKs) to the app's
    /// `channels`, on every node, but the connection whose socket id is `except`
    /// (`socket_id`, wherever it is connected). Returns how many connections of this node
    /// it went to.
    pub fn pusher_trigger(
        &mut self,
        app: u16,
        channels: &[String],
        event: &str,
        data: &str,
        except: Option<&str>,
        now: Millis,
    ) -> usize {
        let Some(app) = self.config.pusher.app(app) else {
            return 0;
        };
        let names: Vec<String> = channels
            .iter()
            .map(|wire| app.internal_name(wire))
            .collect();
        names
            .iter()
            .map(|internal| {
                let named = Named {
                    channel: internal,
                    event,
                    data,
                    user_id: None,
                };
                self.publish_named(&named, except, now)
            })
            .sum()
    }

    /// The app's occupied channels whose name starts with `prefix`: each with its members
    /// (presence channels; cluster-wide in a live cluster) and its subscribed connections
    /// (this node's).
    pub fn pusher_channels(&self, app: u16, prefix: &str) -> Vec<PusherChannel> {
        let Some(app) = self.config.pusher.app(app) else {
            return Vec::new();
        };
        let namespace = app.internal_name(prefix);
        let mut names: Vec<&str> = self.roster.channel_names().collect();
        if let Some(view) = self.cluster_view() {
            names.extend(view.channels());
        }
        names.retain(|name| name.starts_with(&namespace));
        names.sort_unstable();
        names.dedup();
        names
            .into_iter()
            .filter_map(|name| self.pusher_channel_of(name, app))
            .collect()
    }

    /// One channel of the app, if occupied.
    pub fn pusher_channel(&self, app: u16, wire: &str) -> Option<PusherChannel> {
        let app = self.config.pusher.app(app)?;
        self.pusher_channel_of(&app.internal_name(wire), app)
    }

    fn pusher_channel_of(&self, internal: &str, app: &App) -> Option<PusherChannel> {
        let users = self.channel_counts_named(internal).users;
        let subscriptions = self
            .roster
            .find(internal)
            .and_then(|channel| self.roster.counts(channel))
            .map_or(0, |counts| counts.connections);
        if users == 0 && subscriptions == 0 {
            return None;
        }
        Some(PusherChannel {
            name: internal[app.id.len() + 1..].to_owned(),
            users,
            subscriptions,
        })
    }

    /// The user ids of a presence channel's members.
    pub fn pusher_users(&self, app: u16, wire: &str) -> Vec<String> {
        let Some(app) = self.config.pusher.app(app) else {
            return Vec::new();
        };
        let mut users: Vec<String> = self
            .members_named(&app.internal_name(wire))
            .map(|member| member.user.to_owned())
            .collect();
        users.sort_unstable();
        users
    }

    /// Closes every connection of the app whose user is `user` (`pusher:error`, then close
    /// 4009: pusher-js does not reconnect); returns how many.
    pub fn pusher_terminate(&mut self, app: u16, user: &str, now: Millis) -> usize {
        let connections: Vec<ConnId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.counted && &*s.user == user)
            .filter(|&(id, _)| self.pusher_socket(id).is_some_and(|p| p.app == app))
            .map(|(id, _)| id)
            .collect();
        for &id in &connections {
            self.fail(
                id,
                UNAUTHORIZED,
                "terminated by the app",
                LeaveReason::Closed,
                now,
            );
        }
        connections.len()
    }
}

/// The close code after a missed ping (4200-4299: pusher-js reconnects at once).
pub const PONG_NOT_RECEIVED: u16 = 4201;

/// A named event on its way: the engine's channel name, the event, its data (JSON text) and
/// the member who sent it (client events on presence channels).
pub(super) struct Named<'a> {
    pub channel: &'a str,
    pub event: &'a str,
    pub data: &'a str,
    pub user_id: Option<&'a str>,
}

/// A channel of a Pusher app, as the REST API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PusherChannel {
    /// Its name, as the app names it.
    pub name: String,
    /// Members (presence channels).
    pub users: usize,
    /// Subscribed connections.
    pub subscriptions: usize,
}

/// The member a presence subscription's channel data names: `user_id` (a string, or a
/// number as Laravel sends it) and `user_info` (an object; absent or null is `{}`).
fn read_channel_data(text: &str, max_info: usize) -> Result<(String, Meta), CommandError> {
    let bad = |message: &str| CommandError::new(ErrorCode::BadRequest, message);
    let fields = crate::protocol::fields::Fields::parse(text)
        .map_err(|_| bad("channel_data must be a JSON object"))?;
    let user = match fields.get("user_id").map(|raw| raw.get()) {
        Some(raw) if raw.starts_with('"') => serde_json::from_str::<String>(raw)
            .map_err(|_| bad("user_id must be a string or a number"))?,
        Some(raw) if raw.starts_with(|c: char| c == '-' || c.is_ascii_digit()) => raw.to_owned(),
        _ => return Err(bad("channel_data needs a user_id, a string or a number")),
    };
    names::validate_user(&user)
        .map_err(|error| CommandError::new(ErrorCode::BadRequest, format!("user_id {error}")))?;
    let info = match fields.get("user_info").map(|raw| raw.get()) {
        None | Some("null") => Meta::empty(),
        Some(raw) => Meta::parse(raw).ok_or_else(|| bad("user_info must be a JSON object"))?,
    };
    if info.as_str().len() > max_info {
        return Err(CommandError::new(
            ErrorCode::TooLarge,
            format!("user_info is over {max_info} bytes"),
        ));
    }
    Ok((user, info))
}

fn auth_error(message: &str) -> CommandError {
    CommandError::new(ErrorCode::Forbidden, message)
}

fn gone() -> CommandError {
    CommandError::new(ErrorCode::BadRequest, "the connection is closing")
}
