//! The presence roster: who is in which channel, through how many connections, with what
//! meta; the per-channel `seq`; leave grace and `count` coalescing. Pure data, no I/O, no
//! clock: time comes in as [`Millis`] and timers go out as keys for the caller's wheel.
//!
//! Invariants:
//! - A user is a member of a channel while it has at least one subscribed connection there,
//!   or while its leave grace runs (then `conns == 0`).
//! - `join` is announced when a user becomes a member, `leave` when it stops being one;
//!   nothing is announced for a second connection of a present user, nor for a reconnect
//!   within the grace.
//! - `seq` increases by exactly one per announced join, leave or update of the channel.
//! - A channel exists while it has a member, a subscriber or a watcher; afterwards its
//!   [`ChannelId`] is stale.
//! - Watchers see a channel's events and counts without being members: they change no
//!   count, no `seq` and appear in no member list.

use std::collections::HashMap;
use std::rc::Rc;

use crate::ids::{Key, Slots, Stamped};
use crate::model::{Counts, MemberView};
use crate::model::{EventsMode, LeaveReason, Meta};
use crate::packed_map::PackedMap;
use crate::wheel::Millis;

pub use crate::user_id::UserId;
use crate::user_id::INLINE_MAX;
/// A connection's identity.
pub type ConnId = Key;
/// A channel's identity (stale once the channel empties and is removed).
pub type ChannelId = Key;

/// `count` messages of one channel go out at most this often.
pub const COUNT_INTERVAL_MS: Millis = 1_000;

/// A presence change to announce to the channel's `all` subscribers and watchers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// The channel.
    pub channel: ChannelId,
    /// Its name (carried along: a channel its last member left is gone by the time the
    /// announcement reaches those who watch every channel).
    pub name: Rc<str>,
    /// A connection not to tell (the joiner, which gets a `state` instead).
    pub except: Option<ConnId>,
    /// What happened.
    pub change: Change,
}

/// The kinds of presence change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The user became a member.
    Join {
        /// The user.
        user: UserId,
        /// Its meta.
        meta: Meta,
        /// The channel's new seq.
        seq: u64,
    },
    /// The user stopped being a member.
    Leave {
        /// The user.
        user: UserId,
        /// Why.
        reason: LeaveReason,
        /// The channel's new seq.
        seq: u64,
    },
    /// The user's meta changed.
    Update {
        /// The user.
        user: UserId,
        /// The new meta.
        meta: Meta,
        /// The channel's new seq.
        seq: u64,
    },
}

/// What a call changed, for the caller to deliver and schedule.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// A presence change to announce, if any.
    pub announcement: Option<Announcement>,
    /// True when the channel's user or connection counts changed.
    pub counts_changed: bool,
    /// A leave grace started: put this key on the wheel at the grace deadline.
    pub grace: Option<GraceKey>,
    /// The user whose membership or connection count in the channel changed (for a
    /// cluster, where this node's holding must be told to the others).
    pub member: Option<MemberChange>,
}

/// A change of one user's local membership (see [`Outcome::member`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberChange {
    /// The channel's name (kept: the channel may be gone once its last member left).
    pub channel: Rc<str>,
    /// The user.
    pub user: UserId,
    /// The meta the change set explicitly (`None`: kept as it was).
    pub meta: Option<Meta>,
}

/// Names one pending leave grace on the wheel: 8 bytes, so a wheel entry stays 16.
///
/// The serial is unique across the roster (never reused until it wraps after 2^32 graces),
/// so it stands in for the channel's generation: a channel that reused the slot holds no
/// grace of that serial, and a stale key finds nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GraceKey {
    channel_slot: u32,
    serial: u32,
}

impl GraceKey {
    /// The slot of the channel whose grace it names.
    pub fn channel_slot(self) -> u32 {
        self.channel_slot
    }
}

/// When the channel's `count` subscribers should be told about changed counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountsDue {
    /// Send now.
    Now,
    /// Put the channel on the wheel for this time, then call [`Roster::flush_counts`].
    At(Millis),
    /// Nothing to do: no `count` subscriber, or a flush is already scheduled.
    Nothing,
}

/// The command names a channel the connection has not joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotJoined;

/// One user's membership of a channel: 16 bytes (one per present user and channel).
#[derive(Debug)]
struct Member {
    conns: u32,
    /// True while the leave grace runs (its serial and reason are on the channel's
    /// `graces`).
    in_grace: bool,
    meta: Meta,
}

/// A leave grace that runs in a channel.
#[derive(Debug)]
struct Grace {
    serial: u32,
    user: UserId,
    /// The reason to announce when it ends.
    reason: LeaveReason,
}

/// The events modes, in the order [`Roster::subscribers`] lists them.
const MODE_ORDER: [EventsMode; MODES] = [
    EventsMode::All,
    EventsMode::Count,
    EventsMode::None,
    EventsMode::Diff,
];
const MODES: usize = 4;

