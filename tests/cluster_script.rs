//! Model-based property test of the cluster script (`src/cluster/script.lua`) on a real
//! `redis-server`, driven through the commands the nodes send (`cluster::Commands`).
//!
//! Random sequences over 3 nodes × 2 channels × 3 users of `hold` (0–2 connections, with or
//! without one of 3 metas), `release` (any reason), `beat`, `sync` (a random list of
//! holdings), `goodbye` and simulated node death (the node's `alive:` key deleted, as if its
//! TTL had run out: the next `beat` or `sync` of any node reaps it with `node_down`, and its
//! own next `beat` says it lapsed). After every operation:
//! - every note the script published is read (the test publishes a marker note on the same
//!   channel right after the operation and reads up to it) and compared field by field with
//!   the reference model's: `J` (seq, conns over every node, meta), `U`, `L` (seq, reason),
//!   `C` (conns, seq unchanged), and the origin the `J`, `U`, `L` notes end with (the
//!   calling node). Where the script releases several holdings in one call (reaps,
//!   `goodbye`, `sync`) their order is Redis's hash order: the observed notes must then be
//!   those of *some* order of those releases (a sync's releases before its holds,
//!   which are in the order given, and its reaps after; one dead node's releases after
//!   another's), checked channel by channel, as channels share nothing, so the order of
//!   notes *across* channels is not checked;
//! - the replies: `1` for hold / release / goodbye, `parse_beat` for beat and sync (live
//!   nodes, lapsed);
//! - a `snapshot` (`parse_snapshot`): channels, seq, members, conns, meta;
//! - the keys the script's header documents: exactly the expected ones exist, and `held:NODE`,
//!   `holders:CH` and `nodes` have the model's content;
//! - last seen: each operation runs at a later clock; a cluster-wide leave (`L`) carries the
//!   clock of the call that made it (a release's own time, a reaper's, a sync's, a
//!   goodbye's), and `seen:USER` (read with `Commands::last_seen`) holds each user's latest
//!   leave, expiring after the last-seen TTL.
//!
//! As in the script, a node is in the `nodes` set (and can be reaped) only once it beat or
//! synced; a hold alone does not register it.
//!
//! Each case starts from `FLUSHALL`; every case ends with each node's `goodbye`, after which
//! no key is left but the users' last-seen times. Liveness is set for 10 minutes, so nothing expires by itself: deaths are
//! only the simulated ones, and the test is deterministic.
//!
//! Without `redis-server` the test prints `SKIPPED: redis-server not installed` and passes,
//! unless `ROLLCALL_REDIS_TESTS=1`. `PROPTEST_CASES=N` runs N cases instead of 200.

mod common;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use rollcall::cluster::note::Note;
use rollcall::cluster::resp::{self, Reply};
use rollcall::cluster::view::ChannelSnapshot;
use rollcall::cluster::{self, Beat, Command, Commands};
use rollcall::model::{LeaveReason, Meta};

use common::cases::proptest_config;
use common::redis;

const NODES: [&str; 3] = ["n0", "n1", "n2"];
// Names as apps have them (the script splits "CHANNEL USER" fields at the first space), in
// byte order, as snapshots list them.
const CHANNELS: [&str; 2] = ["news", "room:lobby"];
const USERS: [&str; 3] = ["Jane Doe", "q\" \\ 🦀", "u0"];
/// Metas, compact JSON objects; `{}` is also what a new member gets without one.
const METAS: [&str; 3] = ["{}", r#"{"k":1}"#, r#"{"k":2}"#];
const REASONS: [LeaveReason; 8] = LeaveReason::ALL;
/// Database 0: keys and the notes channel start with `rollcall:`.
const DB: u32 = 0;
/// Liveness given by every beat and sync: longer than any run, so only the simulated deaths
/// (the key deleted) happen.
const LIVENESS_MS: u64 = 600_000;
/// Bound of every read and write on the Redis connections (only reached when failing).
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Cases run, unless `PROPTEST_CASES` says otherwise.
const CASES: u32 = 200;
/// How long Redis keeps a last-seen time.
const LAST_SEEN_TTL_MS: u64 = 3_600_000;
/// The clock of a case's first operation (Unix ms); each operation runs 1 ms later.
const CLOCK_START: u64 = 1_700_000_000_000;

fn meta(index: usize) -> Meta {
    Meta::parse(METAS[index]).expect("test metas are JSON objects")
}

fn args<'a>(parts: impl IntoIterator<Item = &'a str>) -> Command {
    parts.into_iter().map(|p| p.as_bytes().to_vec()).collect()
}

