//! Cluster mode in the loop: the node's two Redis connections and turning what its
//! [`Session`] decides into socket work and deliveries.
//!
//! The session (`cluster::session`, pure) decides everything about Redis: when to connect,
//! what to send, what a reply means, when the node is *live* (both connections up, holdings
//! synced, view loaded from a snapshot taken after the subscription started). This file
//! owns the sockets and tells local clients: while live, presence reads (`state`, `who`,
//! counts, `GET /presence`) come from the cluster view and presence events reach local
//! clients only from the notes, so every node tells the same events with the same seq. While
//! not live (Redis unreachable: *degraded*), the node serves its local presence as a single
//! server would; on each switch its `all` subscribers get a fresh `state` (and `count`
//! subscribers a `count`), so no client keeps a view of the other mode.
//!
//! Invariants: the loop never waits for Redis: commands are pipelined and written at the end
//! of the turn; a failure of either connection drops both (the session re-syncs everything
//! this node holds on the next attempt); no command is sent per idle connection.

use std::net::{SocketAddr, ToSocketAddrs};

use log::{debug, info, warn};

use super::redis_link::{Link, LinkError};
use super::{Server, Timer};
use crate::cluster::note::Note;
use crate::cluster::resp::Reply;
use crate::cluster::session::{Session, Step};
use crate::cluster::view::{Effect, View};
use crate::cluster::{Commands, RedisAddress};
use crate::protocol::{event, EventsMode, Json, LeaveReason};
use crate::roster::{Announcement, Change, ChannelId, MemberChange};
use crate::wheel::Millis;

/// Something that arrived from Redis.
enum Incoming {
    /// A reply on the command connection.
    Reply(Reply),
    /// A push on the notes connection.
    Push(Reply),
}

/// This node's membership of the cluster: its session and the sockets it runs on.
pub(super) struct ClusterNode {
    session: Session,
    target: SocketAddr,
    command_link: Option<Link>,
    note_link: Option<Link>,
}

/// Why a cluster could not be set up at bind time.
#[derive(Debug)]
pub(super) struct Unresolvable(pub String);

impl ClusterNode {
    /// A node of the cluster at `address`, resolving its host name once, now.
    pub fn new(
        address: RedisAddress,
        node: &str,
        ttl_ms: Millis,
    ) -> Result<ClusterNode, Unresolvable> {
        let target = (address.host.as_str(), address.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut addresses| addresses.next())
            .ok_or_else(|| Unresolvable(format!("cannot resolve the host of {address}")))?;
        let commands = Commands::new(node, address.db);
        Ok(ClusterNode {
            session: Session::new(address, commands, ttl_ms),
            target,
            command_link: None,
            note_link: None,
        })
    }

    /// True when the cluster view is in force (see the module's doc).
    pub fn is_live(&self) -> bool {
        self.session.is_live()
    }

    /// The cluster-wide presence (meaningful while live).
    pub fn view(&self) -> &View {
        self.session.view()
    }

    /// Live nodes as of the last refresh (0 while degraded).
    pub fn nodes(&self) -> u64 {
        self.session.nodes()
    }

    /// Commands sent to Redis so far.
    pub fn commands_sent(&self) -> u64 {
        self.session.commands_sent()
    }

    /// True while a goodbye waits for its answer (a shutdown waits for it).
    pub fn saying_goodbye(&self) -> bool {
        self.session.saying_goodbye()
    }

    /// Hands what the session queued to the connections (written at the end of the turn).
    fn hand_over(&mut self) {
        let commands = self.session.take_commands();
        if let Some(link) = self.command_link.as_mut() {
            for command in &commands {
                link.send(command);
            }
        }
        let notes = self.session.take_note_commands();
        if let Some(link) = self.note_link.as_mut() {
            for command in &notes {
                link.send(command);
            }
        }
    }
}

