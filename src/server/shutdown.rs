//! Graceful shutdown: on the first SIGINT or SIGTERM the server stops admitting WebSockets,
//! says `503` on `/healthz`, sends every open WebSocket a Close 1001 (going away, RFC 6455
//! §7.4.1), and returns from [`Server::run`] once every peer has answered or the shutdown
//! timeout has passed. A second signal returns at once.
//!
//! Invariants: no presence event is sent once the shutdown has begun (everyone is leaving;
//! announcing each departure to the others would cost N² messages for nothing); every
//! WebSocket that ends during it ends with reason `shutdown`.

use log::info;

use super::{Server, Timer};
use crate::wheel::Millis;

/// How [`Server::run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Every peer answered its Close, or the shutdown timeout passed.
    Graceful,
    /// A second signal arrived during the graceful shutdown.
    Forced,
}

impl Server {
    /// Makes SIGINT and SIGTERM start a graceful shutdown (and a second one force it). The
    /// signal handlers are process-wide, so a host that handles signals itself should not
    /// call this.
    #[cfg(feature = "signals")]
    pub fn shutdown_on_signals(&mut self) -> std::io::Result<()> {
        use mio::Interest;
        let mut signals = signal_hook_mio::v1_0::Signals::new([libc::SIGINT, libc::SIGTERM])?;
        self.poll_registry
            .register(&mut signals, self.tokens.signals(), Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    /// The signal pipe is readable: start the shutdown, or force it on a second signal.
    pub(super) fn on_signals(&mut self, now: Millis) {
        #[cfg(feature = "signals")]
        {
            let received = match &mut self.signals {
                Some(signals) => signals.pending().count(),
                None => 0,
            };
            for _ in 0..received {
                if self.shutdown.is_some() {
                    log::warn!("second signal: exiting without waiting for peers");
                    self.stop = Some(Stop::Forced);
                } else {
                    self.begin_shutdown(now);
                }
            }
        }
        #[cfg(not(feature = "signals"))]
        let _ = now;
    }

    /// Starts a graceful shutdown at `now`, as the first SIGINT or SIGTERM does:
    /// [`Server::run`] (or the next one), or the host's [`Server::handle_timeout`], reports
    /// [`Stop::Graceful`] once every peer has answered its Close or the shutdown timeout has
    /// passed. For hosts that handle signals themselves; the host's clock decides `now`.
    pub fn shutdown(&mut self, now: std::time::Instant) {
        if self.shutdown.is_none() {
            let now = self.millis(now);
            self.begin_shutdown(now);
        }
    }

    /// Starts the graceful shutdown at `now`: the engine tells every open connection to
    /// go away (and the cluster goodbye); the loop returns once they have answered.
    pub(super) fn begin_shutdown(&mut self, now: Millis) {
        let timeout = super::duration_ms(self.config.shutdown_timeout);
        info!(
            "shutting down: closing {} connections, waiting up to {timeout} ms",
            self.engine.open_connections()
        );
        self.shutdown = Some(now + timeout);
        self.wheel.insert(Timer::ShutdownDeadline, now + timeout);
        self.engine.begin_shutdown(now);
        self.reap(now);
        self.check_drained();
    }

    /// The shutdown timeout passed: return with whatever peers have not answered.
    pub(super) fn shutdown_deadline(&mut self) {
        if self.shutdown.is_some() && self.stop.is_none() {
            let waiting = self.conns.iter().filter(|(_, conn)| conn.is_open()).count();
            info!("shutdown timeout: {waiting} peers did not answer their Close");
            self.stop = Some(Stop::Graceful);
        }
    }

    /// Returns from the loop once a shutdown has no open WebSocket left.
    pub(super) fn check_drained(&mut self) {
        if self.shutdown.is_some()
            && self.stop.is_none()
            && !self.conns.iter().any(|(_, conn)| conn.is_open())
            && !self.engine.saying_goodbye()
        {
            info!("shutdown complete");
            self.stop = Some(Stop::Graceful);
        }
    }
}
