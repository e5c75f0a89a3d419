//! Who hears what: presence events to a channel's `all` subscribers and watchers (those
//! that asked for diffs hear them coalesced instead: see `diff`), counts
//! to its `count` subscribers and watchers, publications to every subscriber, replies to
//! one connection. Each becomes one [`Effect::Deliver`] per dialect in use.
//!
//! Invariants: an event is encoded once per dialect and the same text goes to every
//! recipient of that dialect; a recipient hears it at most once (a subscriber that also
//! watches gets one copy); nothing presence-related is sent once a shutdown has begun.

use super::session::Sessions;
use super::{Effect, Engine, Recipients};
use crate::dialect::Dialect;
use crate::model::event::Members;
use crate::model::{Event, EventsMode, Json};
use crate::pusher;
use crate::roster::{Announcement, Change, ChannelId, ConnId, Roster};

impl Engine {
    /// Tells the channel's `all` subscribers (but `except`) and its watchers what changed,
    /// its diff listeners (see `diff`), and the host.
    pub(super) fn announce(&mut self, announcement: Announcement, now: crate::wheel::Millis) {
        let Announcement {
            channel,
            name,
            except,
            change,
        } = announcement;
        self.handler
            .on_presence(presence(&name, &change), &mut self.actions);
        if self.shutting_down {
            return;
        }
        self.diff_changed(channel, &name, &change, except, now);
        let audience = Audience {
            roster: &self.roster,
            watch_all: watchers_of_everything(&self.watch_all, &name),
            channel,
            mode: EventsMode::All,
            except,
        };
        let event = change_event(&name, &change);
        let (sessions, in_use) = (&self.sessions, &self.in_use);
        // A Pusher member never hears of itself: pusher-js would count it twice. (Locally
        // the joiner is `except` already; a cluster's note names no connection.)
        let own = pusher::is_internal(&name).then(|| changed_user(&change));
        let not_own = |conn: &ConnId| {
            own.is_none_or(|user| sessions.get(*conn).is_none_or(|s| *s.user != **user))
        };
        // A watcher that asked for diffs hears them instead (see `diff`).
        let per_event = |conn: &ConnId| {
            sessions
                .get(*conn)
                .is_none_or(|s| s.mode != EventsMode::Diff)
        };
        if !starts_channel(&change) {
            let recipients = audience
                .subscribers()
                .chain(audience.watchers().filter(per_event))
                .filter(not_own);
            broadcast(sessions, in_use, &mut self.effects, recipients, &event);
            return;
        }
        // The first event of a channel (created, or created again after it emptied: its seq
        // started again at 0) goes to its subscribers and its own watchers as it is, and to
        // the watchers of every channel as a `state`, a new baseline for their §5 bookkeeping.
        let recipients = audience
            .subscribers()
            .chain(audience.own_watchers().filter(per_event))
            .filter(not_own);
        broadcast(sessions, in_use, &mut self.effects, recipients, &event);
        let everything: Vec<ConnId> = audience.watchers_of_everything().collect();
        if !everything.is_empty() {
            self.deliver_state(everything.into_iter(), &name, None);
        }
    }

    /// Tells the channel's `count` subscribers (but `except`) and its watchers its counts.
    pub(super) fn send_counts(&mut self, channel: ChannelId, except: Option<ConnId>) {
        let (Some(name), Some(counts)) = (self.roster.name(channel), self.channel_counts(channel))
        else {
            return;
        };
        if self.shutting_down {
            return;
        }
        let event = Event::Count {
            channel: name,
            counts,
            reference: None,
        };
        let audience = Audience {
            roster: &self.roster,
            watch_all: watchers_of_everything(&self.watch_all, name),
            channel,
            mode: EventsMode::Count,
            except,
        };
        let recipients = audience.subscribers().chain(audience.watchers());
        broadcast(
            &self.sessions,
            &self.in_use,
            &mut self.effects,
            recipients,
            &event,
        );
    }