impl Server {
    /// The cluster's periodic look (connect when due, refresh liveness, give up on stuck
    /// replies), then re-armed.
    pub(super) fn cluster_tick(&mut self, now: Millis) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        self.wheel
            .insert(Timer::ClusterTick, now + cluster.session.tick_ms());
        let step = cluster.session.tick(now);
        self.cluster_step(step, now);
        self.cluster_pump(now);
    }

    /// Carries out what the session decided.
    fn cluster_step(&mut self, step: Step, now: Millis) {
        match step {
            Step::Nothing => {}
            Step::Connect => self.cluster_connect(now),
            Step::Fall(why) => self.cluster_fall(now, &why),
            Step::Note(note) => self.apply_note(note, now),
            Step::Loaded {
                became_live,
                changed,
                notes,
            } => {
                if became_live {
                    if let Some(cluster) = self.cluster.as_ref() {
                        info!(
                            "cluster live: node {} with {} live nodes on {}",
                            cluster.session.node(),
                            cluster.session.nodes(),
                            cluster.session.address()
                        );
                    }
                    self.refresh_every_channel(now);
                } else {
                    for name in changed {
                        self.refresh_channel(&name, now);
                    }
                }
                for note in notes {
                    self.apply_note(note, now);
                }
            }
        }
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.hand_over();
        }
    }

    /// Opens both connections and lets the session say what a new node says.
    fn cluster_connect(&mut self, now: Millis) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let links = Link::connect(
            cluster.target,
            &self.poll_registry,
            self.tokens.redis_commands(),
        )
        .and_then(|commands| {
            Link::connect(
                cluster.target,
                &self.poll_registry,
                self.tokens.redis_notes(),
            )
            .map(|notes| (commands, notes))
        });
        let (command_link, note_link) = match links {
            Ok(links) => links,
            Err(error) => {
                let why = format!("cannot connect to {}: {error}", cluster.session.address());
                self.cluster_fall(now, &why);
                return;
            }
        };
        debug!("cluster: connecting to {}", cluster.session.address());
        cluster.command_link = Some(command_link);
        cluster.note_link = Some(note_link);
        cluster.session.connected(now, self.roster.holdings());
        cluster.hand_over();
        self.cluster_pump(now);
    }

    /// A readiness event on one of the Redis connections.
    pub(super) fn on_redis(&mut self, now: Millis) {
        self.cluster_pump(now);
    }

    /// Moves both connections as far as they go and handles every complete reply, until
    /// a round brings none.
    fn cluster_pump(&mut self, now: Millis) {
        loop {
            let Some(cluster) = self.cluster.as_mut() else {
                return;
            };
            let (Some(commands), Some(notes)) =
                (cluster.command_link.as_mut(), cluster.note_link.as_mut())
            else {
                return;
            };
            if let Err(error) = commands.pump().and_then(|()| notes.pump()) {
                self.cluster_fall(now, &describe(&error));
                return;
            }
            let mut handled = false;
            while let Some(incoming) = self.next_cluster_reply(now) {
                handled = true;
                let Some(cluster) = self.cluster.as_mut() else {
                    return;
                };
                let step = match incoming {
                    Incoming::Reply(reply) => {
                        cluster.session.on_reply(reply, now, self.roster.holdings())
                    }
                    Incoming::Push(push) => cluster.session.on_push(push, now),
                };
                self.cluster_step(step, now);
            }
            if !handled {
                return;
            }
        }
    }

    /// The next complete reply on either connection (commands first); `None` when there is
    /// none, or a connection failed (then the node is degraded).
    fn next_cluster_reply(&mut self, now: Millis) -> Option<Incoming> {
        let cluster = self.cluster.as_mut()?;
        let next = match cluster.command_link.as_mut()?.next_reply() {
            Ok(Some(reply)) => Ok(Some(Incoming::Reply(reply))),
            Ok(None) => cluster
                .note_link
                .as_mut()?
                .next_reply()
                .map(|push| push.map(Incoming::Push)),
            Err(error) => Err(error),
        };
        next.unwrap_or_else(|error| {
            self.cluster_fall(now, &describe(&error));
            None
        })
    }

    /// Writes the commands the turn queued (at its end: one write for all of them).
    pub(super) fn cluster_flush(&mut self, now: Millis) {
        let result = self.cluster.as_mut().and_then(|cluster| {
            cluster.hand_over();
            cluster.command_link.as_mut().map(Link::flush)
        });
        if let Some(Err(error)) = result {
            self.cluster_fall(now, &describe(&error));
        }
    }

    /// Moves the view with one note and tells local clients what changed.
    fn apply_note(&mut self, note: Note, now: Millis) {
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
            if origin != cluster.session.node() {
                self.deliver_publication(&channel, from.as_deref(), &data);
            }
            return;
        }
        let effect = cluster.session.view_mut().apply(&note);
        let channel = note.channel();
        match effect {
            Effect::Nothing => {}
            Effect::Gap => {
                debug!("cluster: notes of {channel} were missed; loading a snapshot");
                cluster.session.resnapshot(now);
            }
            Effect::Counts => self.cluster_counts_changed(channel, now),
            Effect::Announce(change) => {
                let counts_changed = !matches!(change, Change::Update { .. });
                self.announce_named(channel, change);
                if counts_changed {
                    self.cluster_counts_changed(channel, now);
                }
            }
        }
    }

    /// Tells local clients of a cluster-wide change in `name`: its subscribers and watchers
    /// when the channel is known here, else only the watchers of every channel.
    fn announce_named(&mut self, name: &str, change: Change) {
        match self.roster.find(name) {
            Some(channel) => self.announce(Announcement {
                channel,
                name: name.into(),
                except: None,
                change,
            }),
            None => {
                if self.watch_all.is_empty() || self.shutdown.is_some() {
                    return;
                }
                // A channel's first event reaches them as a new baseline (see `delivery`).
                let text = if super::delivery::starts_channel(&change) {
                    self.state_named(name, None)
                } else {
                    super::delivery::change_event(name, &change)
                };
                self.tell_everything_watchers(text);
            }
        }
    }

    fn cluster_counts_changed(&mut self, name: &str, now: Millis) {
        match self.roster.find(name) {
            Some(channel) => self.counts_changed(channel, None, now),
            None if !self.watch_all.is_empty() && self.shutdown.is_none() => {
                let counts = self.channel_counts_named(name);
                self.tell_everything_watchers(event::count(name, counts, None));
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
            names.extend(cluster.view().channels().map(str::to_owned));
        }
        names.sort();
        names.dedup();
        for name in names {
            self.refresh_channel(&name, now);
        }
    }

    /// Sends the channel's `state` to its `all` subscribers and watchers, and its counts to
    /// its `count` subscribers.
    fn refresh_channel(&mut self, name: &str, now: Millis) {
        if self.shutdown.is_some() {
            return;
        }
        let state = self.state_named(name, None);
        match self.roster.find(name) {
            Some(channel) => {
                let recipients: Vec<_> = self
                    .roster
                    .subscribers(channel)
                    .filter(|(_, mode)| *mode == EventsMode::All)
                    .map(|(conn, _)| conn)
                    .chain(self.roster.watchers(channel))
                    .filter(|conn| !self.watch_all.contains(conn))
                    .chain(self.watch_all.iter().copied())
                    .collect();
                for id in recipients {
                    self.send(id, state.clone());
                }
                self.counts_changed(channel, None, now);
            }
            None => self.tell_everything_watchers(state),
        }
    }

    /// Gives up on the links: drops both, becomes degraded (telling local clients), and
    /// retries after a growing pause.
    pub(super) fn cluster_fall(&mut self, now: Millis, why: &str) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        for link in [cluster.command_link.take(), cluster.note_link.take()]
            .into_iter()
            .flatten()
        {
            let mut link = link;
            link.deregister(&self.poll_registry);
        }
        let fell = cluster.session.fell(now);
        let address = cluster.session.address();
        if fell.first {
            warn!("cluster degraded: {why}; serving local presence only, retrying {address}");
        } else {
            debug!("cluster: still degraded: {why}");
        }
        if fell.was_live {
            self.refresh_every_channel(now);
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
        cluster.session.hold(
            &member.channel,
            &member.user,
            conns,
            member.meta.as_ref(),
            leave,
            now,
        );
    }

    /// A publication: to the other nodes (while live) besides local delivery.
    pub(super) fn tell_cluster_publication(
        &mut self,
        channel: &str,
        from: Option<&str>,
        data: &Json,
        now: Millis,
    ) {
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.session.publish(channel, from, data, now);
        }
    }

    /// Graceful shutdown: the node's users leave the cluster with reason `shutdown`.
    pub(super) fn cluster_goodbye(&mut self, now: Millis) {
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.session.goodbye(now);
        }
    }
}

/// Makes the node from the configuration, at bind time.
pub(super) fn node_from_config(
    config: &crate::Config,
    ttl_ms: Millis,
) -> Result<Option<ClusterNode>, Unresolvable> {
    let Some(address) = config.redis.clone() else {
        return Ok(None);
    };
    let node = config.node_id.clone().unwrap_or_else(random_node_id);
    info!("cluster: node {node} joining {address}");
    ClusterNode::new(address, &node, ttl_ms).map(Some)
}

/// A random node id: 64 bits from the standard library's randomly seeded hasher, mixed
/// with the process id and the time.
fn random_node_id() -> String {
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    std::process::id().hash(&mut hasher);
    std::time::SystemTime::now().hash(&mut hasher);
    format!("node-{:016x}", hasher.finish())
}

fn describe(error: &LinkError) -> String {
    format!("Redis connection lost ({error})")
}