// ---------------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
enum Op {
    /// `Commands::hold`: the node holds the user with `conns` connections (0: leave grace).
    Hold {
        node: usize,
        channel: usize,
        user: usize,
        conns: u32,
        meta: Option<usize>,
    },
    /// `Commands::release`.
    Release {
        node: usize,
        channel: usize,
        user: usize,
        reason: usize,
    },
    /// `Commands::beat`: refreshes the node's liveness, reaps the dead.
    Beat { node: usize },
    /// The node's liveness runs out: its `alive:` key is deleted.
    Die { node: usize },
    /// `Commands::sync` with these (channel, user, conns, meta), in this order.
    Sync {
        node: usize,
        holdings: Vec<(usize, usize, u32, usize)>,
    },
    /// `Commands::goodbye`.
    Goodbye { node: usize, reason: usize },
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Op::Hold {
                node,
                channel,
                user,
                conns,
                meta,
            } => write!(
                f,
                "{} hold {} {} conns={conns} meta={}",
                NODES[node],
                CHANNELS[channel],
                USERS[user],
                meta.map_or("none", |m| METAS[m])
            ),
            Op::Release {
                node,
                channel,
                user,
                reason,
            } => write!(
                f,
                "{} release {} {} {}",
                NODES[node], CHANNELS[channel], USERS[user], REASONS[reason]
            ),
            Op::Beat { node } => write!(f, "{} beat", NODES[node]),
            Op::Die { node } => write!(f, "{} dies (DEL alive)", NODES[node]),
            Op::Sync { node, ref holdings } => {
                write!(f, "{} sync [", NODES[node])?;
                for (i, &(channel, user, conns, meta)) in holdings.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(
                        f,
                        "{sep}{} {} conns={conns} meta={}",
                        CHANNELS[channel], USERS[user], METAS[meta]
                    )?;
                }
                write!(f, "]")
            }
            Op::Goodbye { node, reason } => {
                write!(f, "{} goodbye {}", NODES[node], REASONS[reason])
            }
        }
    }
}

fn op() -> impl Strategy<Value = Op> {
    let node = 0..NODES.len();
    let channel = 0..CHANNELS.len();
    let user = 0..USERS.len();
    let pairs: Vec<usize> = (0..CHANNELS.len() * USERS.len()).collect();
    prop_oneof![
        8 => (node.clone(), channel.clone(), user.clone(), 0u32..3, proptest::option::of(0..METAS.len()))
            .prop_map(|(node, channel, user, conns, meta)| Op::Hold { node, channel, user, conns, meta }),
        4 => (node.clone(), channel, user, 0..REASONS.len())
            .prop_map(|(node, channel, user, reason)| Op::Release { node, channel, user, reason }),
        3 => node.clone().prop_map(|node| Op::Beat { node }),
        3 => node.clone().prop_map(|node| Op::Die { node }),
        2 => (
            node.clone(),
            proptest::sample::subsequence(pairs.clone(), 0..=pairs.len()).prop_shuffle(),
            proptest::collection::vec((0u32..3, 0..METAS.len()), pairs.len()),
        )
            .prop_map(|(node, pairs, values)| Op::Sync {
                node,
                holdings: pairs
                    .into_iter()
                    .zip(values)
                    .map(|(pair, (conns, meta))| (pair / USERS.len(), pair % USERS.len(), conns, meta))
                    .collect(),
            }),
        1 => (node, 0..REASONS.len()).prop_map(|(node, reason)| Op::Goodbye { node, reason }),
    ]
}

// ---------------------------------------------------------------------------------------------
// The reference model
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Member {
    /// Index into METAS.
    meta: usize,
    /// Holder node → its connections (0: in leave grace).
    holders: BTreeMap<usize, u32>,
}

impl Member {
    fn conns(&self) -> u32 {
        self.holders.values().sum()
    }
}

#[derive(Debug, Clone, Default)]
struct Channel {
    seq: u64,
    members: BTreeMap<usize, Member>,
}

#[derive(Debug, Clone, Default)]
struct Model {
    /// Channels with members only: an empty channel is forgotten, its seq with it.
    channels: BTreeMap<usize, Channel>,
    /// The `nodes` set: nodes a beat, sync or hold registered and no reap or goodbye removed.
    registered: BTreeSet<usize>,
    /// Nodes whose `alive:` key exists.
    alive: BTreeSet<usize>,
    /// The clock of the operation being run (Unix ms).
    clock: u64,
    /// Each user's last seen: the clock of its latest cluster-wide leave.
    seen: BTreeMap<usize, u64>,
}

/// One change the script makes to one holding.
#[derive(Debug, Clone)]
enum Step {
    Hold {
        node: usize,
        channel: usize,
        user: usize,
        conns: u32,
        meta: Option<usize>,
        /// Sync: the meta is used only for a new member.
        only_if_new: bool,
    },
    Release {
        node: usize,
        channel: usize,
        user: usize,
        reason: LeaveReason,
    },
}

