//! Cluster mode in the loop: the node's two Redis connections (one for commands, one
//! subscribed to the notes), its state, and turning notes into deliveries.
//!
//! A node is *live* once both connections are up, its holdings are synced and its view is
//! loaded from a snapshot taken after the subscription started. While live, presence reads
//! (`state`, `who`, counts, `GET /presence`) come from the cluster view and presence events
//! reach local clients only from the notes, so every node tells the same events with the
//! same seq. While not live (Redis unreachable: *degraded*), the node serves its local
//! presence as a single server would; on each switch its `all` subscribers get a fresh
//! `state` (and `count` subscribers a `count`), so no client keeps a view of the other mode.
//!
//! Invariants: the loop never waits for Redis: commands are pipelined and their replies
//! matched in order (`expect`); a failure of either connection drops both, and the next
//! attempt re-syncs everything this node holds, so nothing sent while the link was failing
//! needs to be replayed; no command is sent per idle connection.

use std::collections::VecDeque;
use std::net::{SocketAddr, ToSocketAddrs};

use log::{debug, info, warn};

use super::redis_link::{Link, LinkError};
use super::{Server, Timer};
use crate::cluster::note::Note;
use crate::cluster::resp::Reply;
use crate::cluster::view::{Effect, View};
use crate::cluster::{self, Commands, RedisAddress};
use crate::protocol::{event, EventsMode, Json, LeaveReason};
use crate::roster::{Announcement, Change, ChannelId, MemberChange};
use crate::wheel::Millis;

/// How often the cluster's timer looks at the links (retries, refresh, stuck replies), at
/// most; a short node TTL makes it shorter.
const TICK_MS: Millis = 1_000;
/// The first wait before connecting again after a failure; it doubles up to [`MAX_RETRY_MS`].
const FIRST_RETRY_MS: Millis = 250;
const MAX_RETRY_MS: Millis = 4_000;

/// Something that arrived from Redis.
enum Incoming {
    /// A reply on the command connection.
    Reply(Reply),
    /// A push on the notes connection.
    Push(Reply),
}

/// What a reply on the command connection answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Login,
    Script,
    Sync,
    Snapshot,
    Beat,
    Change,
    Goodbye,
}

/// This node's membership of the cluster.
pub(super) struct ClusterNode {
    address: RedisAddress,
    target: SocketAddr,
    commands: Commands,
    ttl_ms: Millis,
    tick_ms: Millis,
    command_link: Option<Link>,
    note_link: Option<Link>,
    /// What each reply still to come on the command link answers, and when it was sent.
    expect: VecDeque<(Expect, Millis)>,
    view: View,
    /// Notes that arrived while a snapshot was on its way: applied after it.
    held_back: Option<Vec<Note>>,
    live: bool,
    /// Whether the current outage was logged.
    degraded_logged: bool,
    next_beat: Millis,
    retry_at: Millis,
    retry_ms: Millis,
    /// Live nodes, as of the last refresh.
    nodes: u64,
    /// Commands sent to Redis.
    commands_sent: u64,
    /// Set once this node said goodbye (graceful shutdown): no more changes are sent.
    leaving: bool,
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
        Ok(ClusterNode {
            commands: Commands::new(node, address.db),
            address,
            target,
            ttl_ms,
            tick_ms: TICK_MS.min(ttl_ms / 4),
            command_link: None,
            note_link: None,
            expect: VecDeque::new(),
            view: View::default(),
            held_back: None,
            live: false,
            degraded_logged: false,
            next_beat: 0,
            retry_at: 0,
            retry_ms: FIRST_RETRY_MS,
            nodes: 0,
            commands_sent: 0,
            leaving: false,
        })
    }

    /// True when the cluster view is in force (see the module's doc).
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// The cluster-wide presence (meaningful while live).
    pub fn view(&self) -> &View {
        &self.view
    }

    /// Live nodes as of the last refresh (0 while degraded).
    pub fn nodes(&self) -> u64 {
        if self.live {
            self.nodes
        } else {
            0
        }
    }

    /// Commands sent to Redis so far.
    pub fn commands_sent(&self) -> u64 {
        self.commands_sent
    }

    /// True while a goodbye waits for its answer (a shutdown waits for it).
    pub fn saying_goodbye(&self) -> bool {
        self.expect
            .iter()
            .any(|(expect, _)| *expect == Expect::Goodbye)
    }

    fn send(&mut self, command: &[Vec<u8>], expect: Expect, now: Millis) -> bool {
        let Some(link) = self.command_link.as_mut() else {
            return false;
        };
        link.send(command);
        self.expect.push_back((expect, now));
        self.commands_sent += 1;
        true
    }
}

