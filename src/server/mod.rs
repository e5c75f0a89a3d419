//! The event loop, I/O only: one thread, one `mio::Poll`, every connection's socket in a
//! generational slab, every deadline on one timer wheel. The application is the
//! [`Engine`]: the loop feeds it what the sockets say and carries out the effects it
//! returns (see `effects`).
//!
//! Each turn reads the clock once (`Instant::now()`), handles the readiness events, then the
//! connections whose per-turn budget ran out, then the expired timers, and finally ends the
//! connections doomed during the turn. The poll timeout is the wheel's next deadline.
//! Plain HTTP requests (the operator endpoints) are served by the same loop, and so, in a
//! cluster, are the node's two Redis connections (see `cluster`).
//!
//! Invariants:
//! - Sockets are registered edge-triggered for reading and writing once; every handler
//!   reads (or writes) until `WouldBlock`, or puts the connection on the `ready` list when
//!   its budget for the turn runs out.
//! - A token, a timer key or a queued ending names a connection by `{slot, generation}`;
//!   one whose connection is gone is skipped.
//! - Connections are never removed while a delivery is being written: an ending found then
//!   is queued on the outbox's `doomed` and carried out by [`Server::reap`], which also
//!   carries out the engine's effects until neither is left.

mod accept;
mod cluster;
mod conn;
mod delivery;
mod effects;
mod endpoints;
mod handle;
mod metered;
#[cfg(feature = "pusher")]
mod pusher_rest;
mod redis_link;
mod session;
mod shutdown;
mod sockopt;
mod spawn;
mod token_space;
mod trim;
mod users;
#[cfg(feature = "webhooks")]
mod webhook;
#[cfg(not(feature = "webhooks"))]
#[path = "no_webhook.rs"]
mod webhook;
#[cfg(feature = "webhooks")]
#[cfg_attr(not(feature = "webhook-tls"), path = "webhook_no_tls.rs")]
mod webhook_tls;
mod websocket;

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::{debug, info};
use mio::event::Event;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Registry};
use tungstenite::protocol::WebSocketConfig;

use crate::config::{Config, ConfigError};
use crate::engine::{self, millis as duration_ms, Engine, Handler};
use crate::ids::Slots;
use crate::metrics::Counters;
use crate::model::LeaveReason;
use crate::roster::ConnId;
use crate::wheel::{Millis, Wheel};

use conn::{Conn, Phase};
pub use handle::{Handle, HandleError};
pub use shutdown::Stop;
pub use spawn::Spawned;
use token_space::Target;
pub use token_space::TokenSpace;

/// Wheel resolution. Deadlines round up to it, so a silent peer is dropped at most this
/// late, well inside the protocol's slack of `max(1 s, interval / 8)`.
const TICK_MS: u64 = 100;

/// Messages read from one connection per turn before others get their share.
const MESSAGES_PER_TURN: usize = 32;

/// How long a connection we closed may take to close its side before it is dropped.
const LINGER_MS: Millis = 2_000;

/// Pending connections the kernel may queue before the loop accepts them. A reconnect storm
/// (every client of a network that blinked) must not see SYNs dropped and retried a second
/// later; the kernel caps it at `net.core.somaxconn` (4096 by default).
const LISTEN_BACKLOG: i32 = 4096;

/// Descriptors kept free for the listener, the poll and the process when the connection
/// limit is derived from the open-file limit.
const FD_MARGIN: usize = 32;

/// What a wheel entry is for. Each kind acts only in its own phase, so an entry outlived by
/// its phase (or its connection) does nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// A deadline the engine armed, given back to it when due.
    Engine(engine::Timer),
    /// The connection must finish its handshake by now.
    Handshake(ConnId),
    /// A closing connection has lingered long enough.
    Linger(ConnId),
    /// Accepting was paused after an error (such as running out of descriptors).
    AcceptRetry,
    /// Accepting is paused at the pending limit: the oldest handshake reaches its paused
    /// deadline (see `accept`).
    StalledHandshakes,
    /// A graceful shutdown has waited long enough.
    ShutdownDeadline,
    /// A burst may have settled: its freed memory goes back to the system (see `trim`).
    SettleCheck,
}