impl Step {
    fn channel(&self) -> usize {
        match *self {
            Step::Hold { channel, .. } | Step::Release { channel, .. } => channel,
        }
    }
}

fn join(channel: usize, user: usize, seq: u64, conns: u32, meta_index: usize) -> Note {
    Note::Join {
        channel: CHANNELS[channel].to_owned(),
        user: USERS[user].to_owned(),
        seq,
        conns,
        meta: meta(meta_index),
    }
}

fn update(channel: usize, user: usize, seq: u64, meta_index: usize) -> Note {
    Note::Update {
        channel: CHANNELS[channel].to_owned(),
        user: USERS[user].to_owned(),
        seq,
        meta: meta(meta_index),
    }
}

fn leave(channel: usize, user: usize, seq: u64, reason: LeaveReason, last_seen: u64) -> Note {
    Note::Leave {
        channel: CHANNELS[channel].to_owned(),
        user: USERS[user].to_owned(),
        seq,
        reason,
        last_seen,
    }
}

fn conns_note(channel: usize, user: usize, seq: u64, conns: u32) -> Note {
    Note::Conns {
        channel: CHANNELS[channel].to_owned(),
        user: USERS[user].to_owned(),
        seq,
        conns,
    }
}

impl Model {
    /// Applies one step; the notes it publishes, in order.
    fn apply(&mut self, step: &Step) -> Vec<Note> {
        match *step {
            Step::Hold {
                node,
                channel,
                user,
                conns,
                meta,
                only_if_new,
            } => {
                self.registered.insert(node);
                let ch = self.channels.entry(channel).or_default();
                let Some(member) = ch.members.get_mut(&user) else {
                    // The user's first holder: a join, with `{}` when no meta is given.
                    let meta = meta.unwrap_or(0);
                    let holders = BTreeMap::from([(node, conns)]);
                    ch.members.insert(user, Member { meta, holders });
                    ch.seq += 1;
                    return vec![join(channel, user, ch.seq, conns, meta)];
                };
                let before = member.holders.insert(node, conns).unwrap_or(0);
                let mut notes = Vec::new();
                if let Some(meta) = meta {
                    if !only_if_new && meta != member.meta {
                        member.meta = meta;
                        ch.seq += 1;
                        notes.push(update(channel, user, ch.seq, meta));
                    }
                }
                if conns != before {
                    notes.push(conns_note(channel, user, ch.seq, member.conns()));
                }
                notes
            }
            Step::Release {
                node,
                channel,
                user,
                reason,
            } => {
                let Some(ch) = self.channels.get_mut(&channel) else {
                    return Vec::new();
                };
                let Some(member) = ch.members.get_mut(&user) else {
                    return Vec::new();
                };
                let Some(before) = member.holders.remove(&node) else {
                    return Vec::new();
                };
                if !member.holders.is_empty() {
                    // Still a member: only its connections may have changed.
                    return if before != 0 {
                        vec![conns_note(channel, user, ch.seq, member.conns())]
                    } else {
                        Vec::new()
                    };
                }
                ch.members.remove(&user);
                ch.seq += 1;
                let note = leave(channel, user, ch.seq, reason, self.clock);
                self.seen.insert(user, self.clock);
                if ch.members.is_empty() {
                    self.channels.remove(&channel);
                }
                vec![note]
            }
        }
    }

    /// What `node` holds: (channel, user) → conns.
    fn held(&self, node: usize) -> BTreeMap<(usize, usize), u32> {
        let mut held = BTreeMap::new();
        for (&channel, ch) in &self.channels {
            for (&user, member) in &ch.members {
                if let Some(&conns) = member.holders.get(&node) {
                    held.insert((channel, user), conns);
                }
            }
        }
        held
    }

    /// Releases of everything `node` holds, in no particular order.
    fn releases_of(&self, node: usize, reason: LeaveReason) -> Vec<Step> {
        self.held(node)
            .into_keys()
            .map(|(channel, user)| Step::Release {
                node,
                channel,
                user,
                reason,
            })
            .collect()
    }

    /// The script's `beat` for `node`, except the reaps' releases, which it returns (one
    /// block per dead node, in no particular order), with the reply.
    fn beat(&mut self, node: usize) -> (Beat, Vec<Vec<Step>>) {
        let lapsed = !self.alive.contains(&node);
        self.alive.insert(node);
        self.registered.insert(node);
        let dead: Vec<usize> = self
            .registered
            .iter()
            .copied()
            .filter(|n| !self.alive.contains(n))
            .collect();
        let live = self.registered.len() - dead.len();
        let blocks = dead
            .iter()
            .map(|&d| self.releases_of(d, LeaveReason::NodeDown))
            .collect();
        for d in dead {
            self.registered.remove(&d);
        }
        let beat = Beat {
            nodes: live as u64,
            lapsed,
        };
        (beat, blocks)
    }

