//! Liveness of one open connection: when to ping it and when to give up on it.
//!
//! The server keeps one wheel entry per connection. A received frame only stores
//! `last_seen` (no wheel operation); when the entry fires, [`Liveness::on_deadline`] decides
//! what the silence so far means and when the entry should fire next (lazy re-arm).
//!
//! Invariants, with `interval < timeout`:
//! - a Ping is sent once per silence, after `interval` without a received frame; an answer
//!   starts a new silence, so an answering peer is pinged about once per interval;
//! - the connection is given up no earlier than `timeout` after its last frame, and no later
//!   than `timeout` plus one wheel tick.

use crate::wheel::Millis;

/// Heartbeat settings in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// Silence after which the server sends a Ping.
    pub interval: Millis,
    /// Silence after which the peer is considered gone.
    pub timeout: Millis,
}

/// Per-connection liveness state: 8 bytes of the connection's footprint, the time the peer
/// was last heard from, with the top bit saying a Ping went out since (loop time cannot reach
/// it: 2^63 ms is 292 million years).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    last_seen_and_pinged: u64,
}

/// The bit of [`Liveness`] that says a Ping went out since the peer was last heard from.
const PINGED: u64 = 1 << 63;

/// What the silence observed at a wheel deadline calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Heard from recently: check again at the given time.
    Recheck(Millis),
    /// Silent for the interval: send a Ping, then check again at the given time.
    Ping(Millis),
    /// Silent for the timeout: the peer is gone.
    Expired,
}

impl Liveness {
    /// A connection last heard from at `now`.
    pub fn new(now: Millis) -> Self {
        Liveness {
            last_seen_and_pinged: now & !PINGED,
        }
    }

    /// Records that a frame arrived at `now`. Costs one store, never a wheel operation.
    pub fn heard(&mut self, now: Millis) {
        *self = Liveness::new(now);
    }

    /// When the last frame arrived.
    pub fn last_seen(&self) -> Millis {
        self.last_seen_and_pinged & !PINGED
    }

    /// True when a Ping went out since the last frame arrived.
    fn pinged(&self) -> bool {
        self.last_seen_and_pinged & PINGED != 0
    }

    /// The first deadline to put on the wheel for a connection that just opened.
    pub fn first_deadline(&self, heartbeat: Heartbeat) -> Millis {
        self.last_seen() + heartbeat.interval
    }

    /// Decides, at a wheel deadline `now`, what the silence since `last_seen` calls for.
    pub fn on_deadline(&mut self, now: Millis, heartbeat: Heartbeat) -> Verdict {
        let last_seen = self.last_seen();
        let silence = now.saturating_sub(last_seen);
        if silence >= heartbeat.timeout {
            Verdict::Expired
        } else if silence >= heartbeat.interval && !self.pinged() {
            self.last_seen_and_pinged |= PINGED;
            // Look again one interval on, so that a prompt Pong restarts the cycle then,
            // but no later than the timeout.
            Verdict::Ping((now + heartbeat.interval).min(last_seen + heartbeat.timeout))
        } else if self.pinged() {
            Verdict::Recheck(last_seen + heartbeat.timeout)
        } else {
            Verdict::Recheck(last_seen + heartbeat.interval)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wheel::Wheel;

    const HEARTBEAT: Heartbeat = Heartbeat {
        interval: 30_000,
        timeout: 60_000,
    };

    #[test]
    fn silent_peer_is_pinged_then_expired() {
        let mut liveness = Liveness::new(1_000);
        assert_eq!(liveness.first_deadline(HEARTBEAT), 31_000);
        assert_eq!(
            liveness.on_deadline(31_000, HEARTBEAT),
            Verdict::Ping(61_000)
        );
        assert_eq!(liveness.on_deadline(61_000, HEARTBEAT), Verdict::Expired);
    }

    #[test]
    fn activity_moves_the_deadline_lazily() {
        let mut liveness = Liveness::new(0);
        liveness.heard(20_000);
        assert_eq!(
            liveness.on_deadline(30_000, HEARTBEAT),
            Verdict::Recheck(50_000)
        );
        assert_eq!(
            liveness.on_deadline(50_000, HEARTBEAT),
            Verdict::Ping(80_000)
        );
    }

    #[test]
    fn a_pong_after_the_ping_restarts_the_cycle() {
        let mut liveness = Liveness::new(0);
        assert_eq!(
            liveness.on_deadline(30_000, HEARTBEAT),
            Verdict::Ping(60_000)
        );
        liveness.heard(30_050);
        assert_eq!(
            liveness.on_deadline(60_000, HEARTBEAT),
            Verdict::Recheck(60_050)
        );
        assert_eq!(
            liveness.on_deadline(60_050, HEARTBEAT),
            Verdict::Ping(90_050)
        );
    }

    #[test]
    fn with_a_long_timeout_an_answering_peer_is_pinged_every_interval() {
        let heartbeat = Heartbeat {
            interval: 200,
            timeout: 5_000,
        };
        let mut liveness = Liveness::new(0);
        assert_eq!(liveness.on_deadline(200, heartbeat), Verdict::Ping(400));
        liveness.heard(210);
        assert_eq!(liveness.on_deadline(400, heartbeat), Verdict::Recheck(410));
        assert_eq!(liveness.on_deadline(410, heartbeat), Verdict::Ping(610));
        assert_eq!(
            liveness.on_deadline(610, heartbeat),
            Verdict::Recheck(5_210)
        );
        assert_eq!(liveness.on_deadline(5_210, heartbeat), Verdict::Expired);
    }

    #[test]
    fn early_wakeups_do_not_ping_twice() {
        let mut liveness = Liveness::new(0);
        assert_eq!(
            liveness.on_deadline(30_000, HEARTBEAT),
            Verdict::Ping(60_000)
        );
        assert_eq!(
            liveness.on_deadline(45_000, HEARTBEAT),
            Verdict::Recheck(60_000)
        );
    }

    /// Drives a silent connection through the wheel with virtual time and checks the drop
    /// bound the protocol promises: `timeout + max(1s, interval/8)` after the last frame.
    #[test]
    fn silent_peer_dropped_within_the_bound_on_the_wheel() {
        let heartbeat = Heartbeat {
            interval: 1_000,
            timeout: 2_500,
        };
        let mut wheel = Wheel::new(100, 0);
        let mut liveness = Liveness::new(37);
        wheel.insert((), liveness.first_deadline(heartbeat));
        let mut pings = 0;
        let mut now = 0;
        let dropped_at = loop {
            now += 10;
            let mut fired = Vec::new();
            wheel.expire(now, &mut fired);
            if fired.is_empty() {
                continue;
            }
            match liveness.on_deadline(now, heartbeat) {
                Verdict::Expired => break now,
                Verdict::Ping(next) => {
                    pings += 1;
                    wheel.insert((), next);
                }
                Verdict::Recheck(next) => wheel.insert((), next),
            }
        };
        assert_eq!(pings, 1);
        assert!(dropped_at >= 37 + 2_500, "dropped early at {dropped_at}");
        assert!(
            dropped_at <= 37 + 2_500 + 1_000,
            "dropped late at {dropped_at}"
        );
    }
}
