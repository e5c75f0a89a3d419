//! Property tests of the pure core against small reference models, in virtual time.
//!
//! - [`roster`]: random connects, joins, updates, leaves, closes (with and without leave
//!   grace), grace timers and count coalescing, checked after every step against a model
//!   made of plain maps: members, connections, meta, `seq`, counts, the exact announcements
//!   and the removal of empty channels.
//! - [`wheel`]: random inserts and expiries on a monotone clock against a sorted list: every
//!   key fires exactly once, never early, at the first expiry past its (rounded) deadline, in
//!   deadline then insertion order; `next_deadline` never later than the earliest entry.
//! - [`liveness`]: random frames and deadlines against the heartbeat's promises: expired
//!   only after `timeout` of silence, at most one Ping per silence; and, driven on a wheel,
//!   a silent peer pinged once and dropped within one tick of its timeout.
//! - [`frames`]: random client frame streams (whole, fragmented with control frames between
//!   fragments, Close, unmasked, oversized, garbage) split into random reads: tungstenite
//!   reports the same with its context dropped wherever `FrameBoundary` says the connection
//!   is idle as with one context throughout.
//! - [`regressions`]: inputs the fuzz targets in `fuzz/` found, replayed as plain tests.
//!
//! Case counts are kept small so the file runs in a few seconds; `PROPTEST_CASES=N` runs
//! each property N times instead. A failure prints the shrunk sequence of operations.

mod common;

use common::cases::proptest_config as config;
use proptest::prelude::*;

mod roster {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

    use rollcall::ids::Key;
    use rollcall::model::Counts;
    use rollcall::model::{Action, EventsMode, LeaveReason, Meta};
    use rollcall::protocol::decode;
    use rollcall::roster::{
        Announcement, Change, ChannelId, ConnId, CountsDue, GraceKey, MemberChange, NotJoined,
        Outcome, Roster, UserId, COUNT_INTERVAL_MS,
    };
    use rollcall::wheel::Millis;

    const CHANNELS: [&str; 3] = ["a", "b", "c"];
    const USERS: [&str; 3] = ["u0", "u1", "u2"];
    /// Connection slots; a slot reopened gets a new generation, as in the server's slab.
    const SLOTS: usize = 5;
    /// Meta values: 0 is `{}`, `i` is `{"k":i}`.
    const METAS: usize = 3;
    const MODES: [EventsMode; 3] = [EventsMode::All, EventsMode::Count, EventsMode::None];
    const REASONS: [LeaveReason; 6] = [
        LeaveReason::Left,
        LeaveReason::Closed,
        LeaveReason::Timeout,
        LeaveReason::Error,
        LeaveReason::SlowConsumer,
        LeaveReason::Shutdown,
    ];