    fn snapshot(&self) -> Vec<ChannelSnapshot> {
        self.channels
            .iter()
            .map(|(&channel, ch)| ChannelSnapshot {
                name: CHANNELS[channel].to_owned(),
                seq: ch.seq,
                members: ch
                    .members
                    .iter()
                    .map(|(&user, member)| {
                        (USERS[user].to_owned(), member.conns(), meta(member.meta))
                    })
                    .collect(),
            })
            .collect()
    }
}

/// What one operation does to the holdings, in order; releases the script makes in Redis's
/// hash or set order are in `AnyOrder` / `AnyBlocks`.
#[derive(Debug, Clone)]
enum Work {
    Do(Step),
    /// These steps, in any order.
    AnyOrder(Vec<Step>),
    /// These blocks in any order, each block's steps in any order, one block after another.
    AnyBlocks(Vec<Vec<Step>>),
}

impl Work {
    /// Only the steps in `channel` (channels share no state, nor seq).
    fn in_channel(&self, channel: usize) -> Work {
        let keep = |steps: &Vec<Step>| -> Vec<Step> {
            steps
                .iter()
                .filter(|s| s.channel() == channel)
                .cloned()
                .collect()
        };
        match self {
            Work::Do(step) if step.channel() == channel => Work::Do(step.clone()),
            Work::Do(_) => Work::AnyOrder(Vec::new()),
            Work::AnyOrder(steps) => Work::AnyOrder(keep(steps)),
            Work::AnyBlocks(blocks) => Work::AnyBlocks(
                blocks
                    .iter()
                    .map(keep)
                    .filter(|block| !block.is_empty())
                    .collect(),
            ),
        }
    }

    /// The steps in the order listed.
    fn flatten(&self) -> Vec<Step> {
        match self {
            Work::Do(step) => vec![step.clone()],
            Work::AnyOrder(steps) => steps.clone(),
            Work::AnyBlocks(blocks) => blocks.concat(),
        }
    }
}

/// The model after `work`, if some order it allows publishes exactly `observed`.
fn search(model: &Model, work: &[Work], observed: &[Note]) -> Option<Model> {
    let Some((first, rest)) = work.split_first() else {
        return observed.is_empty().then(|| model.clone());
    };
    let then =
        |head: Vec<Work>| -> Vec<Work> { head.into_iter().chain(rest.iter().cloned()).collect() };
    match first {
        Work::Do(step) => {
            let mut next = model.clone();
            let notes = next.apply(step);
            if !observed.starts_with(&notes) {
                return None;
            }
            search(&next, rest, &observed[notes.len()..])
        }
        Work::AnyOrder(steps) if steps.is_empty() => search(model, rest, observed),
        Work::AnyOrder(steps) => (0..steps.len()).find_map(|i| {
            let mut others = steps.clone();
            let step = others.remove(i);
            search(
                model,
                &then(vec![Work::Do(step), Work::AnyOrder(others)]),
                observed,
            )
        }),
        Work::AnyBlocks(blocks) if blocks.is_empty() => search(model, rest, observed),
        Work::AnyBlocks(blocks) => (0..blocks.len()).find_map(|i| {
            let mut others = blocks.clone();
            let block = others.remove(i);
            search(
                model,
                &then(vec![Work::AnyOrder(block), Work::AnyBlocks(others)]),
                observed,
            )
        }),
    }
}

fn show(note: &Note) -> String {
    match note {
        Note::Join {
            channel,
            user,
            seq,
            conns,
            meta,
        } => format!(
            "J {channel} {user} seq={seq} conns={conns} {}",
            meta.as_str()
        ),
        Note::Update {
            channel,
            user,
            seq,
            meta,
        } => format!("U {channel} {user} seq={seq} {}", meta.as_str()),
        Note::Leave {
            channel,
            user,
            seq,
            reason,
            last_seen,
        } => format!("L {channel} {user} seq={seq} {reason} seen={last_seen}"),
        Note::Conns {
            channel,
            user,
            seq,
            conns,
        } => format!("C {channel} {user} seq={seq} conns={conns}"),
        other => format!("{other:?}"),
    }
}

fn show_all(notes: &[Note]) -> String {
    if notes.is_empty() {
        return "(none)".to_owned();
    }
    notes.iter().map(show).collect::<Vec<_>>().join("; ")
}