/// Where a mode's subscribers are kept in [`Channel::subscribers`].
fn mode_index(mode: EventsMode) -> usize {
    match mode {
        EventsMode::All => 0,
        EventsMode::Count => 1,
        EventsMode::None => 2,
        EventsMode::Diff => 3,
    }
}

/// One connection's subscription to a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Subscription {
    mode: EventsMode,
    /// True when it makes its user a member; false for a subscriber that only hears the
    /// channel's publications (a Pusher public or private channel).
    member: bool,
}

#[derive(Debug)]
struct Channel {
    name: Rc<str>,
    seq: u64,
    members: PackedMap<UserId, Member>,
    /// Subscribed connections by events mode (see [`mode_index`]), each saying whether it
    /// makes its user a member: an event for one mode walks only that mode's connections,
    /// so a join in a room of `none` subscribers costs no walk over them.
    subscribers: [PackedMap<ConnId, bool>; MODES],
    /// Connections watching this channel (usually none or a few dashboards).
    watchers: Vec<ConnId>,
    /// The leave graces that run (usually none or a few).
    graces: Vec<Grace>,
    counts_sent_at: Option<Millis>,
    counts_flush_scheduled: bool,
    /// The generation of its id (see [`Stamped`]).
    generation: u32,
}

impl Stamped for Channel {
    fn generation(&self) -> u32 {
        self.generation
    }

    fn stamp(&mut self, generation: u32) {
        self.generation = generation;
    }
}

impl Channel {
    fn new(name: Rc<str>) -> Self {
        Channel {
            name,
            seq: 0,
            members: PackedMap::default(),
            subscribers: Default::default(),
            watchers: Vec::new(),
            graces: Vec::new(),
            counts_sent_at: None,
            counts_flush_scheduled: false,
            generation: 0,
        }
    }

    fn announce(
        &mut self,
        id: ChannelId,
        except: Option<ConnId>,
        change: impl FnOnce(u64) -> Change,
    ) -> Announcement {
        self.seq += 1;
        Announcement {
            channel: id,
            name: self.name.clone(),
            except,
            change: change(self.seq),
        }
    }

    fn subscribe(&mut self, conn: ConnId, subscription: Subscription) -> Option<Subscription> {
        let previous = self.unsubscribe(conn);
        self.subscribers[mode_index(subscription.mode)].insert(conn, subscription.member);
        previous
    }

    fn unsubscribe(&mut self, conn: ConnId) -> Option<Subscription> {
        MODE_ORDER.into_iter().find_map(|mode| {
            let member = self.subscribers[mode_index(mode)].remove(&conn)?;
            Some(Subscription { mode, member })
        })
    }

    fn subscription(&self, conn: ConnId) -> Option<Subscription> {
        MODE_ORDER.into_iter().find_map(|mode| {
            let member = *self.subscribers[mode_index(mode)].get(&conn)?;
            Some(Subscription { mode, member })
        })
    }

    fn subscriber_count(&self) -> usize {
        self.subscribers.iter().map(PackedMap::len).sum()
    }

    /// Names a change of `user`'s membership here, with the meta it set explicitly.
    fn member_change(&self, user: &UserId, meta: Option<Meta>) -> MemberChange {
        MemberChange {
            channel: self.name.clone(),
            user: user.clone(),
            meta,
        }
    }

    fn cancel_grace(&mut self, user: &UserId) {
        self.graces.retain(|grace| grace.user != *user);
    }

    fn is_empty(&self) -> bool {
        self.members.is_empty()
            && self.subscribers.iter().all(PackedMap::is_empty)
            && self.watchers.is_empty()
    }
}

/// Every channel's presence, and the users online.
#[derive(Default)]
pub struct Roster {
    channels: Slots<Channel>,
    by_name: HashMap<Rc<str>, ChannelId>,
    /// Connections per user, over all channels (and none).
    users: PackedMap<UserId, u32>,
    /// The serial of the next leave grace (see [`GraceKey`]).
    next_grace_serial: u32,
}

impl Roster {
    /// An empty roster.
    pub fn new() -> Self {
        Roster::default()
    }

    /// Registers one more connection of `name` and returns the shared user id.
    pub fn connect_user(&mut self, name: &str) -> UserId {
        // A long id is shared with the user's other connections rather than allocated again;
        // a short one costs nothing to make and is searched for as an id, not as text.
        let known = (name.len() > INLINE_MAX)
            .then(|| self.users.get_key_value(name))
            .flatten();
        let user = known.map_or_else(|| UserId::from(name), |(user, _)| user.clone());
        match self.users.get_mut(&user) {
            Some(conns) => *conns += 1,
            None => {
                self.users.insert(user.clone(), 1);
            }
        }
        user
    }