/// Why [`Server::bind`] failed.
#[derive(Debug)]
pub enum BindError {
    /// The configuration is invalid.
    Config(ConfigError),
    /// The address could not be bound (taken, not local, not permitted).
    Listen {
        /// The address asked for.
        address: SocketAddr,
        /// What the system said.
        error: io::Error,
    },
    /// The poll could not be created.
    Poll(io::Error),
    /// The cluster's Redis host name could not be resolved.
    Cluster(String),
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BindError::Config(error) => write!(f, "invalid configuration: {error}"),
            BindError::Listen { address, error } => {
                write!(f, "cannot listen on {address}: {error}")
            }
            BindError::Poll(error) => write!(f, "cannot create the event poll: {error}"),
            BindError::Cluster(error) => write!(f, "cluster: {error}"),
        }
    }
}

impl std::error::Error for BindError {}

/// A bound presence server. [`Server::run`] drives it on the calling thread; a host with
/// its own `mio::Poll` drives it with [`Server::handle_event`] and [`Server::handle_timeout`]
/// instead (see [`Server::bind_on`]).
pub struct Server {
    config: Config,
    /// The server's own poll; `None` when it runs on a host's.
    poll: Option<Poll>,
    /// Where its sockets are registered (its own poll's, or the host's).
    poll_registry: Registry,
    tokens: TokenSpace,
    listener: TcpListener,
    local_addr: SocketAddr,
    conns: Slots<Conn>,
    /// The application: sessions, presence, commands, limits, the cluster's state.
    engine: Engine,
    /// The engine's effects being carried out (kept to reuse its allocation).
    effects: Vec<engine::Effect>,
    wheel: Wheel<Timer>,
    origin: Instant,
    /// The latest loop time seen (the `now` of the last turn), for [`Server::next_deadline`].
    last_now: Millis,
    ws_config: WebSocketConfig,
    max_connections: usize,
    /// Connections whose per-turn budget ran out with input possibly left unread.
    ready: Vec<ConnId>,
    /// Connections with messages queued this turn and endings decided during it.
    outbox: delivery::Outbox,
    /// Connections still in their request (phase `Handshake`).
    pending: usize,
    trimmer: trim::Trimmer,
    /// True while accepting is paused after an accept error.
    accept_paused: bool,
    /// Since when accepting is paused at `--max-pending-handshakes` (see `accept`).
    full_since: Option<Millis>,
    /// Handshakes in the order they began, with their start (entries of ended ones are
    /// dropped lazily): the oldest are cut first while accepting is paused.
    handshakes: VecDeque<(ConnId, Millis)>,
    /// When the wheel wakes accepting to cut a stalled handshake, if it is to.
    stall_check: Option<Millis>,
    next_anonymous: u64,
    counters: Counters,
    /// Wall-clock time of [`Server::bind`] (the loop's time 0), for
    /// `rollcall_process_start_time_seconds` and token times.
    started: SystemTime,
    /// Set once a graceful shutdown has begun: its deadline.
    shutdown: Option<Millis>,
    /// Set when the loop should return.
    stop: Option<Stop>,
    #[cfg(feature = "signals")]
    signals: Option<signal_hook_mio::v1_0::Signals>,
    /// Requests from [`Handle`]s.
    inbox: handle::Inbox,
    /// This node's Redis connections (`--redis`), if any.
    cluster: Option<cluster::Links>,
    /// The webhook URLs' outbox and connections (`--webhook`), if any.
    webhooks: Option<webhook::Webhooks>,
    /// Status requests waiting for Redis's last-seen times (see `users`).
    parked: users::Parked,
}

impl Server {
    /// Validates `config`, binds its address and prepares its own poll; [`Server::run`]
    /// drives it.
    pub fn bind(config: Config) -> Result<Server, BindError> {
        let poll = Poll::new().map_err(BindError::Poll)?;
        let registry = poll.registry().try_clone().map_err(BindError::Poll)?;
        Server::bind_with(config, Some(poll), registry, TokenSpace::default())
    }