    fn meta(index: usize) -> Meta {
        if index == 0 {
            return Meta::empty();
        }
        let text = format!(r#"{{"type":"update","channel":"c","meta":{{"k":{index}}}}}"#);
        match decode(&text, 1024).map(|command| command.action) {
            Ok(Action::Update { meta, .. }) => meta,
            other => panic!("test meta {index}: {other:?}"),
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Open a connection of `user` in `slot` (skipped when the slot is open).
        Open { slot: usize, user: usize },
        /// `join` (again, possibly), with or without meta, in an events mode.
        Join {
            slot: usize,
            channel: usize,
            meta: Option<usize>,
            mode: usize,
        },
        /// `update` of the meta.
        Update {
            slot: usize,
            channel: usize,
            meta: usize,
        },
        /// `leave` of one channel (any reason; the server uses `Left` for the command).
        Leave {
            slot: usize,
            channel: usize,
            reason: usize,
            grace: bool,
        },
        /// The connection ends: it leaves every channel it joined, then disconnects.
        Close {
            slot: usize,
            reason: usize,
            grace: bool,
        },
        /// A grace timer fires (possibly one a reconnect made stale).
        EndGrace { pick: usize },
        /// Virtual time passes; scheduled count flushes fire on time.
        Tick { ms: Millis },
        /// Someone starts or stops watching every channel.
        WatchAll(bool),
    }

    fn op() -> impl Strategy<Value = Op> {
        let slot = 0..SLOTS;
        let channel = 0..CHANNELS.len();
        prop_oneof![
            3 => (slot.clone(), 0..USERS.len()).prop_map(|(slot, user)| Op::Open { slot, user }),
            6 => (slot.clone(), channel.clone(), proptest::option::of(0..METAS), 0..MODES.len())
                .prop_map(|(slot, channel, meta, mode)| Op::Join { slot, channel, meta, mode }),
            2 => (slot.clone(), channel.clone(), 0..METAS)
                .prop_map(|(slot, channel, meta)| Op::Update { slot, channel, meta }),
            3 => (slot.clone(), channel, 0..REASONS.len(), any::<bool>())
                .prop_map(|(slot, channel, reason, grace)| Op::Leave { slot, channel, reason, grace }),
            2 => (slot, 0..REASONS.len(), any::<bool>())
                .prop_map(|(slot, reason, grace)| Op::Close { slot, reason, grace }),
            2 => any::<usize>().prop_map(|pick| Op::EndGrace { pick }),
            2 => prop_oneof![0..300u64, 0..2_500u64].prop_map(|ms| Op::Tick { ms }),
            1 => any::<bool>().prop_map(Op::WatchAll),
        ]
    }

    struct ConnModel {
        key: ConnId,
        user: usize,
        id: UserId,
        channels: BTreeSet<usize>,
    }

    struct MemberModel {
        conns: BTreeSet<ConnId>,
        meta: usize,
        grace: Option<(GraceKey, LeaveReason)>,
    }

    struct ChannelModel {
        id: ChannelId,
        seq: u64,
        members: BTreeMap<usize, MemberModel>,
        subscribers: BTreeMap<ConnId, EventsMode>,
    }

    /// Count coalescing of one channel id, as promised: at most one send per interval, and
    /// a change while someone listens is sent at once or by a flush within the interval.
    #[derive(Default)]
    struct CountsModel {
        last_send: Option<Millis>,
        pending: Option<Millis>,
    }

    impl CountsModel {
        fn send(&mut self, now: Millis) {
            if let Some(last) = self.last_send {
                assert!(
                    now >= last + COUNT_INTERVAL_MS,
                    "counts sent at {last} and again at {now}"
                );
            }
            self.last_send = Some(now);
        }
    }

    struct Harness {
        roster: Roster,
        conns: Vec<Option<ConnModel>>,
        generations: Vec<u32>,
        channels: BTreeMap<usize, ChannelModel>,
        /// Ids of removed channels, with their names.
        stale: Vec<(usize, ChannelId)>,
        /// Grace keys on the (virtual) wheel, not yet fired.
        graces: Vec<GraceKey>,
        issued: HashSet<GraceKey>,
        counts: HashMap<ChannelId, CountsModel>,
        flushes: Vec<(Millis, ChannelId)>,
        now: Millis,
        watch_all: bool,
    }

    impl Harness {
        fn new() -> Self {
            Harness {
                roster: Roster::new(),
                conns: (0..SLOTS).map(|_| None).collect(),
                generations: vec![0; SLOTS],
                channels: BTreeMap::new(),
                stale: Vec::new(),
                graces: Vec::new(),
                issued: HashSet::new(),
                counts: HashMap::new(),
                flushes: Vec::new(),
                now: 0,
                watch_all: false,
            }
        }

        fn apply(&mut self, op: &Op) {
            match *op {
                Op::Open { slot, user } => self.open(slot, user),
                Op::Join {
                    slot,
                    channel,
                    meta,
                    mode,
                } => self.join(slot, channel, meta, MODES[mode]),
                Op::Update {
                    slot,
                    channel,
                    meta,
                } => self.update(slot, channel, meta),
                Op::Leave {
                    slot,
                    channel,
                    reason,
                    grace,
                } => self.leave(slot, channel, REASONS[reason], grace),
                Op::Close {
                    slot,
                    reason,
                    grace,
                } => self.close(slot, REASONS[reason], grace),
                Op::EndGrace { pick } => self.end_grace(pick),
                Op::Tick { ms } => self.tick(ms),
                Op::WatchAll(on) => self.watch_all = on,
            }
        }

        fn open(&mut self, slot: usize, user: usize) {
            if self.conns[slot].is_some() {
                return;
            }
            let id = self.roster.connect_user(USERS[user]);
            assert_eq!(&*id, USERS[user]);
            for other in self.conns.iter().flatten().filter(|c| c.user == user) {
                assert_eq!(other.id, id, "one id per user");
            }
            let key = Key {
                slot: slot as u32,
                generation: self.generations[slot],
            };
            self.generations[slot] += 1;
            self.conns[slot] = Some(ConnModel {
                key,
                user,
                id,
                channels: BTreeSet::new(),
            });
        }

        /// The channel's live id, or a stale one of that name (the calls must refuse it).
        fn some_id(&self, channel: usize) -> Option<ChannelId> {
            self.channels.get(&channel).map(|c| c.id).or_else(|| {
                self.stale
                    .iter()
                    .rev()
                    .find(|(name, _)| *name == channel)
                    .map(|(_, id)| *id)
            })
        }

        fn join(
            &mut self,
            slot: usize,
            channel: usize,
            meta_index: Option<usize>,
            mode: EventsMode,
        ) {
            let Some(conn) = self.conns[slot].as_mut() else {
                return;
            };
            let (id, outcome) = self.roster.join(
                CHANNELS[channel],
                conn.key,
                &conn.id,
                meta_index.map(meta),
                mode,
            );
            match self.channels.get(&channel) {
                Some(existing) => assert_eq!(id, existing.id, "a live channel keeps its id"),
                None => {
                    assert!(
                        self.stale.iter().all(|(_, old)| *old != id),
                        "a new channel must not reuse a stale id"
                    );
                }
            }
            let model = self
                .channels
                .entry(channel)
                .or_insert_with(|| ChannelModel {
                    id,
                    seq: 0,
                    members: BTreeMap::new(),
                    subscribers: BTreeMap::new(),
                });
            let already = model.subscribers.insert(conn.key, mode).is_some();
            conn.channels.insert(channel);
            let mut expected = Outcome {
                counts_changed: !already,
                member: (!already || meta_index.is_some()).then(|| MemberChange {
                    channel: CHANNELS[channel].into(),
                    user: conn.id.clone(),
                    meta: meta_index.map(meta),
                }),
                ..Outcome::default()
            };
            let announce = |model: &mut ChannelModel, change: &dyn Fn(u64) -> Change| {
                model.seq += 1;
                Some(Announcement {
                    channel: id,
                    name: CHANNELS[channel].into(),
                    except: Some(conn.key),
                    change: change(model.seq),
                })
            };
            match model.members.get_mut(&conn.user) {
                None => {
                    let meta_index = meta_index.unwrap_or(0);
                    model.members.insert(
                        conn.user,
                        MemberModel {
                            conns: BTreeSet::from([conn.key]),
                            meta: meta_index,
                            grace: None,
                        },
                    );
                    expected.announcement = announce(model, &|seq| Change::Join {
                        user: conn.id.clone(),
                        meta: meta(meta_index),
                        seq,
                    });
                }
                Some(member) => {
                    // A second tab, or a reconnect within the grace: silent.
                    member.conns.insert(conn.key);
                    member.grace = None;
                    if let Some(new) = meta_index.filter(|new| *new != member.meta) {
                        member.meta = new;
                        expected.announcement = announce(model, &|seq| Change::Update {
                            user: conn.id.clone(),
                            meta: meta(new),
                            seq,
                        });
                    }
                }
            }
            assert_eq!(outcome, expected, "join");
            if outcome.counts_changed {
                self.counts_changed(id);
            }
        }

        fn update(&mut self, slot: usize, channel: usize, meta_index: usize) {
            let Some(conn) = self.conns[slot].as_ref() else {
                return;
            };
            let Some(id) = self.some_id(channel) else {
                return;
            };
            let result = self.roster.update(id, conn.key, &conn.id, meta(meta_index));
            if !conn.channels.contains(&channel) {
                assert_eq!(result, Err(NotJoined), "update of a channel not joined");
                return;
            }
            let model = self.channels.get_mut(&channel).expect("joined: live");
            let member = model.members.get_mut(&conn.user).expect("joined: member");
            let mut expected = Outcome::default();
            if member.meta != meta_index {
                member.meta = meta_index;
                model.seq += 1;
                expected.announcement = Some(Announcement {
                    channel: id,
                    name: CHANNELS[channel].into(),
                    except: None,
                    change: Change::Update {
                        user: conn.id.clone(),
                        meta: meta(meta_index),
                        seq: model.seq,
                    },
                });
                expected.member = Some(MemberChange {
                    channel: CHANNELS[channel].into(),
                    user: conn.id.clone(),
                    meta: Some(meta(meta_index)),
                });
            }
            assert_eq!(result, Ok(expected), "update");
        }

        fn leave(&mut self, slot: usize, channel: usize, reason: LeaveReason, grace: bool) {
            let Some(id) = self.some_id(channel) else {
                return;
            };
            let Some(conn) = self.conns[slot].as_mut() else {
                return;
            };
            let result = self.roster.leave(id, conn.key, &conn.id, reason, grace);
            if !conn.channels.remove(&channel) {
                assert_eq!(result, Err(NotJoined), "leave of a channel not joined");
                return;
            }
            let outcome = result.expect("leave of a joined channel");
            let model = self.channels.get_mut(&channel).expect("joined: live");
            model.subscribers.remove(&conn.key);
            let member = model.members.get_mut(&conn.user).expect("joined: member");
            member.conns.remove(&conn.key);
            let mut expected = Outcome {
                counts_changed: true,
                member: Some(MemberChange {
                    channel: CHANNELS[channel].into(),
                    user: conn.id.clone(),
                    meta: None,
                }),
                ..Outcome::default()
            };
            if member.conns.is_empty() {
                if grace && reason != LeaveReason::Left {
                    let key = outcome.grace.expect("the last connection starts a grace");
                    assert_eq!(key.channel_slot(), id.slot, "grace key names the channel");
                    assert!(self.issued.insert(key), "grace token reused: {key:?}");
                    self.graces.push(key);
                    member.grace = Some((key, reason));
                    expected.grace = Some(key);
                } else {
                    model.members.remove(&conn.user);
                    model.seq += 1;
                    expected.announcement = Some(Announcement {
                        channel: id,
                        name: CHANNELS[channel].into(),
                        except: None,
                        change: Change::Leave {
                            user: conn.id.clone(),
                            reason,
                            seq: model.seq,
                        },
                    });
                }
            }
            assert_eq!(outcome, expected, "leave ({reason:?}, grace {grace})");
            self.remove_if_empty(channel);
            self.counts_changed(id);
        }

        fn close(&mut self, slot: usize, reason: LeaveReason, grace: bool) {
            let Some(conn) = self.conns[slot].as_ref() else {
                return;
            };
            for channel in conn.channels.clone() {
                self.leave(slot, channel, reason, grace);
            }
            let conn = self.conns[slot].take().expect("open");
            self.roster.disconnect_user(&conn.id);
        }

        fn end_grace(&mut self, pick: usize) {
            if self.graces.is_empty() {
                return;
            }
            let key = self.graces.swap_remove(pick % self.graces.len());
            let outcome = self.roster.end_grace(key);
            let pending = self.channels.iter_mut().find_map(|(channel, model)| {
                let user = model
                    .members
                    .iter()
                    .find(|(_, m)| m.grace.is_some_and(|(k, _)| k == key))
                    .map(|(user, _)| *user)?;
                Some((*channel, model, user))
            });
            let Some((channel, model, user)) = pending else {
                assert_eq!(outcome, None, "a stale grace does nothing");
                return;
            };
            let member = model.members.remove(&user).expect("found");
            let (_, reason) = member.grace.expect("in grace");
            model.seq += 1;
            let expected = Outcome {
                announcement: Some(Announcement {
                    channel: model.id,
                    name: CHANNELS[channel].into(),
                    except: None,
                    change: Change::Leave {
                        user: USERS[user].into(),
                        reason,
                        seq: model.seq,
                    },
                }),
                counts_changed: true,
                grace: None,
                member: Some(MemberChange {
                    channel: CHANNELS[channel].into(),
                    user: USERS[user].into(),
                    meta: None,
                }),
            };
            let id = model.id;
            assert_eq!(outcome, Some((id, expected)), "end of a grace");
            self.remove_if_empty(channel);
            self.counts_changed(id);
        }

        fn remove_if_empty(&mut self, channel: usize) {
            let model = &self.channels[&channel];
            if model.members.is_empty() && model.subscribers.is_empty() {
                self.stale.push((channel, model.id));
                self.channels.remove(&channel);
            }
        }

        fn live(&self, id: ChannelId) -> Option<&ChannelModel> {
            self.channels.values().find(|model| model.id == id)
        }

        fn counts_changed(&mut self, id: ChannelId) {
            let due = self.roster.counts_changed(id, self.now, self.watch_all);
            let Some(model) = self.live(id) else {
                assert_eq!(due, CountsDue::Nothing, "counts of a removed channel");
                return;
            };
            let listened = self.watch_all
                || model
                    .subscribers
                    .values()
                    .any(|mode| *mode == EventsMode::Count);
            let counts = self.counts.entry(id).or_default();
            let now = self.now;
            let expected = match (listened, counts.pending, counts.last_send) {
                (false, _, _) | (true, Some(_), _) => CountsDue::Nothing,
                (true, None, Some(last)) if now < last + COUNT_INTERVAL_MS => {
                    CountsDue::At(last + COUNT_INTERVAL_MS)
                }
                (true, None, _) => CountsDue::Now,
            };
            assert_eq!(due, expected, "counts_changed at {now}");
            match due {
                CountsDue::Now => counts.send(now),
                CountsDue::At(at) => {
                    assert!(at > now && at <= now + COUNT_INTERVAL_MS, "flush at {at}");
                    counts.pending = Some(at);
                    self.flushes.push((at, id));
                }
                CountsDue::Nothing => {}
            }
            if listened {
                // No change is lost: it went out now, or a flush within the interval will.
                let counts = &self.counts[&id];
                assert!(
                    counts.last_send == Some(now)
                        || counts
                            .pending
                            .is_some_and(|at| at <= now + COUNT_INTERVAL_MS),
                    "a change at {now} is neither sent nor scheduled"
                );
            }
        }

        fn tick(&mut self, ms: Millis) {
            let until = self.now + ms;
            self.flushes.sort_by_key(|(at, _)| *at);
            while self.flushes.first().is_some_and(|(at, _)| *at <= until) {
                let (at, id) = self.flushes.remove(0);
                self.now = at;
                let flushed = self.roster.flush_counts(id, at);
                let live = self.live(id).is_some();
                let counts = self.counts.entry(id).or_default();
                let expected = live && counts.pending.is_some();
                assert_eq!(flushed, expected, "flush of {id} at {at} (live {live})");
                if flushed {
                    assert_eq!(counts.pending, Some(at), "flushed when scheduled");
                    counts.pending = None;
                    counts.send(at);
                }
            }
            self.now = until;
        }

        /// Everything the roster shows equals the model.
        fn check(&self) {
            let roster = &self.roster;
            assert_eq!(roster.channel_count(), self.channels.len(), "channel count");
            let online: HashSet<usize> = self.conns.iter().flatten().map(|c| c.user).collect();
            assert_eq!(roster.users_online(), online.len(), "users online");
            for (&channel, model) in &self.channels {
                let name = CHANNELS[channel];
                assert_eq!(roster.find(name), Some(model.id), "find {name}");
                assert_eq!(roster.name(model.id), Some(name));
                let mut members: Vec<(String, u32, String)> = roster
                    .members(model.id)
                    .map(|m| (m.user.to_owned(), m.conns, m.meta.as_str().to_owned()))
                    .collect();
                members.sort();
                let expected: Vec<(String, u32, String)> = model
                    .members
                    .iter()
                    .map(|(user, m)| {
                        let conns = m.conns.len() as u32;
                        assert_eq!(conns == 0, m.grace.is_some(), "model: grace iff no conns");
                        (
                            USERS[*user].to_owned(),
                            conns,
                            meta(m.meta).as_str().to_owned(),
                        )
                    })
                    .collect();
                assert_eq!(members, expected, "members of {name}");
                assert_eq!(
                    roster.counts(model.id),
                    Some(Counts {
                        users: model.members.len(),
                        connections: model.subscribers.len(),
                        seq: model.seq,
                    }),
                    "counts of {name}"
                );
                assert_eq!(roster.seq(model.id), model.seq, "seq of {name}");
                assert_eq!(roster.has_members(model.id), !model.members.is_empty());
                let mut subscribers: Vec<_> = roster.subscribers(model.id).collect();
                subscribers.sort_by_key(|(conn, _)| *conn);
                let expected: Vec<_> = model.subscribers.iter().map(|(c, m)| (*c, *m)).collect();
                assert_eq!(subscribers, expected, "subscribers of {name}");
            }
            for (channel, name) in CHANNELS.iter().enumerate() {
                if !self.channels.contains_key(&channel) {
                    assert_eq!(roster.find(name), None, "{name} is empty: removed");
                }
            }
            for (_, id) in &self.stale {
                assert_eq!(roster.name(*id), None, "stale id {id} finds nothing");
                assert_eq!(roster.counts(*id), None);
                assert_eq!(roster.seq(*id), 0);
            }
            let mut with_members: Vec<_> = roster.channels_with_members().collect();
            with_members.sort();
            let mut expected: Vec<_> = self
                .channels
                .values()
                .filter(|m| !m.members.is_empty())
                .map(|m| m.id)
                .collect();
            expected.sort();
            assert_eq!(with_members, expected, "channels with members");
            for conn in self.conns.iter().flatten() {
                for (channel, name) in CHANNELS.iter().enumerate() {
                    let joined = roster.joined(name, conn.key);
                    if conn.channels.contains(&channel) {
                        let model = &self.channels[&channel];
                        assert_eq!(joined, Ok(model.id));
                        assert_eq!(
                            roster.mode(model.id, conn.key),
                            model.subscribers.get(&conn.key).copied()
                        );
                    } else {
                        assert_eq!(joined, Err(NotJoined), "{} not in {name}", conn.key);
                    }
                }
            }
        }
    }

    proptest! {
        #![proptest_config(config(256))]

        #[test]
        fn registry_matches_the_model(ops in proptest::collection::vec(op(), 1..80)) {
            let mut harness = Harness::new();
            for op in &ops {
                harness.apply(op);
                harness.check();
            }
            // Every connection ends and every grace fires: nothing is left behind.
            for slot in 0..SLOTS {
                harness.close(slot, LeaveReason::Closed, true);
                harness.check();
            }
            while !harness.graces.is_empty() {
                harness.end_grace(0);
                harness.check();
            }
            prop_assert_eq!(harness.roster.channel_count(), 0);
            prop_assert_eq!(harness.roster.users_online(), 0);
        }
    }
}

mod wheel {
    use super::*;
    use std::collections::HashSet;

    use rollcall::wheel::{Millis, Wheel};

    #[derive(Debug, Clone)]
    enum Op {
        /// Insert the next key at `now + offset` (a negative offset is in the past).
        Insert { offset: i64 },
        /// Advance the clock and expire.
        Expire { advance: Millis },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (-2_000i64..20_000).prop_map(|offset| Op::Insert { offset }),
            1 => (0i64..700_000).prop_map(|offset| Op::Insert { offset }),
            4 => (0u64..3_000).prop_map(|advance| Op::Expire { advance }),
            1 => (0u64..500_000).prop_map(|advance| Op::Expire { advance }),
        ]
    }

    fn tick() -> impl Strategy<Value = u64> {
        prop_oneof![Just(1u64), Just(10), Just(100), 0u64..250]
    }

    struct Pending {
        key: u32,
        deadline: Millis,
        /// The first tick at which the wheel may fire it: the deadline rounded up, and never
        /// a tick an `expire` already passed.
        due_tick: u64,
    }

    proptest! {
        #![proptest_config(config(256))]

        #[test]
        fn every_key_fires_once_on_time_in_order(
            tick_ms in tick(),
            start in 0u64..10_000,
            ops in proptest::collection::vec(op(), 1..120),
        ) {
            let mut wheel = Wheel::new(tick_ms, start);
            let tick_ms = tick_ms.max(1);
            prop_assert_eq!(wheel.tick_ms(), tick_ms);
            let mut now = start;
            let mut passed_tick = start / tick_ms; // every tick up to this one is expired
            let mut pending: Vec<Pending> = Vec::new(); // in insertion order
            let mut fired_ever = HashSet::new();
            let mut next_key = 0u32;
            let mut ops = ops;
            // Finish with an expiry past every deadline.
            ops.push(Op::Expire { advance: 2_000_000 });
            for op in ops {
                match op {
                    Op::Insert { offset } => {
                        let deadline = now.saturating_add_signed(offset);
                        wheel.insert(next_key, deadline);
                        pending.push(Pending {
                            key: next_key,
                            deadline,
                            due_tick: deadline.div_ceil(tick_ms).max(passed_tick + 1),
                        });
                        next_key += 1;
                    }
                    Op::Expire { advance } => {
                        now += advance;
                        let mut fired = Vec::new();
                        wheel.expire(now, &mut fired);
                        let now_tick = now / tick_ms;
                        let mut due: Vec<(u64, usize, u32)> = pending
                            .iter()
                            .enumerate()
                            .filter(|(_, p)| p.due_tick <= now_tick)
                            .map(|(order, p)| (p.due_tick, order, p.key))
                            .collect();
                        due.sort();
                        let expected: Vec<u32> = due.iter().map(|(_, _, key)| *key).collect();
                        prop_assert_eq!(&fired, &expected, "expire({}) with tick {}", now, tick_ms);
                        for key in &fired {
                            prop_assert!(fired_ever.insert(*key), "key {} fired twice", key);
                            let p = pending.iter().find(|p| p.key == *key).expect("pending");
                            prop_assert!(now >= p.deadline, "key {} fired early at {}", key, now);
                        }
                        pending.retain(|p| p.due_tick > now_tick);
                        passed_tick = passed_tick.max(now_tick);
                    }
                }
                prop_assert_eq!(wheel.len(), pending.len());
                prop_assert_eq!(wheel.is_empty(), pending.is_empty());
                let earliest = pending.iter().map(|p| p.due_tick * tick_ms).min();
                match (wheel.next_deadline(), earliest) {
                    (None, None) => {}
                    (Some(next), Some(earliest)) => {
                        prop_assert!(next <= earliest, "next_deadline {} after {}", next, earliest);
                        prop_assert!(next > now, "next_deadline {} not after now {}", next, now);
                    }
                    (next, earliest) => {
                        prop_assert!(false, "next_deadline {:?}, earliest {:?}", next, earliest)
                    }
                }
            }
            prop_assert!(pending.is_empty());
            prop_assert_eq!(fired_ever.len(), next_key as usize, "every key fired");
        }
    }
}

mod liveness {
    use super::*;

