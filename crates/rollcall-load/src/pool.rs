//! The event loop's half that owns sockets: a slab of [`Conn`]s registered with one mio
//! `Poll`, turned into timestamped [`Event`]s for the modes.
//!
//! Invariants:
//! - a connection is named by a [`ConnId`] (slab slot + generation), also inside its mio
//!   token, so an event or a call for a connection that ended finds nothing instead of the
//!   connection that reused the slot;
//! - every connection ends with exactly one [`What::Ended`] event, unless the mode itself
//!   [`Pool::abandon`]s it (then it knows);
//! - the pool reads the clock once per readiness event: the time stamped on an event is when
//!   its bytes were processed, not when the turn began (latencies would otherwise be short by
//!   the time the turn spent on the connections before).

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use tungstenite::Utf8Bytes;

use crate::conn::{Conn, Ending, Output, Purpose};
use crate::socket::{connect_from, Sources};
use crate::stats::Failure;
use crate::target::Target;

/// The token of the control input (a `--procs` child's stdin). Slot tokens never reach it:
/// generations stay below `u32::MAX`.
const CONTROL: Token = Token(usize::MAX);

/// A connection's name: slot and generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId {
    slot: u32,
    generation: u32,
}

impl ConnId {
    fn token(self) -> Token {
        Token(((self.generation as usize) << 32) | self.slot as usize)
    }

    fn from_token(token: Token) -> ConnId {
        ConnId {
            slot: token.0 as u32,
            generation: (token.0 >> 32) as u32,
        }
    }
}

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}.{}", self.slot, self.generation)
    }
}

/// What happened to a connection.
pub enum What {
    /// The `101` arrived.
    Upgraded,
    /// A text message arrived.
    Text(Utf8Bytes),
    /// The server pinged (and was answered).
    Ping,
    /// A one-shot HTTP request's response (an `Ended` follows).
    Response { status: u16, body: Vec<u8> },
    /// The connection is gone; its id is dead from now on.
    Ended(Ending),
    /// The control input is readable (or closed).
    Control,
}

/// One event: which connection (and the mode's tag for it), when, what.
pub struct Event {
    pub id: ConnId,
    pub tag: usize,
    pub at: Instant,
    pub what: What,
}

struct Slot {
    generation: u32,
    tag: usize,
    conn: Conn,
}

/// All connections of a run and the `Poll` they are registered with.
pub struct Pool {
    poll: Poll,
    events: Events,
    slots: Slab<Slot>,
    next_generation: u32,
    /// `--url`: where connections go unless the mode names another server.
    target: Target,
    sources: Sources,
    /// Events produced outside a poll (a connect that failed at once), delivered next poll.
    queued: Vec<Event>,
}

impl Pool {
    /// An empty pool for connections to `target` from `sources`.
    pub fn new(target: Target, sources: Sources) -> io::Result<Pool> {
        Ok(Pool {
            poll: Poll::new()?,
            events: Events::with_capacity(1024),
            slots: Slab::new(),
            next_generation: 0,
            target,
            sources,
            queued: Vec::new(),
        })
    }

    /// Starts a WebSocket connection to the pool's server (`path_and_query` is the request
    /// target); the mode's `tag` comes back with each of its events. A connect that fails at
    /// once is reported by the next poll.
    pub fn open_ws(&mut self, path_and_query: &str, tag: usize, now: Instant) -> ConnId {
        let (purpose, request) = upgrade(&self.target, path_and_query);
        let server = self.target.addr;
        self.open(purpose, request, server, tag, now)
    }

    /// [`Pool::open_ws`] to another server (another node of a cluster).
    pub fn open_ws_to(
        &mut self,
        target: &Target,
        path_and_query: &str,
        tag: usize,
        now: Instant,
    ) -> ConnId {
        let (purpose, request) = upgrade(target, path_and_query);
        self.open(purpose, request, target.addr, tag, now)
    }

    /// Sends one HTTP request on a new connection to the pool's server; its
    /// [`What::Response`] comes back.
    pub fn open_http(&mut self, request: Vec<u8>, tag: usize, now: Instant) -> ConnId {
        let server = self.target.addr;
        self.open(Purpose::Http, request, server, tag, now)
    }

