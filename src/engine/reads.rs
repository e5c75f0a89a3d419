//! Presence reads — `state`, counts, members, the channel list — from wherever they are
//! true: the cluster's view in a live cluster (every node's members), else this node's
//! roster. Every reply and endpoint that shows presence reads through here, so a client
//! never gets one source's `state` and the other's counts.

use std::collections::BTreeMap;

use super::Engine;
use crate::cluster::view::View;
use crate::model::event::Members;
use crate::model::{ChannelSnapshot, Counts, Json, Member, PresenceSnapshot, UserStatus};
use crate::pusher;
use crate::roster::ChannelId;

impl Engine {
    /// The cluster's view, when presence reads and events come from it (a live cluster).
    pub fn cluster_view(&self) -> Option<&View> {
        self.cluster
            .as_ref()
            .filter(|cluster| cluster.is_live())
            .map(|cluster| cluster.view())
    }

    /// The seq of the channel `name` (0 when it has no members).
    pub fn seq_named(&self, name: &str) -> u64 {
        match self.cluster_view() {
            Some(view) => view.seq(name),
            None => self
                .roster
                .find(name)
                .map_or(0, |channel| self.roster.seq(channel)),
        }
    }

    /// The members of the channel `name`.
    pub fn members_named<'a>(&'a self, name: &str) -> Members<'a> {
        match self.cluster_view() {
            Some(view) => Box::new(view.members(name)),
            None => Box::new(
                self.roster
                    .find(name)
                    .into_iter()
                    .flat_map(|channel| self.roster.members(channel)),
            ),
        }
    }

    /// The counts of a channel of this node, unless `channel` is stale.
    pub fn channel_counts(&self, channel: ChannelId) -> Option<Counts> {
        let name = self.roster.name(channel)?;
        Some(self.channel_counts_named(name))
    }

    /// The counts of the channel `name` (all zero when it has no members).
    pub fn channel_counts_named(&self, name: &str) -> Counts {
        match self.cluster_view() {
            Some(view) => view.counts(name),
            None => self
                .roster
                .find(name)
                .and_then(|channel| self.roster.counts(channel))
                .unwrap_or_default(),
        }
    }

    /// True when `user` is a member of a channel of this node (on any node, in a cluster).
    pub(super) fn is_member(&self, channel: ChannelId, user: &str) -> bool {
        match self.cluster_view() {
            Some(view) => self
                .roster
                .name(channel)
                .is_some_and(|name| view.is_member(name, user)),
            None => self.roster.is_member(channel, user),
        }
    }

    /// The native channels with members (a Pusher app's are its own: see its REST API).
    pub fn channels_with_members(&self) -> Vec<String> {
        let names: Vec<String> = match self.cluster_view() {
            Some(view) => view.channels().map(str::to_owned).collect(),
            None => self
                .roster
                .channels_with_members()
                .filter_map(|channel| self.roster.name(channel).map(str::to_owned))
                .collect(),
        };
        names
            .into_iter()
            .filter(|name| !pusher::is_internal(name))
            .collect()
    }

    /// The members of the channel `name`, by user id.
    pub fn members(&self, name: &str) -> Vec<Member> {
        let mut members: Vec<Member> = self
            .members_named(name)
            .map(|member| Member {
                user: member.user.to_owned(),
                conns: member.conns,
                meta: Json::parse(member.meta.as_str()).unwrap_or_else(Json::null),
            })
            .collect();
        // The roster yields its members by user id (a `BTreeMap` by user); the cluster view
        // (a `HashMap`) does not. Sorting only those spares a host without `cluster` the code.
        if self.cluster_view().is_some() {
            members.sort_unstable_by(|a, b| a.user.cmp(&b.user));
        }
        debug_assert!(members.is_sorted_by(|a, b| a.user < b.user));
        members
    }

    /// Every channel with members, with this node's connection figures.
    pub fn snapshot(&self) -> PresenceSnapshot {
        // Inserted one by one: `collect` would sort the pairs first, one more sort's code
        // in every host for names that are unique anyway.
        let mut channels = BTreeMap::new();
        for name in self.channels_with_members() {
            let channel = ChannelSnapshot {
                seq: self.seq_named(&name),
                members: self.members(&name),
            };
            channels.insert(name, channel);
        }
        PresenceSnapshot {
            connections: self.open_connections(),
            users: self.roster.users_online(),
            watchers: self.watchers(),
            channels,
        }
    }

    /// `user`'s status for `GET /users/{id}`: online with its connections here and its
    /// channels (cluster-wide in a live cluster), or offline with when it was last seen here.
    pub fn user_presence(&self, user: &str) -> UserPresence {
        let connections = self.roster.user_connections(user);
        let mut channels: Vec<String> = self
            .channels_with_members()
            .into_iter()
            .filter(|name| match self.cluster_view() {
                Some(view) => view.is_member(name, user),
                None => self
                    .roster
                    .find(name)
                    .is_some_and(|channel| self.roster.is_member(channel, user)),
            })
            .collect();
        channels.sort_unstable();
        if connections == 0 && channels.is_empty() {
            return UserPresence::Offline {
                last_seen: self.last_seen.get(user),
            };
        }
        UserPresence::Online {
            connections,
            channels,
        }
    }

    /// Users whose last-seen time is remembered.
    pub fn last_seen_len(&self) -> usize {
        self.last_seen.len()
    }

    /// Where `user` is: its connections here and the channels it is a member of.
    pub fn user_status(&self, user: &str) -> UserStatus {
        let mut channels: Vec<String> = self
            .channels_with_members()
            .into_iter()
            .filter(|name| self.members_named(name).any(|member| member.user == user))
            .collect();
        channels.sort_unstable();
        UserStatus {
            connections: self.connections_of(user).len(),
            channels,
        }
    }
}

/// A user's status ([`Engine::user_presence`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserPresence {
    /// Connected here, or a member of a channel on some node.
    Online {
        /// Its connections on this node.
        connections: usize,
        /// The channels it is a member of, sorted.
        channels: Vec<String>,
    },
    /// Nowhere.
    Offline {
        /// Unix milliseconds its last connection here ended, unless never or forgotten.
        last_seen: Option<u64>,
    },
}
