//! Cluster mode: several nodes share one presence set and one stream of publications
//! through Redis. This module is the pure part: the RESP codec, the notes nodes exchange,
//! the node's copy of the cluster-wide presence, the commands it sends, and its session with
//! Redis as a state machine ([`session`]). The event loop owns the two Redis connections
//! (`server::cluster`).
//!
//! How it works, in short:
//! - Each node records in Redis what it *holds*: for each channel and user with a local
//!   connection (or in leave grace), how many connections. One Lua script
//!   (`script.lua`) applies each change atomically, decides whether it is a cluster-wide
//!   join, leave or update (the user's first holder arrived, its last holder left), advances
//!   the channel's seq and publishes the note, all in one step.
//! - Every node subscribes to the notes and moves its [`view::View`] with them; `state`,
//!   `who`, counts and `GET /presence` read the view, and events reach local clients from the
//!   notes, so every node tells the same events with the same seq.
//! - A node refreshes a liveness key every TTL/4 through the same script, which also reaps the
//!   holdings of nodes whose key expired (leave reason `node_down`).
//! - A user's cluster-wide leave also records when it was last seen (`seen:USER`, expiring
//!   after `--last-seen-ttl`) in the same call, and its note carries the time; status
//!   answers read offline users' times with one `MGET` ([`Commands::last_seen`]).
//! - Redis work is per presence change, per publication, per refresh and per status answer
//!   naming offline users: an idle connection costs none.

pub mod address;
pub mod note;
pub mod resp;
pub mod session;
pub mod view;

use sha1::{Digest, Sha1};

pub use address::{BadRedisUrl, RedisAddress};
use resp::Reply;
use view::ChannelSnapshot;

use crate::model::{Json, LeaveReason, Meta};
use crate::names::{self, NameError};

/// The cluster script (see its header for the keys it keeps).
pub const SCRIPT: &str = include_str!("script.lua");

/// The script's SHA-1, as `EVALSHA` names it.
pub fn script_sha() -> String {
    data_encoding::HEXLOWER.encode(&Sha1::digest(SCRIPT.as_bytes()))
}

/// The prefix of every key and of the Pub/Sub channel. Pub/Sub ignores the database number,
/// so a database other than 0 is part of the prefix.
pub fn key_prefix(db: u32) -> String {
    match db {
        0 => "rollcall:".to_owned(),
        db => format!("rollcall:{db}:"),
    }
}

/// A command: its arguments.
pub type Command = Vec<Vec<u8>>;

fn command<A: AsRef<[u8]>>(args: impl IntoIterator<Item = A>) -> Command {
    args.into_iter().map(|arg| arg.as_ref().to_vec()).collect()
}

/// Builds the commands one node sends.
#[derive(Debug, Clone)]
pub struct Commands {
    prefix: String,
    node: String,
    sha: String,
    /// How long Redis keeps a user's last-seen time (`--last-seen-ttl`), in milliseconds.
    last_seen_ttl: String,
}

impl Commands {
    /// Commands of node `node` on database `db`; last-seen times are kept for
    /// `last_seen_ttl_ms` (at least 1 ms: Redis refuses a zero expiry).
    pub fn new(node: &str, db: u32, last_seen_ttl_ms: u64) -> Commands {
        Commands {
            prefix: key_prefix(db),
            node: node.to_owned(),
            sha: script_sha(),
            last_seen_ttl: last_seen_ttl_ms.max(1).to_string(),
        }
    }

    /// The node's id.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The Pub/Sub channel of notes.
    pub fn events_channel(&self) -> String {
        format!("{}events", self.prefix)
    }

    /// Loads the script (once per connection, before any command that runs it).
    pub fn load_script(&self) -> Command {
        command(["SCRIPT", "LOAD", SCRIPT])
    }