    use rollcall::heartbeat::{Heartbeat, Liveness, Verdict};
    use rollcall::wheel::{Millis, Wheel};

    fn heartbeat() -> impl Strategy<Value = Heartbeat> {
        (1u64..5_000, 1u64..10_000).prop_map(|(interval, extra)| Heartbeat {
            interval,
            timeout: interval + extra,
        })
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// A frame arrives this long after the previous step.
        Heard(Millis),
        /// A wheel deadline (or an early wake-up) this long after the previous step.
        Deadline(Millis),
        /// A deadline check right at an edge: `last_seen + interval` (or `timeout`, when
        /// `timeout` is set) plus `delta`, unless that is in the past.
        Edge { timeout: bool, delta: i64 },
    }

    proptest! {
        #![proptest_config(config(512))]

        /// Any order of frames and deadline checks: expired exactly when silent for the
        /// timeout, one Ping per silence once silent for the interval, and every next check
        /// in the future and no later than the timeout.
        #[test]
        fn verdicts_follow_the_silence(
            heartbeat in heartbeat(),
            start in 0u64..100_000,
            steps in proptest::collection::vec(
                prop_oneof![
                    (0u64..3_000).prop_map(Op::Heard),
                    (0u64..6_000).prop_map(Op::Deadline),
                    (any::<bool>(), -1i64..=1).prop_map(|(timeout, delta)| Op::Edge { timeout, delta }),
                ],
                1..60,
            ),
        ) {
            let mut liveness = Liveness::new(start);
            prop_assert_eq!(liveness.first_deadline(heartbeat), start + heartbeat.interval);
            let (mut now, mut last_seen, mut pinged) = (start, start, false);
            for step in steps {
                match step {
                    Op::Heard(after) => {
                        now += after;
                        liveness.heard(now);
                        last_seen = now;
                        pinged = false;
                    }
                    Op::Deadline(_) | Op::Edge { .. } => {
                        now = match step {
                            Op::Edge { timeout, delta } => {
                                let edge = if timeout { heartbeat.timeout } else { heartbeat.interval };
                                (last_seen + edge).saturating_add_signed(delta).max(now)
                            }
                            Op::Deadline(after) | Op::Heard(after) => now + after,
                        };
                        let silence = now - last_seen;
                        let verdict = liveness.on_deadline(now, heartbeat);
                        if silence >= heartbeat.timeout {
                            prop_assert_eq!(verdict, Verdict::Expired, "silent {}", silence);
                            continue;
                        }
                        let next = match verdict {
                            Verdict::Expired => {
                                prop_assert!(false, "expired after only {} ms", silence);
                                unreachable!()
                            }
                            Verdict::Ping(next) => {
                                prop_assert!(silence >= heartbeat.interval, "Ping after {}", silence);
                                prop_assert!(!pinged, "second Ping in one silence");
                                prop_assert!(next <= now + heartbeat.interval);
                                pinged = true;
                                next
                            }
                            Verdict::Recheck(next) => {
                                prop_assert!(
                                    pinged || silence < heartbeat.interval,
                                    "no Ping after {} ms of silence", silence
                                );
                                next
                            }
                        };
                        prop_assert!(next > now, "next check {} not after {}", next, now);
                        prop_assert!(next <= last_seen + heartbeat.timeout, "next check {} after the timeout", next);
                    }
                }
                prop_assert_eq!(liveness.last_seen(), last_seen);
            }
        }

        /// The server's use: one wheel entry, lazily re-armed, frames only touch `last_seen`,
        /// with spurious early wake-ups. Never dropped before `timeout` of silence; after the
        /// last frame, pinged once and dropped within one tick of the timeout.
        #[test]
        fn a_silent_peer_is_pinged_once_and_dropped_on_time(
            heartbeat in heartbeat(),
            tick_ms in prop_oneof![Just(100u64), 1u64..200],
            frames in proptest::collection::vec(1u64..8_000, 0..20),
            wakeups in proptest::collection::vec(1u64..3_000, 0..20),
        ) {
            let mut wheel = Wheel::new(tick_ms, 0);
            let mut liveness = Liveness::new(0);
            wheel.insert((), liveness.first_deadline(heartbeat));
            // Frame arrival times; the peer falls silent after the last.
            let mut at = 0;
            let mut frames: Vec<Millis> = frames.into_iter().map(|gap| { at += gap; at }).collect();
            frames.reverse();
            let mut at = 0;
            let mut wakeups: Vec<Millis> = wakeups.into_iter().map(|gap| { at += gap; at }).collect();
            wakeups.reverse();
            let (mut last_seen, mut pings_this_silence) = (0, 0);
            let mut now = 0;
            let dropped_at = loop {
                let next = [frames.last().copied(), wakeups.last().copied(), wheel.next_deadline()]
                    .into_iter()
                    .flatten()
                    .min()
                    .expect("the wheel always holds the entry");
                prop_assert!(next >= now);
                now = next;
                if frames.last() == Some(&now) {
                    frames.pop();
                    liveness.heard(now);
                    last_seen = now;
                    pings_this_silence = 0;
                }
                while wakeups.last().is_some_and(|w| *w <= now) {
                    wakeups.pop();
                }
                let mut fired = Vec::new();
                wheel.expire(now, &mut fired);
                if fired.is_empty() {
                    continue;
                }
                prop_assert_eq!(fired.len(), 1, "one entry per connection");
                match liveness.on_deadline(now, heartbeat) {
                    Verdict::Expired => break now,
                    Verdict::Ping(next) => {
                        pings_this_silence += 1;
                        prop_assert!(pings_this_silence <= 1, "two Pings in one silence");
                        wheel.insert((), next);
                    }
                    Verdict::Recheck(next) => wheel.insert((), next),
                }
            };
            prop_assert!(
                dropped_at >= last_seen + heartbeat.timeout,
                "dropped at {} after a frame at {} (timeout {})", dropped_at, last_seen, heartbeat.timeout
            );
            prop_assert!(
                dropped_at <= last_seen + heartbeat.timeout + tick_ms,
                "dropped at {}, more than a tick ({}) after {} + {}", dropped_at, tick_ms, last_seen, heartbeat.timeout
            );
            if heartbeat.timeout >= heartbeat.interval + tick_ms {
                prop_assert_eq!(pings_this_silence, 1, "the final silence gets one Ping");
            }
        }
    }
}

/// Inputs found by the fuzz targets in `fuzz/`, replayed on every `cargo test`.
mod frames {
    use super::*;