/// Moves `model` through `work`, checking it against the notes observed, channel by channel.
fn explain(model: &mut Model, work: &[Work], observed: &[Note]) -> Result<(), String> {
    if let Some(stray) = observed
        .iter()
        .find(|note| !CHANNELS.contains(&note.channel()))
    {
        return Err(format!("note in an unknown channel: {}", show(stray)));
    }
    let mut next = model.clone();
    for (channel, name) in CHANNELS.iter().enumerate() {
        let work: Vec<Work> = work.iter().map(|w| w.in_channel(channel)).collect();
        let seen: Vec<Note> = observed
            .iter()
            .filter(|note| note.channel() == *name)
            .cloned()
            .collect();
        match search(&next, &work, &seen) {
            Some(found) => next = found,
            None => {
                // One order the script could have used, to show what was expected.
                let mut shown = next.clone();
                let expected: Vec<Note> = work
                    .iter()
                    .flat_map(Work::flatten)
                    .flat_map(|step| shown.apply(&step))
                    .collect();
                let ordered = work.iter().any(|w| !matches!(w, Work::Do(_)));
                return Err(format!(
                    "notes in {name}:\n  expected{}: {}\n  observed: {}",
                    if ordered {
                        " (releases in some order, e.g.)"
                    } else {
                        ""
                    },
                    show_all(&expected),
                    show_all(&seen)
                ));
            }
        }
    }
    *model = next;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------------------------

/// One RESP connection with bounded reads.
struct Link {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Link {
    fn connect(addr: SocketAddr) -> Result<Link, String> {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .map_err(|e| format!("connect {addr}: {e}"))?;
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(IO_TIMEOUT)))
            .and_then(|()| stream.set_nodelay(true))
            .map_err(|e| e.to_string())?;
        Ok(Link {
            stream,
            buf: Vec::new(),
        })
    }

    fn send(&mut self, commands: &[Command]) -> Result<(), String> {
        let mut out = Vec::new();
        for command in commands {
            resp::encode(&mut out, command);
        }
        self.stream
            .write_all(&out)
            .map_err(|e| format!("write to Redis: {e}"))
    }

    fn read(&mut self) -> Result<Reply, String> {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            if let Some((reply, used)) = resp::decode(&self.buf).map_err(|e| e.to_string())? {
                self.buf.drain(..used);
                return Ok(reply);
            }
            if Instant::now() >= deadline {
                return Err(format!("no reply from Redis within {IO_TIMEOUT:?}"));
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err("Redis closed the connection".to_owned()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("read from Redis: {e}")),
            }
        }
    }

    /// Sends the commands in one write (a pipeline) and reads their replies.
    fn call(&mut self, commands: &[Command]) -> Result<Vec<Reply>, String> {
        self.send(commands)?;
        commands.iter().map(|_| self.read()).collect()
    }
}

/// What one [`Harness::exchange`] read.
struct Exchange {
    /// The operation's replies.
    replies: Vec<Reply>,
    /// The notes it published, raw.
    notes: Vec<Vec<u8>>,
    /// The checks' replies.
    checks: Vec<Reply>,
}

/// The two connections: commands (the script, checks) and notes (subscribed).
struct Harness {
    addr: SocketAddr,
    commands: Link,
    notes: Link,
    nodes: Vec<Commands>,
    prefix: String,
    marker: u64,
    /// An exchange failed halfway: replies or notes may be pending; reconnect.
    broken: bool,
}