    fn open(
        &mut self,
        purpose: Purpose,
        request: Vec<u8>,
        server: SocketAddr,
        tag: usize,
        now: Instant,
    ) -> ConnId {
        let generation = self.next_generation;
        self.next_generation = (self.next_generation + 1) % u32::MAX;
        let entry = self.slots.vacant_entry();
        let id = ConnId {
            slot: entry.key() as u32,
            generation,
        };
        let source = self.sources.next_source();
        let started = connect_from(source, server).and_then(|mut stream| {
            self.poll.registry().register(
                &mut stream,
                id.token(),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(stream)
        });
        match started {
            Ok(stream) => {
                entry.insert(Slot {
                    generation,
                    tag,
                    conn: Conn::new(stream, purpose, request),
                });
            }
            Err(error) => {
                log::debug!("conn={id}: connect from {source:?} failed: {error}");
                self.queued.push(Event {
                    id,
                    tag,
                    at: now,
                    what: What::Ended(Ending::Failed(Failure::from_io(&error))),
                });
            }
        }
        id
    }

    /// Sends a text message on an open connection (ignored for a dead id).
    pub fn send_text(&mut self, id: ConnId, text: &str, now: Instant) {
        if let Some(slot) = self.live(id) {
            let result = slot.conn.send_text(text);
            self.settle(id, result, now);
        }
    }

    /// Starts the close handshake of a connection (ignored for a dead id).
    pub fn close(&mut self, id: ConnId, now: Instant) {
        if let Some(slot) = self.live(id) {
            let result = slot.conn.close();
            self.settle(id, result, now);
        }
    }

    /// Drops a connection without an event (the mode has given up on it).
    pub fn abandon(&mut self, id: ConnId) {
        if self.live(id).is_some() {
            self.remove(id);
        }
    }

    /// Also reports readiness of `fd` (a pipe) as [`What::Control`] events.
    pub fn watch_control(&mut self, fd: RawFd) -> io::Result<()> {
        self.poll
            .registry()
            .register(&mut SourceFd(&fd), CONTROL, Interest::READABLE)
    }

    /// Waits at most `timeout` (`None`: until something happens) and appends what happened.
    pub fn poll(&mut self, timeout: Option<Duration>, out: &mut Vec<Event>) -> io::Result<()> {
        let timeout = if self.queued.is_empty() {
            timeout
        } else {
            Some(Duration::ZERO)
        };
        out.append(&mut self.queued);
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        let tokens: Vec<Token> = self.events.iter().map(|e| e.token()).collect();
        for token in tokens {
            let now = Instant::now();
            if token == CONTROL {
                out.push(Event {
                    id: ConnId {
                        slot: u32::MAX,
                        generation: u32::MAX,
                    },
                    tag: usize::MAX,
                    at: now,
                    what: What::Control,
                });
                continue;
            }
            let id = ConnId::from_token(token);
            // A stale token (the connection ended earlier in this turn) finds nothing.
            let Some(slot) = self.live(id) else { continue };
            let tag = slot.tag;
            let result = slot.conn.on_ready(&mut |output| {
                let what = match output {
                    Output::Upgraded => What::Upgraded,
                    Output::Text(text) => What::Text(text),
                    Output::Ping => What::Ping,
                    Output::Response { status, body } => What::Response { status, body },
                };
                out.push(Event {
                    id,
                    tag,
                    at: now,
                    what,
                });
            });
            if let Err(ending) = result {
                out.push(Event {
                    id,
                    tag,
                    at: now,
                    what: What::Ended(ending),
                });
                self.remove(id);
            }
        }
        out.append(&mut self.queued);
        Ok(())
    }

    /// Sends one HTTP request and runs the loop until its response, at most until `deadline`.
    /// Other connections' events are dropped: for when nothing else is going on.
    pub fn exchange(
        &mut self,
        request: Vec<u8>,
        deadline: Instant,
    ) -> Result<(u16, Vec<u8>), String> {
        let id = self.open_http(request, usize::MAX, Instant::now());
        let mut events = Vec::new();
        loop {
            let now = Instant::now();
            if now >= deadline {
                self.abandon(id);
                return Err("no HTTP response in time".into());
            }
            self.poll(Some(deadline - now), &mut events)
                .map_err(|e| format!("event loop failed: {e}"))?;
            for event in events.drain(..) {
                match event.what {
                    _ if event.id != id => {}
                    What::Response { status, body } => return Ok((status, body)),
                    What::Ended(ending) => return Err(format!("HTTP request failed: {ending:?}")),
                    _ => {}
                }
            }
        }
    }

    /// After a send or close: an ending is queued for the next poll.
    fn settle(&mut self, id: ConnId, result: Result<(), Ending>, now: Instant) {
        if let Err(ending) = result {
            let tag = self.slots[id.slot as usize].tag;
            self.queued.push(Event {
                id,
                tag,
                at: now,
                what: What::Ended(ending),
            });
            self.remove(id);
        }
    }

    fn live(&mut self, id: ConnId) -> Option<&mut Slot> {
        self.slots
            .get_mut(id.slot as usize)
            .filter(|slot| slot.generation == id.generation)
    }

    fn remove(&mut self, id: ConnId) {
        let mut slot = self.slots.remove(id.slot as usize);
        if let Some(stream) = slot.conn.stream() {
            // Deregistering before the drop closes the fd; an error here changes nothing.
            let _ = self.poll.registry().deregister(stream);
        }
    }
}

/// An upgrade request to `target` with a fresh key, and the purpose that checks its answer.
fn upgrade(target: &Target, path_and_query: &str) -> (Purpose, Vec<u8>) {
    let key = tungstenite::handshake::client::generate_key();
    let request = target.upgrade_request(path_and_query, &key);
    (Purpose::Upgrade { key }, request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_survive_the_token_round_trip() {
        let id = ConnId {
            slot: 17,
            generation: 4_000_000_000,
        };
        assert_eq!(ConnId::from_token(id.token()), id);
        assert_ne!(id.token(), CONTROL);
    }
}
