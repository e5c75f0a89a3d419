//! Cluster mode in the engine: driving the node's Redis session (`cluster::session`, the
//! pure state machine that decides everything about Redis) and telling local clients what
//! the cluster's notes change.
//!
//! While live, presence reads (`state`, `who`, counts, `GET /presence`) come from the
//! cluster view and presence events reach local clients only from the notes, so every node
//! tells the same events with the same seq. While not live (Redis unreachable: *degraded*),
//! the node serves its local presence as a single server would; on each switch its `all`
//! subscribers get a fresh `state` (and `count` subscribers a `count`), so no client keeps a
//! view of the other mode.
//!
//! The socket layer owns the two connections: it asks for them on [`Effect::ClusterConnect`],
//! feeds what arrives to [`Engine::cluster_reply`] and [`Engine::cluster_push`], writes what
//! [`Engine::cluster_commands`] hands it, and reports a broken connection with
//! [`Engine::cluster_fell`].

use log::{debug, info, warn};

use super::delivery::{change_event, starts_channel, watchers_of_everything};
use super::{Effect, Engine, Timer};
use crate::cluster::note::Note;
use crate::cluster::resp::Reply;
use crate::cluster::session::Step;
use crate::cluster::view::Effect as ViewEffect;
use crate::cluster::Command;
use crate::model::{Event, EventsMode, LeaveReason};
use crate::pusher;
use crate::roster::{Announcement, Change, ChannelId, MemberChange};
use crate::wheel::Millis;

/// The cluster's figures for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterStatus {
    /// True while the cluster view is in force.
    pub live: bool,
    /// Live nodes as of the last refresh (0 while degraded).
    pub nodes: u64,
    /// Commands sent to Redis so far.
    pub commands_sent: u64,
}

impl Engine {
    /// The cluster's figures, in a cluster.
    pub fn cluster_status(&self) -> Option<ClusterStatus> {
        self.cluster.as_ref().map(|cluster| ClusterStatus {
            live: cluster.is_live(),
            nodes: cluster.nodes(),
            commands_sent: cluster.commands_sent(),
        })
    }