    /// Validates `config` and binds its address on a host's poll: the server registers its
    /// sockets on `registry` with tokens from `tokens` only. The host forwards the events
    /// whose token [`TokenSpace::contains`] to [`Server::handle_event`], calls
    /// [`Server::handle_timeout`] after each poll, and sleeps no longer than
    /// [`Server::next_deadline`].
    pub fn bind_on(
        config: Config,
        registry: &Registry,
        tokens: TokenSpace,
    ) -> Result<Server, BindError> {
        let registry = registry.try_clone().map_err(BindError::Poll)?;
        Server::bind_with(config, None, registry, tokens)
    }

    fn bind_with(
        config: Config,
        poll: Option<Poll>,
        poll_registry: Registry,
        tokens: TokenSpace,
    ) -> Result<Server, BindError> {
        config.validate().map_err(BindError::Config)?;
        let address = config.listen;
        let mut listener = listen(address, config.reuse_port, config.heartbeat_timeout)
            .map_err(|error| BindError::Listen { address, error })?;
        let local_addr = listener
            .local_addr()
            .map_err(|error| BindError::Listen { address, error })?;
        let inbox = handle::Inbox::new(&poll_registry, tokens.waker()).map_err(BindError::Poll)?;
        poll_registry
            .register(&mut listener, tokens.listener(), Interest::READABLE)
            .map_err(BindError::Poll)?;
        // Output never waits in tungstenite: it goes straight to the connection's own queue
        // (see `metered`), so only the input side is configured here.
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(config.read_buffer_size)
            .write_buffer_size(0)
            .max_message_size(Some(config.max_message_size))
            .max_frame_size(Some(config.max_message_size));
        let max_connections = config
            .max_connections
            .unwrap_or_else(connection_limit_from_fds);
        let (session, links) = match cluster::node_from_config(&config) {
            Ok(Some((session, links))) => (Some(session), Some(links)),
            Ok(None) => (None, None),
            Err(error) => return Err(BindError::Cluster(error.0)),
        };
        // The loop's time 0, on both clocks: the only wall-clock reading (token times).
        let origin = Instant::now();
        let started = SystemTime::now();
        let unix_origin_ms = started.duration_since(UNIX_EPOCH).map_or(0, duration_ms);
        let webhooks =
            webhook::Webhooks::from_config(&config, unix_origin_ms).map_err(BindError::Config)?;
        let engine = Engine::new(&config, unix_origin_ms, random_seed(), session);
        let mut server = Server {
            poll,
            poll_registry,
            tokens,
            listener,
            local_addr,
            conns: Slots::default(),
            engine,
            effects: Vec::new(),
            wheel: Wheel::new(TICK_MS, 0),
            origin,
            last_now: 0,
            ws_config,
            max_connections,
            ready: Vec::new(),
            outbox: delivery::Outbox::new(config.max_backlog),
            pending: 0,
            trimmer: trim::Trimmer::default(),
            accept_paused: false,
            full_since: None,
            handshakes: VecDeque::new(),
            stall_check: None,
            next_anonymous: 0,
            counters: Counters::default(),
            started,
            shutdown: None,
            stop: None,
            #[cfg(feature = "signals")]
            signals: None,
            inbox,
            cluster: links,
            webhooks,
            parked: users::Parked::new(),
            config,
        };
        // The engine's first deadlines (a cluster's first look at Redis) go on the wheel.
        server.carry_out(0);
        Ok(server)
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The counters so far, with the byte totals filled in.
    fn counters_now(&self) -> Counters {
        let mut counters = self.counters.clone();
        counters.messages_sent += self.outbox.sent();
        counters.bytes_received = self.outbox.traffic.received();
        counters.bytes_sent = self.outbox.traffic.sent();
        if let Some(since) = self.full_since {
            counters.accept_paused_ms += self.last_now.saturating_sub(since);
        }
        counters
    }

    /// The connection limit in force.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// Like [`Server::run`], telling `handler` of connection requests, presence changes and
    /// publications (see [`Handler`]).
    pub fn run_with(&mut self, handler: impl Handler + 'static) -> io::Result<Stop> {
        self.set_handler(handler);
        self.run()
    }

    /// Installs `handler` for a host-driven server (or before [`Server::run`]).
    pub fn set_handler(&mut self, handler: impl Handler + 'static) {
        self.engine.set_handler(Box::new(handler));
    }

    /// Runs the event loop on this thread until a shutdown completes ([`Stop`]), or the
    /// poll fails. A server bound on a host's poll ([`Server::bind_on`]) cannot run: its
    /// host drives it.
    pub fn run(&mut self) -> io::Result<Stop> {
        let Some(mut poll) = self.poll.take() else {
            return Err(io::Error::other(
                "this server is driven by its host's poll (Server::bind_on)",
            ));
        };
        info!("listening on {}", self.local_addr);
        self.inbox.enter();
        let mut events = Events::with_capacity(1024);
        let stop = loop {
            match poll.poll(&mut events, self.poll_timeout(Instant::now())) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(e),
            }
            let now = self.millis(Instant::now());
            for event in events.iter() {
                self.on_event(event, now);
            }
            self.end_turn(now);
            if let Some(stop) = self.stop.take() {
                break Ok(stop);
            }
        };
        self.poll = Some(poll);
        self.inbox.close();
        stop
    }