impl Server {
    /// The cluster's periodic look: connect when due, refresh liveness, give up on a
    /// connection whose replies stopped coming.
    pub(super) fn cluster_tick(&mut self, now: Millis) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        self.wheel.insert(Timer::ClusterTick, now + cluster.tick_ms);
        if cluster.command_link.is_none() {
            if now >= cluster.retry_at && !cluster.leaving {
                self.cluster_connect(now);
            }
            return;
        }
        let stuck = cluster
            .expect
            .front()
            .is_some_and(|(_, sent)| now.saturating_sub(*sent) > cluster.ttl_ms);
        if stuck {
            self.cluster_fall(now, "Redis stopped answering");
            return;
        }
        if cluster.live && now >= cluster.next_beat {
            cluster.next_beat = now + beat_interval(cluster.ttl_ms);
            let beat = cluster.commands.beat(liveness_ms(cluster.ttl_ms));
            cluster.send(&beat, Expect::Beat, now);
        }
        self.cluster_pump(now);
    }

    /// Opens both connections and queues what a new node says: log in, load the script,
    /// sync everything held here; the notes connection subscribes.
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
        let (command_link, mut note_link) = match links {
            Ok(links) => links,
            Err(error) => {
                let why = format!("cannot connect to {}: {error}", cluster.address);
                self.cluster_fall(now, &why);
                return;
            }
        };
        debug!("cluster: connecting to {}", cluster.address);
        cluster.command_link = Some(command_link);
        for login in cluster::login(&cluster.address, true) {
            cluster.send(&login, Expect::Login, now);
        }
        let load = cluster.commands.load_script();
        cluster.send(&load, Expect::Script, now);
        let sync = cluster
            .commands
            .sync(liveness_ms(cluster.ttl_ms), self.roster.holdings());
        cluster.send(&sync, Expect::Sync, now);
        cluster.next_beat = now + beat_interval(cluster.ttl_ms);
        // The notes connection gets no replies but pushes (and a refused AUTH closes it).
        for login in cluster::login(&cluster.address, false) {
            note_link.send(&login);
        }
        note_link.send(&cluster.commands.subscribe());
        cluster.commands_sent += 1;
        cluster.note_link = Some(note_link);
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
            while let Some(reply) = self.next_cluster_reply(now) {
                handled = true;
                match reply {
                    Incoming::Reply(reply) => self.on_command_reply(reply, now),
                    Incoming::Push(push) => self.on_push(push, now),
                }
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
        let result = self
            .cluster
            .as_mut()
            .and_then(|cluster| cluster.command_link.as_mut())
            .map(Link::flush);
        if let Some(Err(error)) = result {
            self.cluster_fall(now, &describe(&error));
        }
    }

    fn on_command_reply(&mut self, reply: Reply, now: Millis) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let Some((expect, _)) = cluster.expect.pop_front() else {
            self.cluster_fall(now, "a reply from Redis that nothing asked for");
            return;
        };
        if let Reply::Error(error) = &reply {
            // A refused login, or a script that failed: the shared state cannot be trusted
            // to hold this node's changes; start over (the reconnect re-syncs).
            let why = format!("Redis refused {expect:?}: {error}");
            self.cluster_fall(now, &why);
            return;
        }
        match expect {
            Expect::Login | Expect::Script | Expect::Change | Expect::Goodbye => {}
            Expect::Sync | Expect::Beat => match cluster::parse_beat(&reply) {
                Some(beat) => {
                    cluster.nodes = beat.nodes;
                    if beat.lapsed {
                        // Late refreshes (a stalled process, a slow Redis) let the others
                        // reap this node: put back what it holds.
                        warn!("cluster: this node's liveness had lapsed; syncing again");
                        let sync = cluster
                            .commands
                            .sync(liveness_ms(cluster.ttl_ms), self.roster.holdings());
                        cluster.send(&sync, Expect::Sync, now);
                    }
                }
                None => self.cluster_fall(now, "a refresh reply of the wrong shape"),
            },
            Expect::Snapshot => match cluster::parse_snapshot(reply) {
                Some(snapshot) => {
                    let changed = cluster.view.load(snapshot);
                    self.cluster_loaded(changed, now);
                }
                None => self.cluster_fall(now, "a snapshot reply of the wrong shape"),
            },
        }
    }

    /// The view was loaded: apply what arrived meanwhile, become live, and refresh what
    /// local clients know.
    fn cluster_loaded(&mut self, changed: Vec<String>, now: Millis) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let held_back = cluster.held_back.take().unwrap_or_default();
        let became_live = !cluster.live;
        cluster.live = true;
        cluster.retry_ms = FIRST_RETRY_MS;
        if became_live {
            info!(
                "cluster live: node {} with {} live nodes on {}",
                cluster.commands.node(),
                cluster.nodes,
                cluster.address
            );
            cluster.degraded_logged = false;
            self.refresh_every_channel(now);
        } else {
            for name in changed {
                self.refresh_channel(&name, now);
            }
        }
        for note in held_back {
            self.apply_note(note, now);
        }
    }

    /// A push on the notes connection: the subscription's confirmation or a note.
    fn on_push(&mut self, push: Reply, now: Millis) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        if cluster::is_subscribed(&push) {
            self.cluster_resnapshot(now);
            return;
        }
        let Some(payload) = cluster::pushed_message(&push) else {
            if let Reply::Error(error) = push {
                let why = format!("Redis refused the subscription: {error}");
                self.cluster_fall(now, &why);
            }
            return;
        };
        match Note::parse(payload) {
            Ok(note) => match cluster.held_back.as_mut() {
                Some(held_back) => held_back.push(note),
                None => self.apply_note(note, now),
            },
            Err(_) => warn!(
                "cluster: ignored a note this node cannot read: {:?}",
                String::from_utf8_lossy(payload)
            ),
        }
    }

    /// Asks for a snapshot; notes are held back until it arrives.
    fn cluster_resnapshot(&mut self, now: Millis) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        if cluster.held_back.is_some() {
            return;
        }
        let snapshot = cluster.commands.snapshot();
        if cluster.send(&snapshot, Expect::Snapshot, now) {
            cluster.held_back = Some(Vec::new());
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
            if origin != cluster.commands.node() {
                self.deliver_publication(&channel, from.as_deref(), &data);
            }
            return;
        }
        let effect = cluster.view.apply(&note);
        let channel = note.channel();
        match effect {
            Effect::Nothing => {}
            Effect::Gap => {
                debug!("cluster: notes of {channel} were missed; loading a snapshot");
                self.cluster_resnapshot(now);
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
            names.extend(cluster.view.channels().map(str::to_owned));
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
        cluster.expect.clear();
        cluster.held_back = None;
        cluster.retry_at = now + cluster.retry_ms;
        cluster.retry_ms = (cluster.retry_ms * 2).min(MAX_RETRY_MS);
        if !cluster.degraded_logged {
            cluster.degraded_logged = true;
            warn!(
                "cluster degraded: {why}; serving local presence only, retrying {}",
                cluster.address
            );
        } else {
            debug!("cluster: still degraded: {why}");
        }
        if std::mem::take(&mut cluster.live) {
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
        if cluster.leaving || cluster.command_link.is_none() {
            return;
        }
        let name = &member.channel;
        let command = match self.roster.holding(channel, &member.user) {
            Some(conns) => cluster
                .commands
                .hold(name, &member.user, conns, member.meta.as_ref()),
            None => {
                cluster
                    .commands
                    .release(name, &member.user, leave.unwrap_or(LeaveReason::Closed))
            }
        };
        cluster.send(&command, Expect::Change, now);
    }

    /// A publication: to the other nodes (when connected) besides local delivery.
    pub(super) fn tell_cluster_publication(
        &mut self,
        channel: &str,
        from: Option<&str>,
        data: &Json,
        now: Millis,
    ) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        if !cluster.live {
            return;
        }
        let publish = cluster.commands.publish(channel, from, data);
        cluster.send(&publish, Expect::Change, now);
    }

    /// Graceful shutdown: the node's users leave the cluster with reason `shutdown`.
    pub(super) fn cluster_goodbye(&mut self, now: Millis) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        if cluster.leaving {
            return;
        }
        cluster.leaving = true;
        let goodbye = cluster.commands.goodbye(LeaveReason::Shutdown);
        cluster.send(&goodbye, Expect::Goodbye, now);
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

/// A node refreshes its liveness every quarter of the TTL...
fn beat_interval(ttl_ms: Millis) -> Millis {
    ttl_ms / 4
}

/// ...and each refresh holds for three quarters. A node that dies is then expired between
/// TTL/2 and 3·TTL/4 after its last refresh, and reaped at a survivor's next refresh, at most
/// TTL/4 later: within the TTL. A live node may miss one refresh without being reaped.
fn liveness_ms(ttl_ms: Millis) -> Millis {
    ttl_ms * 3 / 4
}

fn describe(error: &LinkError) -> String {
    format!("Redis connection lost ({error})")
}