    use rollcall::frame_boundary::replay;

    /// One frame as a client sends it: FIN, opcode, masked (or not), a payload of ASCII (so
    /// text stays UTF-8) whose length exercises the 7-bit, 16-bit and 64-bit encodings.
    fn frame() -> impl Strategy<Value = Vec<u8>> {
        let opcode = prop_oneof![
            4 => Just(0x1u8),
            2 => Just(0x2),
            3 => Just(0x0),
            2 => Just(0x9),
            1 => Just(0xa),
            1 => Just(0x8),
            1 => 0u8..16,
        ];
        let len = prop_oneof![
            6 => 0usize..130,
            2 => 126usize..300,
            1 => 65_530usize..65_540,
        ];
        (any::<bool>(), opcode, prop::bool::weighted(0.95), len).prop_map(
            |(fin, opcode, masked, len)| {
                let mut bytes = vec![u8::from(fin) << 7 | opcode];
                let mask_bit = u8::from(masked) << 7;
                match len {
                    n if n < 126 => bytes.push(mask_bit | n as u8),
                    n if n <= 0xffff => {
                        bytes.push(mask_bit | 126);
                        bytes.extend_from_slice(&(n as u16).to_be_bytes());
                    }
                    n => {
                        bytes.push(mask_bit | 127);
                        bytes.extend_from_slice(&(n as u64).to_be_bytes());
                    }
                }
                if masked {
                    bytes.extend_from_slice(&[0, 0, 0, 0]);
                }
                bytes.extend(std::iter::repeat_n(b'x', len));
                bytes
            },
        )
    }