    /// A script call: the prefix, the operation, this node, its clock `unix_ms` (the last
    /// seen of the users a reap or a sync lets go) and the last-seen TTL, then `args`.
    fn script<'a>(
        &'a self,
        op: &'a str,
        unix_ms: u64,
        args: impl IntoIterator<Item = &'a str>,
    ) -> Command {
        let head = ["EVALSHA", &self.sha, "0", &self.prefix, op, &self.node];
        let mut command = command(head);
        command.push(unix_ms.to_string().into_bytes());
        command.push(self.last_seen_ttl.as_bytes().to_vec());
        command.extend(args.into_iter().map(|arg| arg.as_bytes().to_vec()));
        command
    }

    /// This node holds `user` in `channel` with `conns` connections (0: in leave grace);
    /// `meta`, when given, is the member's new meta.
    pub fn hold(&self, channel: &str, user: &str, conns: u32, meta: Option<&Meta>) -> Command {
        let conns = conns.to_string();
        self.script(
            "hold",
            0,
            [channel, user, &conns, meta.map_or("", Meta::as_str)],
        )
    }

    /// This node no longer holds `user` in `channel`; its last connection here went at
    /// `last_seen_ms` (Unix ms), the user's last seen if no other node holds it.
    pub fn release(
        &self,
        channel: &str,
        user: &str,
        reason: LeaveReason,
        last_seen_ms: u64,
    ) -> Command {
        self.script("release", last_seen_ms, [channel, user, reason.as_str()])
    }

    /// Refreshes this node's liveness for `liveness_ms` and reaps expired nodes (their
    /// users last seen at `unix_ms`); the reply is read by [`parse_beat`].
    pub fn beat(&self, liveness_ms: u64, unix_ms: u64) -> Command {
        let ttl = liveness_ms.to_string();
        self.script("beat", unix_ms, [ttl.as_str()])
    }

    /// Replaces what this node holds with `holdings` (channel, user, conns, meta) and
    /// refreshes its liveness for `liveness_ms` (users let go are last seen at `unix_ms`);
    /// the reply is read by [`parse_beat`].
    pub fn sync<'a>(
        &self,
        liveness_ms: u64,
        unix_ms: u64,
        holdings: impl Iterator<Item = (&'a str, &'a str, u32, &'a Meta)>,
    ) -> Command {
        let ttl = liveness_ms.to_string();
        let mut args = self.script("sync", unix_ms, [ttl.as_str()]);
        for (channel, user, conns, meta) in holdings {
            args.push(channel.as_bytes().to_vec());
            args.push(user.as_bytes().to_vec());
            args.push(conns.to_string().into_bytes());
            args.push(meta.as_str().as_bytes().to_vec());
        }
        args
    }

    /// This node leaves the cluster at `unix_ms`: its users leave with `reason`, last seen
    /// then.
    pub fn goodbye(&self, reason: LeaveReason, unix_ms: u64) -> Command {
        self.script("goodbye", unix_ms, [reason.as_str()])
    }

    /// Every channel's cluster-wide presence (see [`parse_snapshot`]).
    pub fn snapshot(&self) -> Command {
        self.script("snapshot", 0, [])
    }

    /// The users' last-seen times, one `GET` for all of them (see [`parse_last_seen`]).
    pub fn last_seen<'a>(&self, users: impl IntoIterator<Item = &'a str>) -> Command {
        let mut args = command(["MGET"]);
        args.extend(
            users
                .into_iter()
                .map(|user| format!("{}seen:{user}", self.prefix).into_bytes()),
        );
        args
    }

    /// Publishes a publication to the other nodes.
    pub fn publish(&self, channel: &str, from: Option<&str>, data: &Json) -> Command {
        let note = note::Note::publication(&self.node, channel, from, data);
        command([
            "PUBLISH".as_bytes(),
            self.events_channel().as_bytes(),
            note.as_bytes(),
        ])
    }

    /// Publishes a named event (Pusher) to every node.
    pub fn publish_named(&self, named: &str) -> Command {
        command([
            "PUBLISH".as_bytes(),
            self.events_channel().as_bytes(),
            named.as_bytes(),
        ])
    }

    /// Subscribes (on the events connection) to the notes.
    pub fn subscribe(&self) -> Command {
        command(["SUBSCRIBE".to_owned(), self.events_channel()])
    }
}

/// `AUTH` (when the address has a password) and `SELECT` (for a database other than 0):
/// what a new connection sends first.
pub fn login(address: &RedisAddress, select: bool) -> Vec<Command> {
    let mut commands = Vec::new();
    if let Some(password) = &address.password {
        match &address.user {
            Some(user) => commands.push(command(["AUTH", user, password])),
            None => commands.push(command(["AUTH", password])),
        }
    }
    if select && address.db != 0 {
        commands.push(command(["SELECT".to_owned(), address.db.to_string()]));
    }
    commands
}

