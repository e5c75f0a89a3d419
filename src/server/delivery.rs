//! Delivery: one encoded message written to many connections — presence events to a
//! channel's `all` subscribers and watchers, counts to its `count` subscribers and watchers,
//! publications to every subscriber — and the write-error bookkeeping they share.
//!
//! Messages are queued in each connection's tungstenite buffer and written when the turn
//! ends ([`Server::flush_queued`]): several messages for one connection in one turn (a burst
//! of publications, a join with its state) then cost one system call, not one each.
//!
//! Invariants: each message is encoded once and the same bytes go to every recipient; a
//! recipient is written to at most once per message (a subscriber that also watches gets
//! one copy); a connection is on the `queued` list at most once; a recipient whose write fails is queued on `doomed`, never removed while the
//! roster's lists are walked; nothing presence-related is sent once shutdown has begun.

use std::io;

use log::debug;
use tungstenite::Utf8Bytes;

use super::conn::{Conn, Phase, Socket};
use super::handler::Presence;
use super::metered::QueueError;
use super::Server;
use crate::ids::Slots;
use crate::protocol::{event, EventsMode, Json, LeaveReason};
use crate::roster::{Announcement, Change, ChannelId, ConnId, Roster};

impl Server {
    /// Tells the channel's `all` subscribers (but `except`) and its watchers what changed.
    pub(super) fn announce(&mut self, announcement: Announcement) {
        let Announcement {
            channel,
            name,
            except,
            change,
        } = announcement;
        self.handler.on_presence(match &change {
            Change::Join { user, meta, .. } => Presence::Join {
                channel: &name,
                user,
                meta: meta.as_str(),
            },
            Change::Leave { user, reason, .. } => Presence::Leave {
                channel: &name,
                user,
                reason: *reason,
            },
            Change::Update { user, meta, .. } => Presence::Update {
                channel: &name,
                user,
                meta: meta.as_str(),
            },
        });
        if self.shutdown.is_some() {
            return;
        }
        let text = change_event(&name, &change);
        if starts_channel(&change) {
            self.tell_channel_anew(channel, &name, except, text);
        } else {
            self.tell_channel(channel, EventsMode::All, except, text);
        }
    }

    /// The first event of a channel (created, or created again after it emptied: its seq
    /// started again at 0) goes to its subscribers and its own watchers as it is, and to the
    /// watchers of every channel as a `state`, a new baseline for their §5 bookkeeping.
    fn tell_channel_anew(
        &mut self,
        channel: ChannelId,
        name: &str,
        except: Option<ConnId>,
        text: String,
    ) {
        let state = self.state_named(name, None);
        let audience = Audience {
            roster: &self.roster,
            watch_all: &self.watch_all,
            channel,
            mode: EventsMode::All,
            except,
        };
        let recipients = audience.subscribers().chain(audience.own_watchers());
        self.outbox.deliver(&mut self.conns, recipients, text);
        let recipients = audience.watchers_of_everything();
        self.outbox.deliver(&mut self.conns, recipients, state);
    }

    /// Tells the channel's `count` subscribers (but `except`) and its watchers its counts.
    pub(super) fn send_counts(&mut self, channel: ChannelId, except: Option<ConnId>) {
        let (Some(name), Some(counts)) = (self.roster.name(channel), self.channel_counts(channel))
        else {
            return;
        };
        if self.shutdown.is_some() {
            return;
        }
        let text = event::count(name, counts, None);
        self.tell_channel(channel, EventsMode::Count, except, text);
    }

    /// Sends `text` to the watchers of every channel (for a channel of other nodes that no
    /// local connection subscribes to or watches).
    pub(super) fn tell_everything_watchers(&mut self, text: String) {
        let recipients = self.watch_all.iter().copied();
        self.outbox.deliver(&mut self.conns, recipients, text);
    }

    /// Sends `text` to the channel's subscribers in `mode` (but `except`) and its watchers.
    fn tell_channel(
        &mut self,
        channel: ChannelId,
        mode: EventsMode,
        except: Option<ConnId>,
        text: String,
    ) {
        let audience = Audience {
            roster: &self.roster,
            watch_all: &self.watch_all,
            channel,
            mode,
            except,
        };
        let recipients = audience.subscribers().chain(audience.watchers());
        self.outbox.deliver(&mut self.conns, recipients, text);
    }