impl Harness {
    fn open(addr: SocketAddr) -> Result<Harness, String> {
        let nodes: Vec<Commands> = NODES
            .iter()
            .map(|n| Commands::new(n, DB, LAST_SEEN_TTL_MS))
            .collect();
        let mut commands = Link::connect(addr)?;
        // Loaded once: FLUSHALL keeps the script cache.
        let loaded = commands.call(&[nodes[0].load_script()])?;
        let sha = cluster::script_sha();
        if loaded[0].text() != Some(sha.as_str()) {
            return Err(format!(
                "SCRIPT LOAD replied {:?}, expected {sha}",
                loaded[0]
            ));
        }
        let mut notes = Link::connect(addr)?;
        notes.send(&[nodes[0].subscribe()])?;
        let confirmation = notes.read()?;
        if !cluster::is_subscribed(&confirmation) {
            return Err(format!("SUBSCRIBE replied {confirmation:?}"));
        }
        Ok(Harness {
            addr,
            commands,
            notes,
            nodes,
            prefix: cluster::key_prefix(DB),
            marker: 0,
            broken: false,
        })
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Runs `op` (a pipeline), then publishes a marker note, then `checks`; reads every
    /// reply, then every note up to the marker: the script publishes inside its call, so all
    /// of the operation's notes come before the marker.
    fn exchange(&mut self, op: &[Command], checks: &[Command]) -> Result<Exchange, String> {
        self.broken = true;
        self.marker += 1;
        let marker = format!("marker\t{}", self.marker);
        let events = self.nodes[0].events_channel();
        let mut pipeline = op.to_vec();
        pipeline.push(args(["PUBLISH", &events, &marker]));
        pipeline.extend_from_slice(checks);
        let mut replies = self.commands.call(&pipeline)?;
        let check_replies = replies.split_off(op.len() + 1);
        let published = replies.pop();
        if published != Some(Reply::Integer(1)) {
            return Err(format!(
                "PUBLISH of the marker replied {published:?}, expected 1 subscriber"
            ));
        }
        let deadline = Instant::now() + IO_TIMEOUT;
        let mut notes = Vec::new();
        loop {
            if Instant::now() >= deadline {
                return Err(format!("marker not received within {IO_TIMEOUT:?}"));
            }
            let push = self.notes.read()?;
            let Some(payload) = cluster::pushed_message(&push) else {
                return Err(format!("unexpected push on the notes connection: {push:?}"));
            };
            if payload == marker.as_bytes() {
                break;
            }
            notes.push(payload.to_vec());
        }
        self.broken = false;
        Ok(Exchange {
            replies,
            notes,
            checks: check_replies,
        })
    }

    /// A clean slate for a case: reconnects after a failed exchange, `FLUSHALL`, and drops
    /// notes still on their way.
    fn begin_case(&mut self) -> Result<(), String> {
        if self.broken {
            *self = Harness::open(self.addr)?;
        }
        // Notes still on their way, if any, are dropped with the exchange.
        let exchange = self.exchange(&[args(["FLUSHALL"])], &[])?;
        match &exchange.replies[0] {
            Reply::Status(ok) if ok == "OK" => Ok(()),
            other => Err(format!("FLUSHALL replied {other:?}")),
        }
    }

    /// Commands reading the state: the snapshot, then the keys of the script's header.
    fn checks(&self) -> Vec<Command> {
        let mut checks = vec![
            self.nodes[0].snapshot(),
            args(["KEYS", &self.key("*")]),
            args(["SMEMBERS", &self.key("nodes")]),
        ];
        for node in NODES {
            checks.push(args(["HGETALL", &self.key(&format!("held:{node}"))]));
        }
        for channel in CHANNELS {
            checks.push(args(["HGETALL", &self.key(&format!("holders:{channel}"))]));
        }
        checks.push(self.nodes[0].last_seen(USERS));
        for user in USERS {
            checks.push(args(["PTTL", &self.key(&format!("seen:{user}"))]));
        }
        checks
    }
}

fn strings(reply: &Reply) -> Result<Vec<String>, String> {
    match reply {
        Reply::Array(Some(items)) => items
            .iter()
            .map(|item| {
                item.text()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("not text: {item:?}"))
            })
            .collect(),
        other => Err(format!("not an array: {other:?}")),
    }
}

fn hash(reply: &Reply) -> Result<BTreeMap<String, String>, String> {
    let flat = strings(reply)?;
    Ok(flat
        .chunks(2)
        .map(|kv| (kv[0].clone(), kv.get(1).cloned().unwrap_or_default()))
        .collect())
}

fn script_reply(what: &str, reply: &Reply) -> Result<(), String> {
    match reply {
        Reply::Integer(1) => Ok(()),
        other => Err(format!("{what} replied {other:?}, expected 1")),
    }
}

fn beat_reply(what: &str, reply: &Reply, expected: Beat) -> Result<(), String> {
    match cluster::parse_beat(reply) {
        Some(beat) if beat == expected => Ok(()),
        Some(beat) => Err(format!("{what} replied {beat:?}, expected {expected:?}")),
        None => Err(format!("{what} replied {reply:?}, expected {expected:?}")),
    }
}

// ---------------------------------------------------------------------------------------------
// One operation, checked
// ---------------------------------------------------------------------------------------------