    /// True while a goodbye to the cluster waits for its answer (a shutdown waits for it).
    pub fn saying_goodbye(&self) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|cluster| cluster.saying_goodbye())
    }

    /// The Redis address, for the socket layer to connect to and to log.
    pub fn cluster_address(&self) -> Option<&crate::cluster::RedisAddress> {
        self.cluster.as_ref().map(|cluster| cluster.address())
    }

    /// The commands to write on the command connection and on the notes connection since
    /// the last call.
    pub fn cluster_commands(&mut self) -> (Vec<Command>, Vec<Command>) {
        match self.cluster.as_mut() {
            Some(cluster) => (cluster.take_commands(), cluster.take_note_commands()),
            None => Default::default(),
        }
    }

    /// The periodic look (connect when due, refresh liveness, give up on stuck replies),
    /// then re-armed.
    pub(super) fn cluster_tick(&mut self, now: Millis) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let next = now + cluster.tick_ms();
        let step = cluster.tick(now);
        self.arm(Timer::ClusterTick, next);
        self.cluster_step(step, now);
        self.expire_lookups(now);
    }

    /// Both Redis connections are open (after [`Effect::ClusterConnect`]).
    pub fn cluster_connected(&mut self, now: Millis) {
        if let Some(cluster) = self.cluster.as_mut() {
            debug!("cluster: connecting to {}", cluster.address());
            cluster.connected(now, self.roster.holdings());
        }
    }

    /// A reply arrived on the command connection.
    pub fn cluster_reply(&mut self, reply: Reply, now: Millis) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let step = cluster.on_reply(reply, now, self.roster.holdings());
        self.cluster_step(step, now);
    }

    /// A push arrived on the notes connection.
    pub fn cluster_push(&mut self, push: Reply, now: Millis) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let step = cluster.on_push(push, now);
        self.cluster_step(step, now);
    }

    /// Gives up on the connections (the socket layer's or the session's decision): the node
    /// becomes degraded, telling local clients, and retries after a growing pause.
    pub fn cluster_fell(&mut self, now: Millis, why: &str) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        self.effects.push(Effect::ClusterDisconnect);
        let fell = cluster.fell(now);
        let address = cluster.address();
        if fell.first {
            warn!("cluster degraded: {why}; serving local presence only, retrying {address}");
        } else {
            debug!("cluster: still degraded: {why}");
        }
        self.fail_lookups();
        if fell.was_live {
            self.refresh_every_channel(now);
            self.watched_users_may_change(now);
        }
    }

    /// Carries out what the session decided.
    fn cluster_step(&mut self, step: Step, now: Millis) {
        match step {
            Step::Nothing => {}
            Step::Connect => self.effects.push(Effect::ClusterConnect),
            Step::Fall(why) => self.cluster_fell(now, &why),
            Step::Note(note, origin) => self.apply_note(note, origin, now),
            Step::LastSeen { id, values } => self.last_seen_arrived(id, values),
            Step::Loaded {
                became_live,
                changed,
                notes,
            } => {
                if became_live {
                    if let Some(cluster) = self.cluster.as_ref() {
                        info!(
                            "cluster live: node {} with {} live nodes on {}",
                            cluster.node(),
                            cluster.nodes(),
                            cluster.address()
                        );
                    }
                    self.refresh_every_channel(now);
                } else {
                    for name in changed {
                        self.refresh_channel(&name, now);
                    }
                }
                for (note, origin) in notes {
                    self.apply_note(note, origin, now);
                }
                self.watched_users_may_change(now);
            }
        }
    }

    /// Moves the view with one note and tells local clients what changed; the node named
    /// `origin` made the change, and only that node tells the webhooks.
    fn apply_note(&mut self, note: Note, origin: Option<String>, now: Millis) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        if let Note::Publication {
            origin,
            channel,
            from,
            data,
        } = note
        {
            // The origin delivered to its own clients already.
            if origin != cluster.node() {
                self.deliver_publication(&channel, from.as_deref(), &data);
            }
            return;
        }
        if matches!(note, Note::Named { .. }) {
            // A Pusher app's event; a node without the feature has no Pusher connections.
            #[cfg(feature = "pusher")]
            self.apply_named(note, now);
            return;
        }
        if let Note::Leave {
            user, last_seen, ..
        } = &note
        {
            // Before the watchers hear of it: their `offline` carries this time.
            self.heard_last_seen(user, *last_seen);
        }
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let effect = cluster.view_mut().apply(&note);
        let channel = note.channel();
        match effect {
            ViewEffect::Nothing => {}
            ViewEffect::Gap => {
                debug!("cluster: notes of {channel} were missed; loading a snapshot");
                cluster.resnapshot(now);
            }
            ViewEffect::Counts => self.cluster_counts_changed(channel, now),
            ViewEffect::Announce(change) => {
                let counts_changed = !matches!(change, Change::Update { .. });
                if origin.as_deref() == Some(cluster.node()) {
                    let emptied = cluster.view().counts(channel).users == 0;
                    self.hook_change(channel, &change, emptied);
                }
                self.announce_named(channel, change, now);
                if counts_changed {
                    self.cluster_counts_changed(channel, now);
                }
            }
        }
        self.note_may_change_watched(&note, now);
    }

    /// Tells local clients of a cluster-wide change in `name`: its subscribers and watchers
    /// when the channel is known here, else only the watchers of every channel.
    fn announce_named(&mut self, name: &str, change: Change, now: Millis) {
        match self.roster.find(name) {
            Some(channel) => self.announce(
                Announcement {
                    channel,
                    name: name.into(),
                    except: None,
                    change,
                },
                now,
            ),
            None => {
                if self.watch_all.is_empty() || self.shutting_down || pusher::is_internal(name) {
                    return;
                }
                let everything = self.watch_all.clone().into_iter();
                // A channel's first event reaches them as a new baseline (see `delivery`).
                if starts_channel(&change) {
                    self.deliver_state(everything, name, None);
                } else {
                    self.deliver(everything, &change_event(name, &change));
                }
            }
        }
    }

    fn cluster_counts_changed(&mut self, name: &str, now: Millis) {
        match self.roster.find(name) {
            Some(channel) => self.counts_changed(channel, None, now),
            None if !self.watch_all.is_empty()
                && !self.shutting_down
                && !pusher::is_internal(name) =>
            {
                let event = Event::Count {
                    channel: name,
                    counts: self.channel_counts_named(name),
                    reference: None,
                };
                let everything = self.watch_all.clone().into_iter();
                self.deliver(everything, &event);
            }
            None => {}
        }
    }

    /// Sends fresh `state`s and `count`s of every local channel (after a switch between the
    /// cluster's view and the local one).
    fn refresh_every_channel(&mut self, now: Millis) {
        let mut names: Vec<String> = self
            .roster
            .channels_with_members()
            .chain(self.roster.watched_channels())
            .filter_map(|channel| self.roster.name(channel).map(str::to_owned))
            .collect();
        // Watchers of every channel also hear of the channels only the view had (or now has):
        // on a switch to the local presence their fresh `state` shows them empty.
        if let Some(cluster) = self.cluster.as_ref().filter(|_| !self.watch_all.is_empty()) {
            let native = cluster
                .view()
                .channels()
                .filter(|name| !pusher::is_internal(name));
            names.extend(native.map(str::to_owned));
        }
        names.sort_unstable();
        names.dedup();
        for name in names {
            self.refresh_channel(&name, now);
        }
    }

    /// Sends the channel's `state` to its `all` and `diff` subscribers and watchers, and its counts to
    /// its `count` subscribers.
    fn refresh_channel(&mut self, name: &str, now: Millis) {
        if self.shutting_down {
            return;
        }
        match self.roster.find(name) {
            Some(channel) => {
                let recipients: Vec<_> = self
                    .roster
                    .subscribers_in(channel, EventsMode::All)
                    .chain(self.roster.subscribers_in(channel, EventsMode::Diff))
                    .chain(self.roster.watchers(channel))
                    .filter(|conn| !self.watch_all.contains(conn))
                    .chain(
                        watchers_of_everything(&self.watch_all, name)
                            .iter()
                            .copied(),
                    )
                    .collect();
                self.deliver_state(recipients.into_iter(), name, None);
                self.counts_changed(channel, None, now);
            }
            None if !pusher::is_internal(name) => {
                let everything = self.watch_all.clone().into_iter();
                self.deliver_state(everything, name, None);
            }
            None => {}
        }
    }

    /// After a local roster change: tells the cluster what this node now holds of the
    /// user in the channel.
    pub(super) fn tell_cluster(
        &mut self,
        channel: ChannelId,
        member: &MemberChange,
        leave: Option<LeaveReason>,
        now: Millis,
    ) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let conns = self.roster.holding(channel, &member.user);
        // A release's time is when the user's last connection here went (the grace came
        // after); a user still connected here is seen now.
        let unix_now = self.unix_origin_ms.saturating_add(now);
        let last_seen_ms = match self.roster.user_connections(&member.user) {
            0 => self.last_seen.get(&member.user).unwrap_or(unix_now),
            _ => unix_now,
        };
        cluster.hold(
            &member.channel,
            &member.user,
            conns,
            member.meta.as_ref(),
            leave,
            last_seen_ms,
            now,
        );
    }
}