    /// Where reads end: anywhere, or (more often, since that is where a wrong boundary
    /// matters) at the end of a frame.
    fn cut() -> impl Strategy<Value = Cut> {
        prop_oneof![
            1 => any::<usize>().prop_map(Cut::Anywhere),
            2 => any::<usize>().prop_map(Cut::FrameEnd),
        ]
    }

    #[derive(Debug, Clone)]
    enum Cut {
        Anywhere(usize),
        FrameEnd(usize),
    }

    /// `frames` concatenated and cut into reads at `cuts`.
    fn reads(frames: &[Vec<u8>], cuts: &[Cut]) -> (Vec<u8>, Vec<usize>) {
        let ends: Vec<usize> = frames
            .iter()
            .scan(0, |end, frame| {
                *end += frame.len();
                Some(*end)
            })
            .collect();
        let stream = frames.concat();
        let offsets = cuts
            .iter()
            .map(|cut| match cut {
                Cut::Anywhere(at) => at % (stream.len() + 1),
                Cut::FrameEnd(nth) => ends[nth % ends.len()],
            })
            .collect();
        (stream, offsets)
    }

    /// `stream` cut at `offsets` (any order; duplicates make empty reads).
    fn split<'a>(stream: &'a [u8], offsets: &[usize]) -> Vec<&'a [u8]> {
        let mut offsets: Vec<usize> = offsets.iter().map(|c| c % (stream.len() + 1)).collect();
        offsets.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for offset in offsets.into_iter().chain([stream.len()]) {
            chunks.push(&stream[start..offset]);
            start = offset;
        }
        chunks
    }

    proptest! {
        #![proptest_config(config(512))]

        #[test]
        fn a_dropped_context_changes_nothing_for_frames(
            frames in proptest::collection::vec(frame(), 1..12),
            cuts in proptest::collection::vec(cut(), 0..16),
        ) {
            let (stream, offsets) = reads(&frames, &cuts);
            let chunks = split(&stream, &offsets);
            if let Err(difference) = replay(&chunks) {
                return Err(TestCaseError::fail(difference));
            }
        }

        #[test]
        fn a_dropped_context_changes_nothing_for_garbage(
            stream in proptest::collection::vec(any::<u8>(), 0..200),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let chunks = split(&stream, &cuts);
            if let Err(difference) = replay(&chunks) {
                return Err(TestCaseError::fail(difference));
            }
        }
    }
}

mod regressions {
    use rollcall::http::{examine, Examined};

    /// `fuzz/fuzz_targets/http.rs`, selector byte 3 (a body cap of `usize::MAX`, which
    /// `--max-body-size 18446744073709551615` configures): `examine` added the head length
    /// to a `Content-Length` just under the cap and overflowed: a panic in the server loop
    /// with overflow checks (debug builds), and in release a request waiting for a body that
    /// could never arrive. Fixed in 8d67432: such a length is over any limit, 413.
    #[test]
    fn content_length_near_usize_max_under_an_unbounded_cap() {
        for length in [usize::MAX, usize::MAX - 1, usize::MAX - 40] {
            let request = format!("POST /publish HTTP/1.1\r\nContent-Length: {length}\r\n\r\n");
            match examine(request.as_bytes(), usize::MAX) {
                Examined::Refuse(response) => assert_eq!(response.status, 413, "{length}"),
                other => panic!("Content-Length {length}: {other:?}"),
            }
        }
    }
}