fn run_op(h: &mut Harness, model: &mut Model, op: &Op) -> Result<(), String> {
    let metas: Vec<Meta> = (0..METAS.len()).map(meta).collect();
    model.clock += 1;
    let clock = model.clock;
    let mut expected_beat = None;
    let mut expected_deleted = None;
    let (command, work) = match *op {
        Op::Hold {
            node,
            channel,
            user,
            conns,
            meta,
        } => (
            h.nodes[node].hold(
                CHANNELS[channel],
                USERS[user],
                conns,
                meta.map(|m| &metas[m]),
            ),
            vec![Work::Do(Step::Hold {
                node,
                channel,
                user,
                conns,
                meta,
                only_if_new: false,
            })],
        ),
        Op::Release {
            node,
            channel,
            user,
            reason,
        } => (
            h.nodes[node].release(CHANNELS[channel], USERS[user], REASONS[reason], clock),
            vec![Work::Do(Step::Release {
                node,
                channel,
                user,
                reason: REASONS[reason],
            })],
        ),
        Op::Beat { node } => {
            let (beat, blocks) = model.beat(node);
            expected_beat = Some(beat);
            (
                h.nodes[node].beat(LIVENESS_MS, clock),
                vec![Work::AnyBlocks(blocks)],
            )
        }
        Op::Die { node } => {
            expected_deleted = Some(i64::from(model.alive.remove(&node)));
            (
                args(["DEL", &h.key(&format!("alive:{}", NODES[node]))]),
                Vec::new(),
            )
        }
        Op::Sync { node, ref holdings } => {
            let wanted: BTreeSet<(usize, usize)> =
                holdings.iter().map(|&(c, u, _, _)| (c, u)).collect();
            let dropped: Vec<Step> = model
                .held(node)
                .into_keys()
                .filter(|pair| !wanted.contains(pair))
                .map(|(channel, user)| Step::Release {
                    node,
                    channel,
                    user,
                    reason: LeaveReason::Closed,
                })
                .collect();
            let mut work = vec![Work::AnyOrder(dropped)];
            work.extend(holdings.iter().map(|&(channel, user, conns, meta)| {
                Work::Do(Step::Hold {
                    node,
                    channel,
                    user,
                    conns,
                    meta: Some(meta),
                    only_if_new: true,
                })
            }));
            // The dead nodes' holdings are not the syncing node's: the sync's own steps
            // leave them as they are now.
            let (beat, blocks) = model.beat(node);
            work.push(Work::AnyBlocks(blocks));
            expected_beat = Some(Beat {
                nodes: beat.nodes,
                lapsed: false,
            });
            let command = h.nodes[node].sync(
                LIVENESS_MS,
                clock,
                holdings
                    .iter()
                    .map(|&(c, u, conns, m)| (CHANNELS[c], USERS[u], conns, &metas[m])),
            );
            (command, work)
        }
        Op::Goodbye { node, reason } => {
            let block = model.releases_of(node, REASONS[reason]);
            model.registered.remove(&node);
            model.alive.remove(&node);
            (
                h.nodes[node].goodbye(REASONS[reason], clock),
                vec![Work::AnyOrder(block)],
            )
        }
    };

    let checks = h.checks();
    let exchange = h.exchange(&[command], &checks)?;
    let reply = &exchange.replies[0];
    if let Reply::Error(e) = reply {
        return Err(format!("the script failed: {e}"));
    }
    match (expected_beat, expected_deleted) {
        (Some(beat), _) => beat_reply("beat/sync", reply, beat)?,
        (None, Some(deleted)) => {
            if *reply != Reply::Integer(deleted) {
                return Err(format!("DEL alive replied {reply:?}, expected {deleted}"));
            }
        }
        (None, None) => script_reply("the script", reply)?,
    }

    // The J, U and L notes name the calling node last (it alone tells the webhooks).
    let caller = match *op {
        Op::Hold { node, .. }
        | Op::Release { node, .. }
        | Op::Beat { node }
        | Op::Die { node }
        | Op::Sync { node, .. }
        | Op::Goodbye { node, .. } => NODES[node],
    };
    let notes = exchange
        .notes
        .iter()
        .map(|raw| {
            let (note, origin) = Note::parse_with_origin(raw)
                .map_err(|_| format!("unreadable note {:?}", String::from_utf8_lossy(raw)))?;
            let presence = matches!(
                note,
                Note::Join { .. } | Note::Update { .. } | Note::Leave { .. }
            );
            let expected = presence.then_some(caller);
            if origin.as_deref() != expected {
                return Err(format!(
                    "note {:?} names {origin:?}, expected {expected:?}",
                    String::from_utf8_lossy(raw)
                ));
            }
            Ok(note)
        })
        .collect::<Result<Vec<Note>, String>>()?;
    explain(model, &work, &notes)?;
    check_state(h, model, &exchange.checks)
}