    /// Host-driven: handles one readiness event of this server's ([`TokenSpace::contains`]
    /// its token; others are ignored) at `now`. Call [`Server::handle_timeout`] once the
    /// poll's events are handled.
    pub fn handle_event(&mut self, event: &Event, now: Instant) {
        let now = self.millis(now);
        self.inbox.enter();
        self.on_event(event, now);
    }

    /// Host-driven: runs the deadlines due at `now` and finishes the turn (writes queued
    /// output, ends connections). Call it after every poll, events or not. Returns `Some`
    /// once a shutdown has completed: the host may then drop the server.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Stop> {
        let now = self.millis(now);
        self.inbox.enter();
        self.end_turn(now);
        let stop = self.stop.take();
        if stop.is_some() {
            self.inbox.close();
        }
        stop
    }

    /// Host-driven: when [`Server::handle_timeout`] should run next at the latest (the
    /// host's poll timeout); `None` when nothing is scheduled. It reads no clock: the instant
    /// is on the time line of the `now`s the host passed in (a deadline already due, or work
    /// left over from the last turn, gives an instant at or before the last `now`).
    pub fn next_deadline(&self) -> Option<Instant> {
        let hooks = self
            .webhooks
            .as_ref()
            .and_then(webhook::Webhooks::next_deadline);
        let at = if self.ready.is_empty() {
            match (self.wheel.next_deadline(), hooks) {
                (Some(wheel), Some(hooks)) => wheel.min(hooks),
                (wheel, hooks) => wheel.or(hooks)?,
            }
        } else {
            self.last_now
        };
        Some(self.origin + Duration::from_millis(at))
    }

    /// The block of tokens this server uses.
    pub fn tokens(&self) -> TokenSpace {
        self.tokens
    }

    fn on_event(&mut self, event: &Event, now: Millis) {
        match self.tokens.classify(event.token()) {
            Some(Target::Listener) => self.accept(now),
            Some(Target::Signals) => self.on_signals(now),
            Some(Target::Waker) => self.on_requests(now),
            Some(Target::RedisCommands | Target::RedisNotes) => self.on_redis(now),
            Some(Target::Webhook(url)) => self.on_webhook(url, now),
            Some(Target::Connection { slot, generation }) => {
                if let Some(id) = self.conns.key_in_slot(slot, generation) {
                    self.drive(id, Readiness::of(event), now);
                }
            }
            None => {}
        }
        self.reap(now);
    }

    /// The end of a turn at `now`: connections with budgeted work, due deadlines, queued
    /// output, endings.
    fn end_turn(&mut self, now: Millis) {
        for id in std::mem::take(&mut self.ready) {
            self.drive(id, Readiness::INPUT, now);
            self.reap(now);
        }
        self.expire_timers(now);
        self.reap(now);
        self.resume_accept(now);
        // Endings found while writing may queue more (their leave events): until quiet.
        while !self.outbox.queued.is_empty() {
            self.flush_queued();
            self.reap(now);
        }
        // What the turn told the cluster leaves in one write.
        self.cluster_flush(now);
        // The turn's webhook events join their queues; what is due is posted.
        self.webhooks_turn(now);
        self.check_drained();
        if let Some(at) = self.trimmer.turn_ended(self.activity(), now) {
            self.wheel.insert(Timer::SettleCheck, at);
        }
    }

    /// Connections accepted and bytes sent so far (what makes a burst, see `trim`).
    fn activity(&self) -> trim::Activity {
        trim::Activity {
            accepted: self.counters.accepted,
            sent: self.outbox.traffic.sent(),
        }
    }

    /// Gives a burst's freed memory back once activity settled, else looks again later.
    fn settle_check(&mut self, now: Millis) {
        match self
            .trimmer
            .settle_check(self.conns.len(), self.activity(), now)
        {
            Ok(()) => {
                debug!("a burst settled: free memory goes back to the system");
                trim::release_free_memory();
            }
            Err(at) => self.wheel.insert(Timer::SettleCheck, at),
        }
    }

    /// How long the poll may sleep: until the next deadline, or not at all when some
    /// connection still has budgeted work.
    fn poll_timeout(&mut self, now: Instant) -> Option<Duration> {
        let deadline = self.next_deadline()?;
        Some(deadline.saturating_duration_since(now))
    }

    /// The loop's time for `now` (milliseconds since [`Server::bind`]); remembered as the
    /// latest time the loop has seen.
    fn millis(&mut self, now: Instant) -> Millis {
        let now = duration_ms(now.saturating_duration_since(self.origin));
        self.last_now = self.last_now.max(now);
        now
    }

    /// Does whatever the connection's phase allows after a readiness event.
    fn drive(&mut self, id: ConnId, readiness: Readiness, now: Millis) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        match &mut conn.phase {
            Phase::Handshake { .. } if readiness.input => {
                self.read_request(id, readiness.end_of_stream, now)
            }
            // Room to write, nothing to read: a request has nothing to write yet, and an
            // open WebSocket only writes its queue (a sleeping one stays asleep).
            Phase::Handshake { .. } => {}
            Phase::Open(ws) if !readiness.input => self.outbox.flush(ws, id),
            Phase::Responding { .. } => self.write_response(id, now),
            Phase::Open(_) => self.drive_open(id, now),
            Phase::Closing(stream) => {
                if conn::drain(stream, &self.outbox.traffic) {
                    self.remove(id);
                }
            }
            Phase::Gone => self.broken_invariant(id, "a phase transition was left incomplete", now),
        }
    }

    fn expire_timers(&mut self, now: Millis) {
        let mut fired = Vec::new();
        self.wheel.expire(now, &mut fired);
        for timer in fired {
            match timer {
                Timer::Engine(timer) => self.engine.on_timer(timer, now),
                Timer::Handshake(id) => self.handshake_deadline(id, now),
                Timer::Linger(id) => {
                    if matches!(
                        self.conns.get(id),
                        Some(Conn {
                            phase: Phase::Closing(_),
                            ..
                        })
                    ) {
                        self.remove(id);
                    }
                }
                Timer::AcceptRetry => self.accept(now),
                Timer::StalledHandshakes => {
                    self.stall_check = None;
                    if self.full_since.is_some() {
                        self.accept(now);
                    }
                }
                Timer::ShutdownDeadline => self.shutdown_deadline(),
                Timer::SettleCheck => self.settle_check(now),
            }
            self.reap(now);
        }
    }

    /// Ends a connection at once, for a reason the socket found (the peer closed, failed or
    /// could not keep up): its presence leaves, its socket is closed.
    fn end(&mut self, id: ConnId, reason: LeaveReason, now: Millis) {
        if let Some(reason) = self.engine.end(id, reason, now) {
            self.counters
                .closed(crate::metrics::Ending::WebSocket(reason));
        }
        if self.conns.get(id).is_some() {
            debug!("conn=#{id} ended: {reason}");
            self.remove(id);
        }
    }

    /// A broken invariant found on one connection's path: a bug, loud in debug builds; in
    /// release (which aborts on panic) it ends that connection only, never the others.
    fn broken_invariant(&mut self, id: ConnId, what: &str, now: Millis) {
        debug_assert!(false, "conn=#{id}: {what}");
        log::error!("conn=#{id}: {what} (a bug); the connection is dropped");
        let ending = match self.engine.end(id, LeaveReason::Error, now) {
            Some(reason) => crate::metrics::Ending::WebSocket(reason),
            None => crate::metrics::Ending::Refused,
        };
        self.counters.closed(ending);
        self.remove(id);
    }

    /// Carries out the engine's effects and the endings queued during the turn (each may
    /// bring more of the other) until none is left.
    fn reap(&mut self, now: Millis) {
        loop {
            self.carry_out(now);
            let Some((id, reason)) = self.outbox.doomed.pop() else {
                return;
            };
            self.end(id, reason, now);
        }
    }

    /// Drops the connection and closes its socket (closing the descriptor also removes it
    /// from the poll). A paused accept resumes at once: a descriptor just came free.
    fn remove(&mut self, id: ConnId) {
        let Some(conn) = self.conns.remove(id) else {
            return;
        };
        if let Phase::Handshake { .. } = conn.phase {
            self.pending -= 1;
        }
        if self.trimmer.shrank(self.conns.len(), self.activity()) {
            trim::release_free_memory();
        }
        if self.accept_paused {
            self.wheel.insert(Timer::AcceptRetry, 0);
        }
    }
}