    /// Publishes a `message` to every connection in the channel, whatever its events mode,
    /// on this node and, in a cluster, on the others. Returns how many connections of this
    /// node it was queued to.
    pub(super) fn publish(
        &mut self,
        name: &str,
        from: Option<&str>,
        data: &Json,
        now: crate::wheel::Millis,
    ) -> usize {
        self.tell_cluster_publication(name, from, data, now);
        self.deliver_publication(name, from, data)
    }

    /// Delivers a publication to this node's connections in the channel. Returns how many
    /// connections it was queued to.
    pub(super) fn deliver_publication(
        &mut self,
        name: &str,
        from: Option<&str>,
        data: &Json,
    ) -> usize {
        self.handler.on_message(name, from, data.as_str());
        let Some(channel) = self.roster.find(name) else {
            return 0;
        };
        let text = event::message(name, from, data);
        let recipients = self.roster.subscribers(channel).map(|(conn, _)| conn);
        self.outbox.deliver(&mut self.conns, recipients, text)
    }

    /// Sends one message to one connection (queued on `doomed` if that fails).
    pub(super) fn send(&mut self, id: ConnId, text: String) {
        self.outbox
            .deliver(&mut self.conns, std::iter::once(id), text);
    }

    /// Writes what the turn queued, one system call per connection (the rest, if the socket
    /// is full, on its next writable event).
    pub(super) fn flush_queued(&mut self) {
        for id in std::mem::take(&mut self.outbox.queued) {
            if let Some(Conn {
                phase: Phase::Open(ws),
                queued,
                ..
            }) = self.conns.get_mut(id)
            {
                *queued = false;
                flush(ws, id, &mut self.outbox.doomed);
            }
        }
    }
}

/// The `join`, `leave` or `update` event telling `change` in channel `name`.
pub(super) fn change_event(name: &str, change: &Change) -> String {
    match change {
        Change::Join { user, meta, seq } => event::join(name, user, meta, *seq),
        Change::Leave { user, reason, seq } => event::leave(name, user, *reason, *seq),
        Change::Update { user, meta, seq } => event::update(name, user, meta, *seq),
    }
}

/// True for the first event of a channel: a join at seq 1 (a channel's seq starts at 0 and
/// only a join can come first).
pub(super) fn starts_channel(change: &Change) -> bool {
    matches!(change, Change::Join { seq: 1, .. })
}

/// Who hears a message of one channel meant for its subscribers in `mode`: those
/// subscribers and the watchers (of the channel, and of every channel), each once, but
/// `except`. A watcher also subscribed in `mode` hears it as a subscriber.
#[derive(Clone, Copy)]
struct Audience<'a> {
    roster: &'a Roster,
    watch_all: &'a [ConnId],
    channel: ChannelId,
    mode: EventsMode,
    except: Option<ConnId>,
}

impl<'a> Audience<'a> {
    /// The channel's subscribers in `mode`.
    fn subscribers(self) -> impl Iterator<Item = ConnId> + 'a {
        self.roster
            .subscribers(self.channel)
            .filter(move |&(conn, subscribed)| subscribed == self.mode && Some(conn) != self.except)
            .map(|(conn, _)| conn)
    }

    /// Every watcher who hears it: the channel's own, then those of every channel.
    fn watchers(self) -> impl Iterator<Item = ConnId> + 'a {
        self.own_watchers().chain(self.watchers_of_everything())
    }

    /// The channel's own watchers that do not watch every channel.
    fn own_watchers(self) -> impl Iterator<Item = ConnId> + 'a {
        self.roster
            .watchers(self.channel)
            .filter(move |watcher| !self.watch_all.contains(watcher))
            .filter(move |&watcher| self.hears_as_watcher(watcher))
    }

    /// The watchers of every channel.
    fn watchers_of_everything(self) -> impl Iterator<Item = ConnId> + 'a {
        self.watch_all
            .iter()
            .copied()
            .filter(move |&watcher| self.hears_as_watcher(watcher))
    }

    fn hears_as_watcher(self, watcher: ConnId) -> bool {
        Some(watcher) != self.except && self.roster.mode(self.channel, watcher) != Some(self.mode)
    }
}

