//! A node's copy of the cluster-wide presence: every channel's members over every node, with
//! their meta, their connections summed over nodes, and the channel's seq. Pure: it is loaded
//! from a snapshot and moved by notes, in the order Redis published them.
//!
//! Invariants:
//! - A channel is in the view while it has a member; its seq is the seq of the last note
//!   applied (or of the snapshot).
//! - A presence note applies only when its seq is the next one; an older one is a duplicate
//!   (already in a snapshot) and is ignored; a newer one means notes were missed, and the
//!   caller must load a new snapshot ([`Effect::Gap`]). A `C` note carries the current seq.

use std::collections::HashMap;
use std::rc::Rc;

use super::note::Note;
use crate::model::Meta;
use crate::model::{Counts, MemberView};
use crate::roster::Change;
use crate::user_id::UserId;

/// What applying a note changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// A join, leave or update to announce in the channel (its counts changed too, except
    /// for an update).
    Announce(Change),
    /// Only the channel's connection count changed.
    Counts,
    /// Nothing: a duplicate, or not a presence note.
    Nothing,
    /// Notes were missed: load a snapshot.
    Gap,
}

/// One channel of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSnapshot {
    /// The channel.
    pub name: String,
    /// Its seq.
    pub seq: u64,
    /// Its members: user, connections over every node, meta.
    pub members: Vec<(String, u32, Meta)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Member {
    conns: u32,
    meta: Meta,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Channel {
    seq: u64,
    members: HashMap<UserId, Member>,
}

/// The cluster-wide presence, as this node knows it.
#[derive(Debug, Default)]
pub struct View {
    channels: HashMap<Rc<str>, Channel>,
}

impl View {
    /// Replaces the view with a snapshot. Returns the channels whose presence differs from
    /// before (appeared, vanished, or changed seq or members).
    pub fn load(&mut self, snapshot: Vec<ChannelSnapshot>) -> Vec<String> {
        let mut fresh: HashMap<Rc<str>, Channel> = HashMap::with_capacity(snapshot.len());
        for channel in snapshot {
            let members = channel
                .members
                .into_iter()
                .map(|(user, conns, meta)| (UserId::from(user), Member { conns, meta }))
                .collect();
            fresh.insert(
                Rc::from(channel.name),
                Channel {
                    seq: channel.seq,
                    members,
                },
            );
        }
        let mut changed: Vec<String> = fresh
            .iter()
            .filter(|(name, channel)| self.channels.get(*name) != Some(*channel))
            .map(|(name, _)| name.to_string())
            .collect();
        changed.extend(
            self.channels
                .keys()
                .filter(|name| !fresh.contains_key(*name))
                .map(|name| name.to_string()),
        );
        self.channels = fresh;
        changed
    }

    /// Applies one note (see the module's invariants).
    pub fn apply(&mut self, note: &Note) -> Effect {
        let known = self.seq(note.channel());
        match note {
            Note::Publication { .. } | Note::Named { .. } => Effect::Nothing,
            Note::Conns {
                channel,
                user,
                seq,
                conns,
            } => {
                if *seq < known {
                    return Effect::Nothing;
                }
                let member = self
                    .channels
                    .get_mut(channel.as_str())
                    .and_then(|channel| channel.members.get_mut(user.as_str()));
                match member {
                    Some(member) if *seq == known => {
                        member.conns = *conns;
                        Effect::Counts
                    }
                    _ => Effect::Gap,
                }
            }
            Note::Join { seq, .. } | Note::Update { seq, .. } | Note::Leave { seq, .. }
                if *seq <= known =>
            {
                Effect::Nothing
            }
            Note::Join { seq, .. } | Note::Update { seq, .. } | Note::Leave { seq, .. }
                if *seq > known + 1 =>
            {
                Effect::Gap
            }
            Note::Join {
                channel,
                user,
                seq,
                conns,
                meta,
            } => {
                let entry = self.channels.entry(Rc::from(channel.as_str())).or_default();
                let user = UserId::from(user.as_str());
                entry.seq = *seq;
                entry.members.insert(
                    user.clone(),
                    Member {
                        conns: *conns,
                        meta: meta.clone(),
                    },
                );
                Effect::Announce(Change::Join {
                    user,
                    meta: meta.clone(),
                    seq: *seq,
                })
            }
            Note::Update {
                channel,
                user,
                seq,
                meta,
            } => {
                let Some(entry) = self.channels.get_mut(channel.as_str()) else {
                    return Effect::Gap;
                };
                let Some((user, member)) = entry.members.get_key_value(user.as_str()) else {
                    return Effect::Gap;
                };
                let (user, conns) = (user.clone(), member.conns);
                entry.seq = *seq;
                entry.members.insert(
                    user.clone(),
                    Member {
                        conns,
                        meta: meta.clone(),
                    },
                );
                Effect::Announce(Change::Update {
                    user,
                    meta: meta.clone(),
                    seq: *seq,
                })
            }
            Note::Leave {
                channel,
                user,
                seq,
                reason,
                ..
            } => {
                let Some(entry) = self.channels.get_mut(channel.as_str()) else {
                    return Effect::Gap;
                };
                let Some((user, _)) = entry.members.remove_entry(user.as_str()) else {
                    return Effect::Gap;
                };
                entry.seq = *seq;
                if entry.members.is_empty() {
                    self.channels.remove(channel.as_str());
                }
                Effect::Announce(Change::Leave {
                    user,
                    reason: *reason,
                    seq: *seq,
                })
            }
        }
    }

    /// The channel's seq (0 for a channel without members).
    pub fn seq(&self, channel: &str) -> u64 {
        self.channels.get(channel).map_or(0, |channel| channel.seq)
    }

    /// The channel's members.
    pub fn members(&self, channel: &str) -> impl Iterator<Item = MemberView<'_>> {
        self.channels.get(channel).into_iter().flat_map(|channel| {
            channel.members.iter().map(|(user, member)| MemberView {
                user,
                conns: member.conns,
                meta: &member.meta,
            })
        })
    }

    /// The channel's counts (all zero, seq included, for a channel without members).
    pub fn counts(&self, channel: &str) -> Counts {
        self.channels
            .get(channel)
            .map_or_else(Counts::default, |channel| Counts {
                users: channel.members.len(),
                connections: channel
                    .members
                    .values()
                    .map(|member| member.conns as usize)
                    .sum(),
                seq: channel.seq,
            })
    }

    /// True when `user` is a member of the channel on some node.
    pub fn is_member(&self, channel: &str, user: &str) -> bool {
        self.channels
            .get(channel)
            .is_some_and(|channel| channel.members.contains_key(user))
    }

    /// The channels with members, in no particular order.
    pub fn channels(&self) -> impl Iterator<Item = &str> {
        self.channels.keys().map(|name| &**name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LeaveReason;

    fn join(channel: &str, user: &str, seq: u64, conns: u32) -> Note {
        Note::Join {
            channel: channel.into(),
            user: user.into(),
            seq,
            conns,
            meta: Meta::empty(),
        }
    }

    fn leave(channel: &str, user: &str, seq: u64) -> Note {
        Note::Leave {
            channel: channel.into(),
            user: user.into(),
            seq,
            reason: LeaveReason::NodeDown,
            last_seen: 1,
        }
    }

    fn users(view: &View, channel: &str) -> Vec<(String, u32)> {
        let mut users: Vec<_> = view
            .members(channel)
            .map(|member| (member.user.to_owned(), member.conns))
            .collect();
        users.sort();
        users
    }

    #[test]
    fn notes_in_order_build_the_channel_and_its_last_leave_removes_it() {
        let mut view = View::default();
        assert!(matches!(
            view.apply(&join("lobby", "alice", 1, 1)),
            Effect::Announce(Change::Join { seq: 1, .. })
        ));
        assert!(matches!(
            view.apply(&join("lobby", "bob", 2, 2)),
            Effect::Announce(_)
        ));
        let conns = Note::Conns {
            channel: "lobby".into(),
            user: "bob".into(),
            seq: 2,
            conns: 3,
        };
        assert_eq!(view.apply(&conns), Effect::Counts);
        assert_eq!(
            users(&view, "lobby"),
            [("alice".into(), 1), ("bob".into(), 3)]
        );
        assert_eq!(
            view.counts("lobby"),
            Counts {
                users: 2,
                connections: 4,
                seq: 2
            }
        );
        view.apply(&leave("lobby", "alice", 3));
        assert!(matches!(
            view.apply(&leave("lobby", "bob", 4)),
            Effect::Announce(Change::Leave {
                reason: LeaveReason::NodeDown,
                seq: 4,
                ..
            })
        ));
        assert_eq!(view.channels().count(), 0);
        assert_eq!(view.seq("lobby"), 0);
        // A new life of the channel starts again at 1.
        assert!(matches!(
            view.apply(&join("lobby", "carol", 1, 1)),
            Effect::Announce(_)
        ));
    }

    #[test]
    fn duplicates_are_ignored_and_gaps_reported() {
        let mut view = View::default();
        view.apply(&join("lobby", "alice", 1, 1));
        assert_eq!(view.apply(&join("lobby", "alice", 1, 1)), Effect::Nothing);
        assert_eq!(view.apply(&join("lobby", "bob", 3, 1)), Effect::Gap);
        assert_eq!(view.apply(&join("news", "bob", 2, 1)), Effect::Gap);
        assert_eq!(view.apply(&leave("lobby", "nobody", 2)), Effect::Gap);
        let stale_conns = Note::Conns {
            channel: "lobby".into(),
            user: "alice".into(),
            seq: 0,
            conns: 9,
        };
        assert_eq!(view.apply(&stale_conns), Effect::Nothing);
        assert_eq!(users(&view, "lobby"), [("alice".into(), 1)]);
    }

    #[test]
    fn a_snapshot_replaces_the_view_and_names_what_changed() {
        let mut view = View::default();
        view.apply(&join("lobby", "alice", 1, 1));
        view.apply(&join("quiet", "dave", 1, 1));
        let changed = view.load(vec![
            ChannelSnapshot {
                name: "lobby".into(),
                seq: 5,
                members: vec![("bob".into(), 2, Meta::empty())],
            },
            ChannelSnapshot {
                name: "quiet".into(),
                seq: 1,
                members: vec![("dave".into(), 1, Meta::empty())],
            },
            ChannelSnapshot {
                name: "news".into(),
                seq: 1,
                members: vec![("carol".into(), 1, Meta::empty())],
            },
        ]);
        let mut changed = changed;
        changed.sort();
        assert_eq!(changed, ["lobby", "news"]);
        assert_eq!(users(&view, "lobby"), [("bob".into(), 2)]);
        assert_eq!(view.seq("lobby"), 5);
        assert!(view.is_member("news", "carol"));
        let vanished = view.load(Vec::new());
        assert_eq!(vanished.len(), 3);
    }
}