/// Binds a listener with a backlog of [`LISTEN_BACKLOG`] (mio, like std, asks for 128) and,
/// with `reuse_port`, `SO_REUSEPORT`, so that several processes share the address and the
/// kernel spreads new connections over them.
fn listen(
    address: SocketAddr,
    reuse_port: bool,
    heartbeat_timeout: Duration,
) -> io::Result<TcpListener> {
    let listener = if reuse_port {
        sockopt::bind_reusing_port(address)?
    } else {
        std::net::TcpListener::bind(address)?
    };
    sockopt::tune_listener(&listener, heartbeat_timeout);
    listener.set_nonblocking(true)?;
    // Calling listen(2) again on a listening socket only changes its backlog.
    // SAFETY: the descriptor is the listener's own, open for the duration of the call.
    if unsafe { libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(TcpListener::from_std(listener))
}

/// What a connection's event says there is to do.
#[derive(Debug, Clone, Copy)]
struct Readiness {
    /// Something to read: bytes, the end of the stream, or an error to collect.
    input: bool,
    /// The peer's end of stream is among it.
    end_of_stream: bool,
}

impl Readiness {
    /// Read whatever is there (a connection called back for its remaining budget).
    const INPUT: Readiness = Readiness {
        input: true,
        end_of_stream: false,
    };

    fn of(event: &Event) -> Readiness {
        let end_of_stream = event.is_read_closed() || event.is_error();
        Readiness {
            input: event.is_readable() || end_of_stream,
            end_of_stream,
        }
    }
}

/// The open-file soft limit minus [`FD_MARGIN`] (at least 1).
fn connection_limit_from_fds() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes into the struct we pass.
    let status = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if status != 0 || limit.rlim_cur == libc::RLIM_INFINITY {
        return 1 << 20;
    }
    usize::try_from(limit.rlim_cur)
        .unwrap_or(usize::MAX)
        .saturating_sub(FD_MARGIN)
        .max(1)
}

/// 64 random bits: the standard library's randomly seeded hasher, mixed with the process
/// id and the time (node ids, socket ids; nothing that needs a cryptographic generator).
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    std::process::id().hash(&mut hasher);
    SystemTime::now().hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    /// A wheel entry holds a `Timer`: 12 bytes keep it at 16 (see `wheel`), one per idle
    /// connection.
    #[test]
    fn a_timer_is_twelve_bytes() {
        assert_eq!(std::mem::size_of::<super::Timer>(), 12);
    }
}