/// Reads the snapshot script's reply: `{channel, seq, {user, conns, meta, ...}}` per channel.
/// `None` when it does not have that shape.
pub fn parse_snapshot(reply: Reply) -> Option<Vec<ChannelSnapshot>> {
    let Reply::Array(Some(channels)) = reply else {
        return None;
    };
    channels
        .into_iter()
        .map(|channel| {
            let Reply::Array(Some(mut parts)) = channel else {
                return None;
            };
            if parts.len() != 3 {
                return None;
            }
            let Reply::Array(Some(flat)) = parts.pop()? else {
                return None;
            };
            let seq = parts
                .pop()?
                .integer()
                .and_then(|seq| u64::try_from(seq).ok())?;
            let popped = parts.pop()?;
            let name = popped.text()?;
            crate::pusher::validate_engine_name(name).ok()?;
            let name = name.to_owned();
            let members = flat
                .chunks(3)
                .map(|member| match member {
                    [user, conns, meta] => Some((
                        checked(user.text()?, names::validate_user)?,
                        u32::try_from(conns.integer()?).ok()?,
                        Meta::parse(meta.text()?)?,
                    )),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()?;
            Some(ChannelSnapshot { name, seq, members })
        })
        .collect()
}

/// Reads the reply of [`Commands::last_seen`] for `users` users: one time (Unix ms) or
/// nothing per user, in order. `None` when it does not have that shape.
pub fn parse_last_seen(reply: Reply, users: usize) -> Option<Vec<Option<u64>>> {
    let Reply::Array(Some(values)) = reply else {
        return None;
    };
    if values.len() != users {
        return None;
    }
    values
        .into_iter()
        .map(|value| match value {
            Reply::Bulk(None) => Some(None),
            value => value
                .integer()
                .and_then(|ms| u64::try_from(ms).ok())
                .map(Some),
        })
        .collect()
}

/// What a refresh (or a sync) found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Beat {
    /// Live nodes, this one included.
    pub nodes: u64,
    /// This node's liveness had lapsed before the refresh: other nodes may have reaped
    /// what it holds, so it must sync again.
    pub lapsed: bool,
}

/// Reads the reply of a refresh or a sync: `{live nodes, lapsed}`.
pub fn parse_beat(reply: &Reply) -> Option<Beat> {
    let Reply::Array(Some(parts)) = reply else {
        return None;
    };
    match parts.as_slice() {
        [nodes, lapsed] => Some(Beat {
            nodes: u64::try_from(nodes.integer()?).ok()?,
            lapsed: lapsed.integer()? != 0,
        }),
        _ => None,
    }
}

/// A name from Redis, checked as client input is: it goes into events.
fn checked(text: &str, rule: fn(&str) -> Result<(), NameError>) -> Option<String> {
    rule(text).ok().map(|()| text.to_owned())
}

/// Reads a Pub/Sub push on the events connection: `Some(payload)` for a message,
/// `None` for anything else (subscription confirmations).
pub fn pushed_message(reply: &Reply) -> Option<&[u8]> {
    match reply {
        Reply::Array(Some(parts)) => match parts.as_slice() {
            [Reply::Bulk(Some(kind)), _, Reply::Bulk(Some(payload))] if kind == b"message" => {
                Some(payload)
            }
            _ => None,
        },
        _ => None,
    }
}

/// True for the confirmation of a `SUBSCRIBE`.
pub fn is_subscribed(reply: &Reply) -> bool {
    matches!(reply, Reply::Array(Some(parts))
        if matches!(parts.first(), Some(Reply::Bulk(Some(kind))) if kind == b"subscribe"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Reply {
        Reply::Bulk(Some(text.as_bytes().to_vec()))
    }

    #[test]
    fn script_commands_name_the_prefix_operation_and_node() {
        let commands = Commands::new("n1", 2, 9_000);
        let hold = commands.hold("lobby", "alice", 2, None);
        let text: Vec<&str> = hold
            .iter()
            .map(|arg| std::str::from_utf8(arg).expect("utf-8"))
            .collect();
        assert_eq!(
            text,
            [
                "EVALSHA",
                &script_sha(),
                "0",
                "rollcall:2:",
                "hold",
                "n1",
                "0",
                "9000",
                "lobby",
                "alice",
                "2",
                ""
            ]
        );
        assert_eq!(commands.events_channel(), "rollcall:2:events");
        let release = commands.release("lobby", "alice", LeaveReason::Timeout, 1_234);
        assert_eq!(
            &release[6..],
            [&b"1234"[..], b"9000", b"lobby", b"alice", b"timeout"]
        );
        let lookup = commands.last_seen(["alice", "b c"]);
        assert_eq!(
            lookup,
            [
                &b"MGET"[..],
                b"rollcall:2:seen:alice",
                b"rollcall:2:seen:b c"
            ]
        );
        assert_eq!(
            Commands::new("n1", 0, 0).last_seen_ttl,
            "1",
            "never a zero expiry"
        );
        assert_eq!(script_sha().len(), 40);
    }

    #[test]
    fn login_sends_auth_and_select_only_when_needed() {
        let plain: RedisAddress = "redis://h".parse().expect("url");
        assert!(login(&plain, true).is_empty());
        let full: RedisAddress = "redis://u:p@h/4".parse().expect("url");
        assert_eq!(
            login(&full, true),
            [command(["AUTH", "u", "p"]), command(["SELECT", "4"])]
        );
        assert_eq!(login(&full, false), [command(["AUTH", "u", "p"])]);
    }

    #[test]
    fn snapshots_parse_and_bad_shapes_are_refused() {
        let reply = Reply::Array(Some(vec![Reply::Array(Some(vec![
            bulk("lobby"),
            bulk("7"),
            Reply::Array(Some(vec![bulk("alice"), bulk("2"), bulk("{\"a\":1}")])),
        ]))]));
        let snapshot = parse_snapshot(reply).expect("snapshot");
        assert_eq!(snapshot[0].name, "lobby");
        assert_eq!(snapshot[0].seq, 7);
        assert_eq!(snapshot[0].members[0].0, "alice");
        assert_eq!(snapshot[0].members[0].1, 2);
        assert_eq!(snapshot[0].members[0].2.as_str(), "{\"a\":1}");
        for bad in [
            Reply::Integer(1),
            Reply::Array(Some(vec![Reply::Array(Some(vec![bulk("lobby")]))])),
            Reply::Array(Some(vec![Reply::Array(Some(vec![
                bulk("lobby"),
                bulk("x"),
                Reply::Array(Some(vec![])),
            ]))])),
            Reply::Array(Some(vec![Reply::Array(Some(vec![
                bulk("lobby"),
                bulk("1"),
                Reply::Array(Some(vec![bulk("alice"), bulk("1")])),
            ]))])),
            Reply::Array(Some(vec![Reply::Array(Some(vec![
                bulk("lobby"),
                bulk("1"),
                Reply::Array(Some(vec![bulk("al\nice"), bulk("1"), bulk("{}")])),
            ]))])),
        ] {
            assert_eq!(parse_snapshot(bad.clone()), None, "{bad:?}");
        }
    }

    #[test]
    fn last_seen_replies_give_a_time_or_nothing_per_user() {
        let reply = Reply::Array(Some(vec![bulk("1733400000123"), Reply::Bulk(None)]));
        assert_eq!(
            parse_last_seen(reply.clone(), 2),
            Some(vec![Some(1_733_400_000_123), None])
        );
        assert_eq!(parse_last_seen(reply, 3), None, "one value per user");
        for bad in [
            Reply::Integer(1),
            Reply::Array(Some(vec![bulk("soon")])),
            Reply::Array(Some(vec![bulk("-5")])),
        ] {
            assert_eq!(parse_last_seen(bad.clone(), 1), None, "{bad:?}");
        }
    }

    #[test]
    fn refresh_replies_say_whether_the_node_lapsed() {
        let reply = Reply::Array(Some(vec![Reply::Integer(3), Reply::Integer(1)]));
        assert_eq!(
            parse_beat(&reply),
            Some(Beat {
                nodes: 3,
                lapsed: true
            })
        );
        assert_eq!(parse_beat(&Reply::Integer(3)), None);
    }

    #[test]
    fn pushes_are_told_apart() {
        let message = Reply::Array(Some(vec![bulk("message"), bulk("c"), bulk("P\tx")]));
        assert_eq!(pushed_message(&message), Some(&b"P\tx"[..]));
        let confirmation =
            Reply::Array(Some(vec![bulk("subscribe"), bulk("c"), Reply::Integer(1)]));
        assert!(is_subscribed(&confirmation));
        assert_eq!(pushed_message(&confirmation), None);
        assert!(!is_subscribed(&message));
    }
}