    /// Publishes a `message` to every connection in the channel, whatever its events mode,
    /// on this node and, in a cluster, on the others. Returns how many connections of this
    /// node it went to.
    pub fn publish(
        &mut self,
        name: &str,
        from: Option<&str>,
        data: &Json,
        now: crate::wheel::Millis,
    ) -> usize {
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.publish(name, from, data, now);
        }
        self.deliver_publication(name, from, data)
    }

    /// Delivers a publication to this node's connections in the channel, and tells the
    /// host. Returns how many connections it went to.
    pub(super) fn deliver_publication(
        &mut self,
        name: &str,
        from: Option<&str>,
        data: &Json,
    ) -> usize {
        self.handler
            .on_message(name, from, data.as_str(), &mut self.actions);
        let Some(channel) = self.roster.find(name) else {
            return 0;
        };
        let event = Event::Message {
            channel: Some(name),
            from,
            data,
        };
        let recipients = self.roster.subscribers(channel).map(|(conn, _)| conn);
        broadcast(
            &self.sessions,
            &self.in_use,
            &mut self.effects,
            recipients,
            &event,
        )
    }

    /// The host sends `data` to every connection of `user`; returns how many.
    pub fn send_to_user(&mut self, user: &str, data: &Json) -> usize {
        let connections = self.connections_of(user);
        let event = Event::Message {
            channel: None,
            from: None,
            data,
        };
        self.deliver(connections.into_iter(), &event)
    }

    /// The host sends `data` to one connection (by the id its welcome gave); false when no
    /// such connection is open.
    pub fn send_to_connection(&mut self, id: ConnId, data: &Json) -> bool {
        if self.sessions.get(id).is_none() {
            return false;
        }
        let event = Event::Message {
            channel: None,
            from: None,
            data,
        };
        self.send(id, &event);
        true
    }

    /// Sends `event` to `recipients` (each named once); returns how many it went to.
    pub(super) fn deliver(
        &mut self,
        recipients: impl Iterator<Item = ConnId>,
        event: &Event<'_>,
    ) -> usize {
        broadcast(
            &self.sessions,
            &self.in_use,
            &mut self.effects,
            recipients,
            event,
        )
    }

    /// Sends `event` to one connection.
    pub(super) fn send(&mut self, id: ConnId, event: &Event<'_>) {
        let Some(dialect) = self.sessions.get(id).map(|s| s.dialect) else {
            return;
        };
        if let Some(text) = dialect.encode(event) {
            self.effects.push(Effect::Deliver {
                to: Recipients::One(id),
                text,
            });
        }
    }

    /// Sends the `state` of the channel `name` to one connection.
    pub(super) fn send_state(&mut self, id: ConnId, name: &str, reference: Option<&Json>) {
        self.deliver_state(std::iter::once(id), name, reference);
    }

    /// Sends a joiner the `state` of the channel `name` it joined. A Pusher subscriber must
    /// find itself in it (pusher-js's `members.me`), but in a live cluster the view hears of
    /// the join only when its note comes back: then its own line comes from this node.
    pub(super) fn send_join_state(&mut self, id: ConnId, name: &str, reference: Option<&Json>) {
        let Some(session) = self.sessions.get(id) else {
            return;
        };
        let user = session.user.clone();
        let missing = session.dialect.lists_itself()
            && self
                .cluster_view()
                .is_some_and(|view| !view.is_member(name, &user));
        if !missing {
            self.send_state(id, name, reference);
            return;
        }
        let members = || -> Members<'_> {
            let own = self
                .roster
                .find(name)
                .into_iter()
                .flat_map(|channel| self.roster.members(channel))
                .filter(|member| member.user == &*user);
            Box::new(self.members_named(name).chain(own))
        };
        let queued = state_deliveries(self, std::iter::once(id), name, reference, &members);
        self.effects.extend(queued);
    }

    /// Sends the `state` of the channel `name` to `recipients`.
    pub(super) fn deliver_state(
        &mut self,
        recipients: impl Iterator<Item = ConnId>,
        name: &str,
        reference: Option<&Json>,
    ) {
        let members = || self.members_named(name);
        let queued = state_deliveries(self, recipients, name, reference, &members);
        self.effects.extend(queued);
    }
}

/// The deliveries of the `state` of channel `name`, its members listed by `members`. They are
/// read (once per dialect) while the engine is borrowed, so they are returned, for the caller
/// to append to the effects.
fn state_deliveries<'a>(
    engine: &'a Engine,
    recipients: impl Iterator<Item = ConnId>,
    name: &'a str,
    reference: Option<&'a Json>,
    members: &'a dyn Fn() -> Members<'a>,
) -> Vec<Effect> {
    let mut queued = Vec::new();
    let event = Event::State {
        channel: name,
        seq: engine.seq_named(name),
        members,
        reference,
    };
    broadcast(
        &engine.sessions,
        &engine.in_use,
        &mut queued,
        recipients,
        &event,
    );
    queued
}

/// Encodes `event` once for each dialect among `recipients` and queues its delivery;
/// returns how many recipients it went to.
///
/// Every recipient has a session: the roster's lists and `watch_all` name only open
/// connections (a detaching connection leaves them before it leaves its channels).
fn broadcast(
    sessions: &Sessions,
    in_use: &[usize; Dialect::COUNT],
    effects: &mut Vec<Effect>,
    recipients: impl Iterator<Item = ConnId>,
    event: &Event<'_>,
) -> usize {
    let mut in_use = Dialect::ALL.into_iter().filter(|d| in_use[d.index()] > 0);
    let (Some(first), None) = (in_use.next(), in_use.next()) else {
        return broadcast_sorted(sessions, effects, recipients, event);
    };
    // One dialect in use (the common case): no need to look each recipient up.
    let to: Vec<ConnId> = recipients.collect();
    queue_delivery(effects, first, to, event)
}

/// [`broadcast`] when several dialects are in use: recipients sorted by their dialect.
fn broadcast_sorted(
    sessions: &Sessions,
    effects: &mut Vec<Effect>,
    recipients: impl Iterator<Item = ConnId>,
    event: &Event<'_>,
) -> usize {
    let mut by_dialect: [Vec<ConnId>; Dialect::COUNT] = Default::default();
    for id in recipients {
        if let Some(session) = sessions.get(id) {
            by_dialect[session.dialect.index()].push(id);
        }
    }
    Dialect::ALL
        .into_iter()
        .zip(by_dialect)
        .map(|(dialect, to)| queue_delivery(effects, dialect, to, event))
        .sum()
}

