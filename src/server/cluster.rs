//! Cluster mode in the loop: the node's two Redis connections, as sockets only.
//!
//! The engine (with the pure `cluster::session` inside) decides everything about Redis:
//! when to connect, what to send, what a reply means, when the node is live. This file opens
//! the connections when the engine asks ([`Effect::ClusterConnect`](crate::engine::Effect)),
//! hands it every complete reply and push, writes the commands it queued, and reports a
//! failed connection so that the engine falls back to local presence.
//!
//! Invariants: the loop never waits for Redis: commands are pipelined and written at the end
//! of the turn (or as replies are pumped); a failure of either connection drops both (the
//! session re-syncs everything this node holds on the next attempt).

use std::net::SocketAddr;

use super::redis_link::{Link, LinkError};
use super::Server;
use crate::cluster::resp::Reply;
use crate::cluster::session::Session;
use crate::wheel::Millis;

/// Something that arrived from Redis.
enum Incoming {
    /// A reply on the command connection.
    Reply(Reply),
    /// A push on the notes connection.
    Push(Reply),
}

/// This node's two Redis connections, while up.
pub(super) struct Links {
    /// Redis's address, resolved once at bind time.
    target: SocketAddr,
    commands: Option<Link>,
    notes: Option<Link>,
    /// Without the `cluster` feature there are no links (see `cluster::session::Session`).
    #[cfg(not(feature = "cluster"))]
    _never: std::convert::Infallible,
}

/// Why a cluster could not be set up at bind time.
#[derive(Debug)]
pub(super) struct Unresolvable(pub String);

impl Server {
    /// Opens both connections and tells the engine, which says what a new node says.
    pub(super) fn cluster_connect(&mut self, now: Millis) {
        let Some(links) = self.cluster.as_mut() else {
            return;
        };
        let opened = Link::connect(
            links.target,
            &self.poll_registry,
            self.tokens.redis_commands(),
        )
        .and_then(|commands| {
            Link::connect(links.target, &self.poll_registry, self.tokens.redis_notes())
                .map(|notes| (commands, notes))
        });
        match opened {
            Ok((commands, notes)) => {
                links.commands = Some(commands);
                links.notes = Some(notes);
                self.engine.cluster_connected(now);
                self.cluster_pump(now);
            }
            Err(error) => {
                let why = match self.engine.cluster_address() {
                    Some(address) => format!("cannot connect to {address}: {error}"),
                    None => format!("cannot connect: {error}"),
                };
                self.engine.cluster_fell(now, &why);
            }
        }
    }

    /// Drops both connections (the engine has fallen back to local presence).
    pub(super) fn cluster_disconnect(&mut self) {
        let Some(links) = self.cluster.as_mut() else {
            return;
        };
        for mut link in [links.commands.take(), links.notes.take()]
            .into_iter()
            .flatten()
        {
            link.deregister(&self.poll_registry);
        }
    }

    /// A readiness event on one of the Redis connections.
    pub(super) fn on_redis(&mut self, now: Millis) {
        self.cluster_pump(now);
    }

    /// Moves both connections as far as they go and hands every complete reply to the
    /// engine, until a round brings none.
    fn cluster_pump(&mut self, now: Millis) {
        loop {
            self.hand_over_commands();
            let Some(links) = self.cluster.as_mut() else {
                return;
            };
            let (Some(commands), Some(notes)) = (links.commands.as_mut(), links.notes.as_mut())
            else {
                return;
            };
            if let Err(error) = commands.pump().and_then(|()| notes.pump()) {
                self.engine.cluster_fell(now, &describe(&error));
                return;
            }
            let mut handled = false;
            while let Some(incoming) = self.next_cluster_reply(now) {
                handled = true;
                match incoming {
                    Incoming::Reply(reply) => self.engine.cluster_reply(reply, now),
                    Incoming::Push(push) => self.engine.cluster_push(push, now),
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
        let links = self.cluster.as_mut()?;
        let next = match links.commands.as_mut()?.next_reply() {
            Ok(Some(reply)) => Ok(Some(Incoming::Reply(reply))),
            Ok(None) => links
                .notes
                .as_mut()?
                .next_reply()
                .map(|push| push.map(Incoming::Push)),
            Err(error) => Err(error),
        };
        next.unwrap_or_else(|error| {
            self.engine.cluster_fell(now, &describe(&error));
            None
        })
    }

    /// Queues on the connections what the engine has for Redis (dropped while they are
    /// down: the session re-syncs on the next connection).
    fn hand_over_commands(&mut self) {
        let (commands, notes) = self.engine.cluster_commands();
        let Some(links) = self.cluster.as_mut() else {
            return;
        };
        if let Some(link) = links.commands.as_mut() {
            for command in &commands {
                link.send(command);
            }
        }
        if let Some(link) = links.notes.as_mut() {
            for command in &notes {
                link.send(command);
            }
        }
    }

    /// Writes the commands the turn queued (at its end: one write for all of them).
    pub(super) fn cluster_flush(&mut self, now: Millis) {
        self.hand_over_commands();
        let result = self
            .cluster
            .as_mut()
            .and_then(|links| links.commands.as_mut().map(Link::flush));
        if let Some(Err(error)) = result {
            self.engine.cluster_fell(now, &describe(&error));
            self.reap(now);
        }
    }
}

/// Makes the node's Redis session and its (closed) connections from the configuration, at
/// bind time, resolving Redis's host name once, now.
#[cfg(feature = "cluster")]
pub(super) fn node_from_config(
    config: &crate::Config,
) -> Result<Option<(Session, Links)>, Unresolvable> {
    use crate::cluster::Commands;
    use log::info;
    use std::net::ToSocketAddrs;

    let Some(address) = config.redis.clone() else {
        return Ok(None);
    };
    let node = config.node_id.clone().unwrap_or_else(random_node_id);
    info!("cluster: node {node} joining {address}");
    let target = (address.host.as_str(), address.port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addresses| addresses.next())
        .ok_or_else(|| Unresolvable(format!("cannot resolve the host of {address}")))?;
    let last_seen_ttl_ms = crate::engine::millis(config.last_seen_ttl);
    let commands = Commands::new(&node, address.db, last_seen_ttl_ms);
    let ttl_ms = crate::engine::millis(config.node_ttl);
    let links = Links {
        target,
        commands: None,
        notes: None,
    };
    Ok(Some((Session::new(address, commands, ttl_ms), links)))
}

/// Without the `cluster` feature: never a node (`Config::redis` was refused at start).
#[cfg(not(feature = "cluster"))]
pub(super) fn node_from_config(
    _: &crate::Config,
) -> Result<Option<(Session, Links)>, Unresolvable> {
    Ok(None)
}

/// A random node id.
#[cfg(feature = "cluster")]
fn random_node_id() -> String {
    format!("node-{:016x}", super::random_seed())
}

fn describe(error: &LinkError) -> String {
    format!("Redis connection lost ({error})")
}