/// The snapshot and the script's keys against the model.
fn check_state(h: &Harness, model: &Model, replies: &[Reply]) -> Result<(), String> {
    let [snapshot, keys, nodes, rest @ ..] = replies else {
        return Err(format!("{} check replies", replies.len()));
    };
    let (held, rest) = rest.split_at(NODES.len());
    let (holders, rest) = rest.split_at(CHANNELS.len());
    let [seen, ttls @ ..] = rest else {
        return Err("no last-seen reply".to_owned());
    };
    let got_seen = cluster::parse_last_seen(seen.clone(), USERS.len())
        .ok_or_else(|| format!("parse_last_seen refused {seen:?}"))?;
    let expected_seen: Vec<Option<u64>> = (0..USERS.len())
        .map(|user| model.seen.get(&user).copied())
        .collect();
    if got_seen != expected_seen {
        return Err(format!(
            "last seen:\n  expected {expected_seen:?}\n  got      {got_seen:?}"
        ));
    }
    for (user, ttl) in ttls.iter().enumerate() {
        let ttl = ttl.integer().unwrap_or(i64::MIN);
        // PTTL: -2 without the key; else what is left of the TTL set at the last leave.
        let fits = match model.seen.contains_key(&user) {
            true => ttl > 0 && ttl <= LAST_SEEN_TTL_MS as i64,
            false => ttl == -2,
        };
        if !fits {
            return Err(format!("PTTL of seen:{} is {ttl}", USERS[user]));
        }
    }

    let mut got = cluster::parse_snapshot(snapshot.clone())
        .ok_or_else(|| format!("parse_snapshot refused {snapshot:?}"))?;
    got.sort_by(|a, b| a.name.cmp(&b.name));
    for channel in &mut got {
        channel.members.sort_by(|a, b| a.0.cmp(&b.0));
    }
    let expected = model.snapshot();
    if got != expected {
        return Err(format!(
            "snapshot:\n  expected {expected:?}\n  got      {got:?}"
        ));
    }

    let mut expected_keys = BTreeSet::new();
    if !model.registered.is_empty() {
        expected_keys.insert(h.key("nodes"));
    }
    for &node in &model.alive {
        expected_keys.insert(h.key(&format!("alive:{}", NODES[node])));
    }
    for (node, name) in NODES.iter().enumerate() {
        if !model.held(node).is_empty() {
            expected_keys.insert(h.key(&format!("held:{name}")));
        }
    }
    if !model.channels.is_empty() {
        expected_keys.insert(h.key("channels"));
    }
    for &channel in model.channels.keys() {
        for kind in ["holders", "conns", "meta", "seq"] {
            expected_keys.insert(h.key(&format!("{kind}:{}", CHANNELS[channel])));
        }
    }
    for &user in model.seen.keys() {
        expected_keys.insert(h.key(&format!("seen:{}", USERS[user])));
    }
    let got_keys: BTreeSet<String> = strings(keys)?.into_iter().collect();
    if got_keys != expected_keys {
        return Err(format!(
            "keys:\n  expected {expected_keys:?}\n  got      {got_keys:?}"
        ));
    }

    let got_nodes: BTreeSet<String> = strings(nodes)?.into_iter().collect();
    let expected_nodes: BTreeSet<String> = model
        .registered
        .iter()
        .map(|&n| NODES[n].to_owned())
        .collect();
    if got_nodes != expected_nodes {
        return Err(format!(
            "nodes set: expected {expected_nodes:?}, got {got_nodes:?}"
        ));
    }
    for (node, reply) in held.iter().enumerate() {
        let expected: BTreeMap<String, String> = model
            .held(node)
            .into_iter()
            .map(|((c, u), conns)| (format!("{} {}", CHANNELS[c], USERS[u]), conns.to_string()))
            .collect();
        let got = hash(reply)?;
        if got != expected {
            return Err(format!(
                "held:{}: expected {expected:?}, got {got:?}",
                NODES[node]
            ));
        }
    }
    for (channel, reply) in holders.iter().enumerate() {
        let expected: BTreeMap<String, String> = model
            .channels
            .get(&channel)
            .map(|ch| {
                ch.members
                    .iter()
                    .map(|(&u, m)| (USERS[u].to_owned(), m.holders.len().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let got = hash(reply)?;
        if got != expected {
            return Err(format!(
                "holders:{}: expected {expected:?}, got {got:?}",
                CHANNELS[channel]
            ));
        }
    }
    Ok(())
}

fn run_case(h: &mut Harness, ops: &[Op]) -> Result<(), String> {
    h.begin_case()?;
    let mut model = Model {
        clock: CLOCK_START,
        ..Model::default()
    };
    // Every node leaves at the end: nothing may be left behind.
    let finale = (0..NODES.len()).map(|node| Op::Goodbye { node, reason: 5 });
    for (i, op) in ops.iter().cloned().chain(finale).enumerate() {
        let at = if i < ops.len() { "" } else { "closing " };
        run_op(h, &mut model, &op).map_err(|e| format!("{at}step {i} ({op:?}): {e}"))?;
    }
    if !model.channels.is_empty() {
        return Err(format!("the model kept channels: {model:?}"));
    }
    Ok(())
}

#[test]
fn cluster_script_matches_the_model() {
    let Some(server) = redis::start_or_skip("cluster_script_matches_the_model") else {
        return;
    };
    let harness = RefCell::new(
        Harness::open(server.addr()).unwrap_or_else(|e| panic!("{e}\n{}", server.output())),
    );
    let mut runner = TestRunner::new(proptest_config(CASES));
    let result = runner.run(&proptest::collection::vec(op(), 1..50), |ops| {
        run_case(&mut harness.borrow_mut(), &ops).map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