    /// Unregisters one connection of `user` (after it left all its channels).
    pub fn disconnect_user(&mut self, user: &UserId) {
        if let Some(conns) = self.users.get_mut(user) {
            *conns -= 1;
            if *conns == 0 {
                self.users.remove(user);
            }
        }
    }

    /// The connections of `user` (counted ones: watchers and Pusher sockets are none).
    pub fn user_connections(&self, user: &str) -> usize {
        self.users.get(user).map_or(0, |&conns| conns as usize)
    }

    /// Distinct users with at least one connection.
    pub fn users_online(&self) -> usize {
        self.users.len()
    }

    /// Number of channels with members or subscribers.
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// The channel of that name, if it exists.
    pub fn find(&self, name: &str) -> Option<ChannelId> {
        self.by_name.get(name).copied()
    }

    /// The channel's name, unless `channel` is stale.
    pub fn name(&self, channel: ChannelId) -> Option<&str> {
        self.channels.get(channel).map(|c| &*c.name)
    }

    /// The channel `name` if `conn` is subscribed to it.
    pub fn joined(&self, name: &str, conn: ConnId) -> Result<ChannelId, NotJoined> {
        let id = self.find(name).ok_or(NotJoined)?;
        let channel = self.channels.get(id).ok_or(NotJoined)?;
        channel
            .subscription(conn)
            .is_some()
            .then_some(id)
            .ok_or(NotJoined)
    }

    /// Subscribes `conn` of `user` to channel `name` (created if new). Joining again is
    /// idempotent: it changes the mode and, with a different meta, announces an update.
    pub fn join(
        &mut self,
        name: &str,
        conn: ConnId,
        user: &UserId,
        meta: Option<Meta>,
        mode: EventsMode,
    ) -> (ChannelId, Outcome) {
        let id = self.find_or_create(name);
        let Some(channel) = self.channels.get_mut(id) else {
            unreachable!("find_or_create returns a live channel");
        };
        let subscription = Subscription { mode, member: true };
        let already_subscribed = channel.subscribe(conn, subscription).is_some();
        // A new subscription changes the user's connections; a given meta may differ from
        // the one the other nodes of a cluster last set.
        let member = (!already_subscribed || meta.is_some())
            .then(|| channel.member_change(user, meta.clone()));
        let mut outcome = Outcome {
            counts_changed: !already_subscribed,
            member,
            ..Outcome::default()
        };
        match channel.members.get_mut(user) {
            None => {
                let meta = meta.unwrap_or_default();
                channel.members.insert(
                    user.clone(),
                    Member {
                        conns: 1,
                        in_grace: false,
                        meta: meta.clone(),
                    },
                );
                outcome.announcement = Some(channel.announce(id, Some(conn), |seq| Change::Join {
                    user: user.clone(),
                    meta,
                    seq,
                }));
            }
            Some(member) => {
                if !already_subscribed {
                    member.conns += 1;
                }
                let ended_grace = std::mem::take(&mut member.in_grace);
                let new_meta = meta.filter(|meta| *meta != member.meta);
                if let Some(meta) = &new_meta {
                    member.meta = meta.clone();
                }
                if ended_grace {
                    channel.cancel_grace(user);
                }
                if let Some(meta) = new_meta {
                    outcome.announcement =
                        Some(channel.announce(id, Some(conn), |seq| Change::Update {
                            user: user.clone(),
                            meta,
                            seq,
                        }));
                }
            }
        }
        (id, outcome)
    }

    /// Subscribes `conn` to channel `name` (created if new) to hear its publications, without
    /// making its user a member. Subscribing again changes nothing (a member stays one).
    pub fn subscribe_only(&mut self, name: &str, conn: ConnId) -> (ChannelId, Outcome) {
        let id = self.find_or_create(name);
        let Some(channel) = self.channels.get_mut(id) else {
            unreachable!("find_or_create returns a live channel");
        };
        if channel.subscription(conn).is_some() {
            return (id, Outcome::default());
        }
        let subscription = Subscription {
            mode: EventsMode::None,
            member: false,
        };
        channel.subscribe(conn, subscription);
        let outcome = Outcome {
            counts_changed: true,
            ..Outcome::default()
        };
        (id, outcome)
    }