/// Queues `event` in `dialect`'s encoding to `to`; returns how many it went to (none when
/// the dialect does not carry the event).
fn queue_delivery(
    effects: &mut Vec<Effect>,
    dialect: Dialect,
    to: Vec<ConnId>,
    event: &Event<'_>,
) -> usize {
    if to.is_empty() {
        return 0;
    }
    let Some(text) = dialect.encode(event) else {
        return 0;
    };
    let delivered = to.len();
    let to = match to.as_slice() {
        [one] => Recipients::One(*one),
        _ => Recipients::Many(to),
    };
    effects.push(Effect::Deliver { to, text });
    delivered
}

/// Who watches every channel, as far as the channel `name` goes: nobody for a Pusher app's
/// channel (an app is a namespace of its own).
pub(super) fn watchers_of_everything<'a>(watch_all: &'a [ConnId], name: &str) -> &'a [ConnId] {
    if pusher::is_internal(name) {
        &[]
    } else {
        watch_all
    }
}

/// The host's view of a presence change.
fn presence<'a>(name: &'a str, change: &'a Change) -> super::Presence<'a> {
    match change {
        Change::Join { user, meta, .. } => super::Presence::Join {
            channel: name,
            user,
            meta: meta.as_str(),
        },
        Change::Leave { user, reason, .. } => super::Presence::Leave {
            channel: name,
            user,
            reason: *reason,
        },
        Change::Update { user, meta, .. } => super::Presence::Update {
            channel: name,
            user,
            meta: meta.as_str(),
        },
    }
}

/// The user a change is about.
fn changed_user(change: &Change) -> &crate::roster::UserId {
    match change {
        Change::Join { user, .. } | Change::Leave { user, .. } | Change::Update { user, .. } => {
            user
        }
    }
}

/// The `join`, `leave` or `update` event telling `change` in channel `name`.
pub(super) fn change_event<'a>(name: &'a str, change: &'a Change) -> Event<'a> {
    match change {
        Change::Join { user, meta, seq } => Event::Join {
            channel: name,
            user,
            meta,
            seq: *seq,
        },
        Change::Leave { user, reason, seq } => Event::Leave {
            channel: name,
            user,
            reason: *reason,
            seq: *seq,
        },
        Change::Update { user, meta, seq } => Event::Update {
            channel: name,
            user,
            meta,
            seq: *seq,
        },
    }
}

/// True for the first event of a channel: a join at seq 1 (a channel's seq starts at 0 and
/// only a join can come first).
pub(super) fn starts_channel(change: &Change) -> bool {
    matches!(change, Change::Join { seq: 1, .. })
}

/// Who hears a message of one channel meant for its subscribers in `mode`: those
/// subscribers and the watchers (of the channel, and of every channel), each once, but
/// `except`. A watcher also subscribed in `mode` hears it as a subscriber.
#[derive(Clone, Copy)]
pub(super) struct Audience<'a> {
    pub roster: &'a Roster,
    pub watch_all: &'a [ConnId],
    pub channel: ChannelId,
    pub mode: EventsMode,
    pub except: Option<ConnId>,
}

impl<'a> Audience<'a> {
    /// The channel's subscribers in `mode`.
    pub fn subscribers(self) -> impl Iterator<Item = ConnId> + 'a {
        self.roster
            .subscribers_in(self.channel, self.mode)
            .filter(move |&conn| Some(conn) != self.except)
    }

    /// Every watcher who hears it: the channel's own, then those of every channel.
    pub fn watchers(self) -> impl Iterator<Item = ConnId> + 'a {
        self.own_watchers().chain(self.watchers_of_everything())
    }

    /// The channel's own watchers that do not watch every channel.
    fn own_watchers(self) -> impl Iterator<Item = ConnId> + 'a {
        self.roster
            .watchers(self.channel)
            .filter(move |watcher| !self.watch_all.contains(watcher))
            .filter(move |&watcher| self.hears_as_watcher(watcher))
    }

    /// The watchers of every channel.
    fn watchers_of_everything(self) -> impl Iterator<Item = ConnId> + 'a {
        self.watch_all
            .iter()
            .copied()
            .filter(move |&watcher| self.hears_as_watcher(watcher))
    }

    /// A watcher subscribed in the audience's mode hears as a subscriber; one subscribed in
    /// a mode that hears presence (`all` or `diff`) hears presence that way only.
    fn hears_as_watcher(self, watcher: ConnId) -> bool {
        let hears_presence = |mode: EventsMode| matches!(mode, EventsMode::All | EventsMode::Diff);
        let subscribed = self.roster.mode(self.channel, watcher);
        Some(watcher) != self.except
            && subscribed != Some(self.mode)
            && !(hears_presence(self.mode) && subscribed.is_some_and(hears_presence))
    }
}