/// What a turn owes its connections: the ones with messages queued (written when the turn
/// ends, one system call each) and the endings decided while connections could not be
/// removed (carried out by [`Server::reap`]). Every delivery goes through it.
///
/// Invariant: a connection is on `queued` at most once (its `Conn::queued` flag says so).
pub(super) struct Outbox {
    /// Connections with messages queued this turn.
    pub queued: Vec<ConnId>,
    /// Endings decided during the turn.
    pub doomed: Vec<(ConnId, LeaveReason)>,
    /// Unsent bytes a connection may hold before it is a slow consumer (`--max-backlog`).
    backlog: usize,
    /// Messages queued so far (`rollcall_messages_sent_total`, with the welcomes).
    sent: u64,
}

impl Outbox {
    /// An empty outbox for connections that may hold `backlog` unsent bytes.
    pub fn new(backlog: usize) -> Outbox {
        Outbox {
            queued: Vec::new(),
            doomed: Vec::new(),
            backlog,
            sent: 0,
        }
    }

    /// Messages queued by deliveries so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Queues `text` to each recipient and lists it on `queued` for the end of the turn; a
    /// recipient over its backlog is doomed as a slow consumer. Returns how many
    /// connections it was queued to.
    pub fn deliver(
        &mut self,
        conns: &mut Slots<Conn>,
        recipients: impl Iterator<Item = ConnId>,
        text: String,
    ) -> usize {
        let text = Utf8Bytes::from(text);
        let backlog = self.backlog;
        let mut delivered = 0;
        for id in recipients {
            let Some(Conn {
                phase: Phase::Open(ws),
                queued: is_queued,
                ..
            }) = conns.get_mut(id)
            else {
                continue;
            };
            // After our Close (shutdown) nothing more may be sent (RFC 6455 §5.5.1).
            if !ws.can_write() {
                continue;
            }
            delivered += 1;
            match ws.get_mut().queue_text(text.clone(), backlog) {
                Ok(()) => {}
                Err(QueueError::BacklogFull) => {
                    debug!("conn=#{id} has more than {backlog} bytes unsent: slow consumer");
                    self.doomed.push((id, LeaveReason::SlowConsumer));
                    continue;
                }
                Err(QueueError::Io(error)) => {
                    doom_on_write_error(id, &error, &mut self.doomed);
                    continue;
                }
            }
            if !*is_queued {
                *is_queued = true;
                self.queued.push(id);
            }
        }
        self.sent += delivered as u64;
        delivered
    }
}

/// Sends a heartbeat Ping (empty payload, RFC 6455 §5.5.2) at once; false when the
/// connection is closing and may send nothing more.
pub(super) fn send_ping(
    ws: &mut Socket,
    id: ConnId,
    doomed: &mut Vec<(ConnId, LeaveReason)>,
) -> bool {
    if !ws.can_write() {
        return false;
    }
    ws.get_mut().queue_ping();
    flush(ws, id, doomed);
    true
}

/// Moves what tungstenite holds (a Pong or Close reply) to the queue and writes the queue
/// to the socket as far as it takes it.
pub(super) fn flush(ws: &mut Socket, id: ConnId, doomed: &mut Vec<(ConnId, LeaveReason)>) {
    // Only an already-closed WebSocket refuses; then there is nothing of its own to move.
    let _ = ws.flush();
    if let Err(error) = ws.get_mut().send_queued() {
        doom_on_write_error(id, &error, doomed);
    }
}

/// A failed write ends the connection: `closed` when the peer reset it, else `error`.
fn doom_on_write_error(id: ConnId, error: &io::Error, doomed: &mut Vec<(ConnId, LeaveReason)>) {
    let reason = match error.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => LeaveReason::Closed,
        _ => LeaveReason::Error,
    };
    debug!("conn=#{id} write failed ({error}): {reason}");
    doomed.push((id, reason));
}