    /// Unsubscribes `conn` of `user` from `channel`. When that was the user's last
    /// connection there, the user leaves, at once or, given `grace` and a reason other than
    /// [`LeaveReason::Left`], when the grace timer fires ([`Roster::end_grace`]).
    pub fn leave(
        &mut self,
        id: ChannelId,
        conn: ConnId,
        user: &UserId,
        reason: LeaveReason,
        grace: bool,
    ) -> Result<Outcome, NotJoined> {
        let channel = self.channels.get_mut(id).ok_or(NotJoined)?;
        let subscription = channel.unsubscribe(conn).ok_or(NotJoined)?;
        if !subscription.member {
            self.remove_if_empty(id);
            return Ok(Outcome {
                counts_changed: true,
                ..Outcome::default()
            });
        }
        let mut outcome = Outcome {
            counts_changed: true,
            member: Some(channel.member_change(user, None)),
            ..Outcome::default()
        };
        let member = channel.members.get_mut(user).ok_or(NotJoined)?;
        member.conns -= 1;
        if member.conns == 0 {
            if grace && reason != LeaveReason::Left {
                let serial = self.next_grace_serial;
                self.next_grace_serial = serial.wrapping_add(1);
                member.in_grace = true;
                channel.graces.push(Grace {
                    serial,
                    user: user.clone(),
                    reason,
                });
                outcome.grace = Some(GraceKey {
                    channel_slot: id.slot,
                    serial,
                });
                outcome.counts_changed = true;
            } else {
                channel.members.remove(user);
                outcome.announcement = Some(channel.announce(id, None, |seq| Change::Leave {
                    user: user.clone(),
                    reason,
                    seq,
                }));
            }
        }
        self.remove_if_empty(id);
        Ok(outcome)
    }

    /// Ends a leave grace whose timer fired: the user leaves unless it came back (then the
    /// key is stale and nothing happens). Says which channel the outcome is of.
    pub fn end_grace(&mut self, key: GraceKey) -> Option<(ChannelId, Outcome)> {
        let (id, channel) = self.channels.in_slot_mut(key.channel_slot)?;
        let index = channel
            .graces
            .iter()
            .position(|grace| grace.serial == key.serial)?;
        let Grace { user, reason, .. } = channel.graces.swap_remove(index);
        let member = Some(channel.member_change(&user, None));
        channel.members.remove(&user);
        let announcement = channel.announce(id, None, |seq| Change::Leave { user, reason, seq });
        self.remove_if_empty(id);
        let outcome = Outcome {
            announcement: Some(announcement),
            counts_changed: true,
            grace: None,
            member,
        };
        Some((id, outcome))
    }

    /// Replaces `user`'s meta in `channel`; announces an update when it differs.
    pub fn update(
        &mut self,
        id: ChannelId,
        conn: ConnId,
        user: &UserId,
        meta: Meta,
    ) -> Result<Outcome, NotJoined> {
        let channel = self.channels.get_mut(id).ok_or(NotJoined)?;
        if !channel.subscription(conn).is_some_and(|s| s.member) {
            return Err(NotJoined);
        }
        let member = channel.members.get_mut(user).ok_or(NotJoined)?;
        if member.meta == meta {
            return Ok(Outcome::default());
        }
        member.meta = meta.clone();
        let change = channel.member_change(user, Some(meta.clone()));
        let announcement = channel.announce(id, None, |seq| Change::Update {
            user: user.clone(),
            meta,
            seq,
        });
        Ok(Outcome {
            announcement: Some(announcement),
            member: Some(change),
            ..Outcome::default()
        })
    }

    /// The channel's members, by user id, for a `state` message.
    pub fn members(&self, id: ChannelId) -> impl Iterator<Item = MemberView<'_>> {
        self.channels.get(id).into_iter().flat_map(|channel| {
            channel.members.iter().map(|(user, member)| MemberView {
                user,
                conns: member.conns,
                meta: &member.meta,
            })
        })
    }

    /// The channel's seq (0 for a stale id).
    pub fn seq(&self, id: ChannelId) -> u64 {
        self.channels.get(id).map_or(0, |channel| channel.seq)
    }

    /// The channel's counts, unless `id` is stale.
    pub fn counts(&self, id: ChannelId) -> Option<Counts> {
        self.channels.get(id).map(|channel| Counts {
            users: channel.members.len(),
            connections: channel.subscriber_count(),
            seq: channel.seq,
        })
    }

    /// Starts `conn` watching channel `name` (created if new); idempotent.
    pub fn watch(&mut self, name: &str, conn: ConnId) -> ChannelId {
        let id = self.find_or_create(name);
        if let Some(channel) = self.channels.get_mut(id) {
            if !channel.watchers.contains(&conn) {
                channel.watchers.push(conn);
            }
        }
        id
    }

    /// Stops `conn` watching `id`.
    pub fn unwatch(&mut self, id: ChannelId, conn: ConnId) -> Result<(), NotJoined> {
        let channel = self.channels.get_mut(id).ok_or(NotJoined)?;
        let index = channel
            .watchers
            .iter()
            .position(|w| *w == conn)
            .ok_or(NotJoined)?;
        channel.watchers.swap_remove(index);
        self.remove_if_empty(id);
        Ok(())
    }

    /// The connections watching the channel.
    pub fn watchers(&self, id: ChannelId) -> impl Iterator<Item = ConnId> + '_ {
        self.channels
            .get(id)
            .into_iter()
            .flat_map(|channel| channel.watchers.iter().copied())
    }

    /// The events mode of `conn` in the channel, if it is subscribed.
    pub fn mode(&self, id: ChannelId, conn: ConnId) -> Option<EventsMode> {
        self.channels.get(id)?.subscription(conn).map(|s| s.mode)
    }

    /// The names of every channel (with members, subscribers or watchers).
    pub fn channel_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.channels.iter().map(|(_, channel)| &*channel.name)
    }

    /// Every channel that has at least one member.
    pub fn channels_with_members(&self) -> impl Iterator<Item = ChannelId> + '_ {
        self.channels
            .iter()
            .filter(|(_, channel)| !channel.members.is_empty())
            .map(|(id, _)| id)
    }

    /// Every channel that has at least one watcher.
    pub fn watched_channels(&self) -> impl Iterator<Item = ChannelId> + '_ {
        self.channels
            .iter()
            .filter(|(_, channel)| !channel.watchers.is_empty())
            .map(|(id, _)| id)
    }

    /// True when `user` is a member of the channel (in grace included).
    pub fn is_member(&self, id: ChannelId, user: &str) -> bool {
        self.channels
            .get(id)
            .is_some_and(|channel| channel.members.contains_key(user))
    }

    /// True when the channel has at least one member (one in grace counts).
    pub fn has_members(&self, id: ChannelId) -> bool {
        self.channels
            .get(id)
            .is_some_and(|channel| !channel.members.is_empty())
    }

    /// The channel's subscribed connections and their modes.
    pub fn subscribers(&self, id: ChannelId) -> impl Iterator<Item = (ConnId, EventsMode)> + '_ {
        MODE_ORDER
            .into_iter()
            .flat_map(move |mode| self.subscribers_in(id, mode).map(move |conn| (conn, mode)))
    }

    /// The channel's connections subscribed in `mode`.
    pub fn subscribers_in(
        &self,
        id: ChannelId,
        mode: EventsMode,
    ) -> impl Iterator<Item = ConnId> + '_ {
        self.channels.get(id).into_iter().flat_map(move |channel| {
            channel.subscribers[mode_index(mode)]
                .iter()
                .map(|(&id, _)| id)
        })
    }

    /// How many of `user`'s connections this roster has in the channel: `Some(0)` while
    /// its leave grace runs, `None` when it is no member.
    pub fn holding(&self, id: ChannelId, user: &str) -> Option<u32> {
        Some(self.channels.get(id)?.members.get(user)?.conns)
    }

    /// Every membership: channel, user, connections (0 in leave grace), meta.
    pub fn holdings(&self) -> impl Iterator<Item = (&str, &str, u32, &Meta)> + '_ {
        self.channels.iter().flat_map(|(_, channel)| {
            channel
                .members
                .iter()
                .map(|(user, member)| (&*channel.name, &**user, member.conns, &member.meta))
        })
    }

    /// Called after the channel's counts changed at `now`: says when to tell its `count`
    /// subscribers and watchers, at most once per [`COUNT_INTERVAL_MS`]. `watched_elsewhere`
    /// says that someone outside the channel (a watcher of every channel) listens too.
    pub fn counts_changed(
        &mut self,
        id: ChannelId,
        now: Millis,
        watched_elsewhere: bool,
    ) -> CountsDue {
        let Some(channel) = self.channels.get_mut(id) else {
            return CountsDue::Nothing;
        };
        let listened = !channel.subscribers[mode_index(EventsMode::Count)].is_empty()
            || !channel.watchers.is_empty()
            || watched_elsewhere;
        if !listened || channel.counts_flush_scheduled {
            return CountsDue::Nothing;
        }
        match channel.counts_sent_at {
            Some(sent) if now < sent + COUNT_INTERVAL_MS => {
                channel.counts_flush_scheduled = true;
                CountsDue::At(sent + COUNT_INTERVAL_MS)
            }
            _ => {
                channel.counts_sent_at = Some(now);
                CountsDue::Now
            }
        }
    }

    /// The scheduled count flush of `id` is due at `now`; true when it should be sent.
    pub fn flush_counts(&mut self, id: ChannelId, now: Millis) -> bool {
        let Some(channel) = self.channels.get_mut(id) else {
            return false;
        };
        let due = std::mem::take(&mut channel.counts_flush_scheduled);
        if due {
            channel.counts_sent_at = Some(now);
        }
        due
    }

    fn find_or_create(&mut self, name: &str) -> ChannelId {
        if let Some(id) = self.find(name) {
            return id;
        }
        let name: Rc<str> = name.into();
        let id = self.channels.insert(Channel::new(name.clone()));
        self.by_name.insert(name, id);
        id
    }

    fn remove_if_empty(&mut self, id: ChannelId) {
        if self.channels.get(id).is_some_and(Channel::is_empty) {
            if let Some(channel) = self.channels.remove(id) {
                self.by_name.remove(&channel.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(slot: u32) -> ConnId {
        Key {
            slot,
            generation: 0,
        }
    }

    fn meta(text: &str) -> Meta {
        crate::protocol::decode(
            &format!(r#"{{"type":"update","channel":"c","meta":{text}}}"#),
            1024,
        )
        .map(|command| match command.action {
            crate::model::Action::Update { meta, .. } => meta,
            other => panic!("{other:?}"),
        })
        .expect("test meta")
    }

    fn change(outcome: &Outcome) -> Option<&Change> {
        outcome.announcement.as_ref().map(|a| &a.change)
    }

    fn users(roster: &Roster, id: ChannelId) -> Vec<(String, u32)> {
        let mut users: Vec<_> = roster
            .members(id)
            .map(|m| (m.user.to_owned(), m.conns))
            .collect();
        users.sort();
        users
    }

    #[test]
    fn a_subscriber_only_hears_publications_and_is_no_member() {
        let mut roster = Roster::new();
        let alice = roster.connect_user("alice");
        let (id, outcome) = roster.subscribe_only("news", conn(1));
        assert_eq!((outcome.counts_changed, outcome.announcement), (true, None));
        assert_eq!(
            roster.subscribe_only("news", conn(1)).1,
            Outcome::default(),
            "again"
        );
        // alice is a member through another connection: conn 1 leaving must not touch her.
        roster.join("news", conn(2), &alice, None, EventsMode::All);
        assert_eq!(users(&roster, id), [("alice".to_owned(), 1)]);
        let counts = roster.counts(id).expect("counts");
        assert_eq!((counts.users, counts.connections, counts.seq), (1, 2, 1));
        assert_eq!(roster.subscribers(id).count(), 2, "both hear publications");
        assert!(
            roster.update(id, conn(1), &alice, meta("{}")).is_err(),
            "no member"
        );
        let outcome = roster
            .leave(id, conn(1), &alice, LeaveReason::Closed, false)
            .expect("subscribed");
        assert_eq!((outcome.counts_changed, outcome.announcement), (true, None));
        assert_eq!(users(&roster, id), [("alice".to_owned(), 1)]);
        roster
            .leave(id, conn(2), &alice, LeaveReason::Left, false)
            .expect("joined");
        assert_eq!(
            roster.channel_count(),
            0,
            "the last subscriber removes the channel"
        );
    }

    #[test]
    fn first_connection_joins_and_last_leaves() {
        let mut roster = Roster::new();
        let alice = roster.connect_user("alice");
        let (id, outcome) = roster.join("c", conn(1), &alice, None, EventsMode::All);
        assert_eq!(
            outcome.announcement,
            Some(Announcement {
                channel: id,
                name: "c".into(),
                except: Some(conn(1)),
                change: Change::Join {
                    user: alice.clone(),
                    meta: Meta::empty(),
                    seq: 1
                }
            })
        );
        let outcome = roster
            .leave(id, conn(1), &alice, LeaveReason::Closed, false)
            .expect("joined");
        assert_eq!(
            change(&outcome),
            Some(&Change::Leave {
                user: alice.clone(),
                reason: LeaveReason::Closed,
                seq: 2
            })
        );
        assert_eq!(roster.channel_count(), 0, "an empty channel is removed");
        assert_eq!(roster.name(id), None, "its id is stale");
    }

    #[test]
    fn second_connection_of_a_user_is_silent() {
        let mut roster = Roster::new();
        let alice = roster.connect_user("alice");
        let again = roster.connect_user("alice");
        assert_eq!(alice, again, "one id per user");
        assert_eq!(roster.users_online(), 1);
        let (id, _) = roster.join("c", conn(1), &alice, None, EventsMode::All);
        let (_, outcome) = roster.join("c", conn(2), &alice, None, EventsMode::All);
        assert_eq!(outcome.announcement, None);
        assert!(outcome.counts_changed);
        assert_eq!(users(&roster, id), vec![("alice".into(), 2)]);
        let outcome = roster
            .leave(id, conn(1), &alice, LeaveReason::Closed, false)
            .expect("joined");
        assert_eq!(outcome.announcement, None, "another tab remains");
        let outcome = roster
            .leave(id, conn(2), &alice, LeaveReason::Left, false)
            .expect("joined");
        assert!(matches!(
            change(&outcome),
            Some(Change::Leave {
                reason: LeaveReason::Left,
                seq: 2,
                ..
            })
        ));
        roster.disconnect_user(&alice);
        roster.disconnect_user(&again);
        assert_eq!(roster.users_online(), 0);
    }

    #[test]
    fn seq_counts_every_announced_change_per_channel() {
        let mut roster = Roster::new();
        let (alice, bob) = (roster.connect_user("alice"), roster.connect_user("bob"));
        let (c, _) = roster.join("c", conn(1), &alice, None, EventsMode::All);
        let (d, _) = roster.join("d", conn(1), &alice, None, EventsMode::All);
        roster.join("c", conn(2), &bob, None, EventsMode::All);
        let outcome = roster
            .update(c, conn(2), &bob, meta(r#"{"s":1}"#))
            .expect("joined");
        assert!(matches!(
            change(&outcome),
            Some(Change::Update { seq: 3, .. })
        ));
        let outcome = roster
            .update(c, conn(2), &bob, meta(r#"{"s":1}"#))
            .expect("joined");
        assert_eq!(outcome.announcement, None, "same meta: no change, no seq");
        assert_eq!(roster.seq(c), 3);
        assert_eq!(roster.seq(d), 1);
    }

    #[test]
    fn rejoin_is_idempotent_and_new_meta_is_an_update() {
        let mut roster = Roster::new();
        let alice = roster.connect_user("alice");
        let (id, _) = roster.join(
            "c",
            conn(1),
            &alice,
            Some(meta(r#"{"a":1}"#)),
            EventsMode::All,
        );
        let (_, outcome) = roster.join("c", conn(1), &alice, None, EventsMode::None);
        assert_eq!(outcome, Outcome::default());
        let (_, outcome) = roster.join(
            "c",
            conn(2),
            &alice,
            Some(meta(r#"{"a":2}"#)),
            EventsMode::All,
        );
        assert!(matches!(
            change(&outcome),
            Some(Change::Update { seq: 2, .. })
        ));
        assert_eq!(users(&roster, id), vec![("alice".into(), 2)]);
        let latest = roster
            .members(id)
            .next()
            .map(|m| m.meta.as_str().to_owned());
        assert_eq!(latest.as_deref(), Some(r#"{"a":2}"#));
    }

    #[test]
    fn leave_requires_membership() {
        let mut roster = Roster::new();
        let alice = roster.connect_user("alice");
        let (id, _) = roster.join("c", conn(1), &alice, None, EventsMode::All);
        assert_eq!(
            roster.leave(id, conn(9), &alice, LeaveReason::Left, false),
            Err(NotJoined)
        );
        assert_eq!(
            roster.update(id, conn(9), &alice, Meta::empty()),
            Err(NotJoined)
        );
        assert_eq!(roster.joined("c", conn(9)), Err(NotJoined));
        assert_eq!(roster.joined("nope", conn(1)), Err(NotJoined));
        assert_eq!(roster.joined("c", conn(1)), Ok(id));
    }

    /// Every present user pays for a membership in each of its channels: the README's
    /// memory table counts it.
    #[test]
    fn a_membership_takes_16_bytes() {
        assert_eq!(std::mem::size_of::<Member>(), 16);
    }

    #[test]
    fn reconnect_within_grace_is_silent() {
        let mut roster = Roster::new();
        let alice = roster.connect_user("alice");
        let (id, _) = roster.join("c", conn(1), &alice, None, EventsMode::All);
        let outcome = roster
            .leave(id, conn(1), &alice, LeaveReason::Closed, true)
            .expect("joined");
        assert_eq!(outcome.announcement, None);
        let grace = outcome.grace.expect("grace started");
        assert_eq!(
            users(&roster, id),
            vec![("alice".into(), 0)],
            "still present, no conns"
        );
        let (again, outcome) = roster.join("c", conn(2), &alice, None, EventsMode::All);
        assert_eq!(again, id, "the channel survived the grace");
        assert_eq!(
            outcome.announcement, None,
            "no join after a reconnect within the grace"
        );
        assert_eq!(roster.end_grace(grace), None, "the old grace is stale");
        assert_eq!(roster.seq(id), 1);
    }

    #[test]
    fn a_grace_key_of_a_channel_gone_ends_nothing_in_the_one_reusing_its_slot() {
        let mut roster = Roster::new();
        let alice = roster.connect_user("alice");
        let bob = roster.connect_user("bob");
        let (first, _) = roster.join("c", conn(1), &alice, None, EventsMode::All);
        let stale = roster
            .leave(first, conn(1), &alice, LeaveReason::Closed, true)
            .expect("joined")
            .grace
            .expect("grace started");
        roster.join("c", conn(2), &alice, None, EventsMode::All);
        roster
            .leave(first, conn(2), &alice, LeaveReason::Left, true)
            .expect("joined");
        assert_eq!(roster.channel_count(), 0, "the channel is gone");
        let (second, _) = roster.join("d", conn(3), &bob, None, EventsMode::All);
        assert_eq!(second.slot, first.slot, "the new channel reuses the slot");
        let grace = roster
            .leave(second, conn(3), &bob, LeaveReason::Closed, true)
            .expect("joined")
            .grace
            .expect("grace started");
        assert_eq!(roster.end_grace(stale), None, "bob's grace runs on");
        assert!(roster.end_grace(grace).is_some());
    }

    #[test]
    fn grace_end_announces_the_original_reason() {
        let mut roster = Roster::new();
        let alice = roster.connect_user("alice");
        let (id, _) = roster.join("c", conn(1), &alice, None, EventsMode::All);
        let grace = roster
            .leave(id, conn(1), &alice, LeaveReason::Timeout, true)
            .expect("joined")
            .grace;
        let (ended, outcome) = roster.end_grace(grace.expect("grace")).expect("due");
        assert_eq!(ended, id);
        assert_eq!(
            change(&outcome),
            Some(&Change::Leave {
                user: alice,
                reason: LeaveReason::Timeout,
                seq: 2
            })
        );
        assert_eq!(roster.channel_count(), 0);
    }

    #[test]
    fn explicit_leave_skips_the_grace() {
        let mut roster = Roster::new();
        let alice = roster.connect_user("alice");
        let (id, _) = roster.join("c", conn(1), &alice, None, EventsMode::All);
        let outcome = roster
            .leave(id, conn(1), &alice, LeaveReason::Left, true)
            .expect("joined");
        assert_eq!(outcome.grace, None);
        assert!(matches!(
            change(&outcome),
            Some(Change::Leave {
                reason: LeaveReason::Left,
                ..
            })
        ));
    }

    #[test]
    fn counts_are_coalesced_to_one_per_interval() {
        let mut roster = Roster::new();
        let (alice, bob) = (roster.connect_user("alice"), roster.connect_user("bob"));
        let (id, _) = roster.join("radio", conn(1), &alice, None, EventsMode::All);
        assert_eq!(
            roster.counts_changed(id, 0, false),
            CountsDue::Nothing,
            "no count subscriber"
        );
        roster.join("radio", conn(2), &bob, None, EventsMode::Count);
        assert_eq!(roster.counts_changed(id, 100, false), CountsDue::Now);
        assert_eq!(roster.counts_changed(id, 300, false), CountsDue::At(1_100));
        assert_eq!(
            roster.counts_changed(id, 400, false),
            CountsDue::Nothing,
            "already scheduled"
        );
        assert!(roster.flush_counts(id, 1_100));
        assert!(!roster.flush_counts(id, 1_200), "one flush per schedule");
        assert_eq!(roster.counts_changed(id, 2_100, false), CountsDue::Now);
        assert_eq!(
            roster.counts(id),
            Some(Counts {
                users: 2,
                connections: 2,
                seq: 2
            })
        );
        let modes: Vec<_> = {
            let mut modes: Vec<_> = roster.subscribers(id).collect();
            modes.sort_by_key(|(conn, _)| *conn);
            modes.into_iter().map(|(_, mode)| mode).collect()
        };
        assert_eq!(modes, vec![EventsMode::All, EventsMode::Count]);
    }

    #[test]
    fn watchers_see_without_being_members() {
        let mut roster = Roster::new();
        let alice = roster.connect_user("alice");
        let id = roster.watch("c", conn(9));
        assert_eq!(
            roster.counts(id),
            Some(Counts {
                users: 0,
                connections: 0,
                seq: 0
            })
        );
        assert_eq!(roster.channels_with_members().count(), 0);
        assert_eq!(
            roster.counts_changed(id, 0, false),
            CountsDue::Now,
            "a watcher listens to counts"
        );
        let (same, outcome) = roster.join("c", conn(1), &alice, None, EventsMode::All);
        assert_eq!(same, id, "watching created the channel the join uses");
        assert!(matches!(
            change(&outcome),
            Some(Change::Join { seq: 1, .. })
        ));
        assert_eq!(roster.watchers(id).collect::<Vec<_>>(), vec![conn(9)]);
        assert_eq!(
            roster.mode(id, conn(9)),
            None,
            "a watcher is not subscribed"
        );
        assert_eq!(users(&roster, id), vec![("alice".into(), 1)]);
        roster
            .leave(id, conn(1), &alice, LeaveReason::Closed, false)
            .expect("joined");
        assert_eq!(roster.channel_count(), 1, "kept alive by its watcher");
        assert_eq!(roster.unwatch(id, conn(9)), Ok(()));
        assert_eq!(roster.unwatch(id, conn(9)), Err(NotJoined));
        assert_eq!(roster.channel_count(), 0);
    }

    #[test]
    fn counts_for_someone_watching_everything() {
        let mut roster = Roster::new();
        let alice = roster.connect_user("alice");
        let (id, _) = roster.join("c", conn(1), &alice, None, EventsMode::All);
        assert_eq!(roster.counts_changed(id, 0, true), CountsDue::Now);
        assert!(roster.has_members(id));
        assert_eq!(roster.channels_with_members().collect::<Vec<_>>(), vec![id]);
    }
}
