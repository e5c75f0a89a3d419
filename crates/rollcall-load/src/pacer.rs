//! When the next connection may start: `--rate` per second (0 = as fast as possible) and a
//! bound on connections in flight (started, not yet up or ended).
//!
//! Pure: time is a parameter. The bound on in-flight connects keeps "as fast as possible" from
//! overflowing the server's accept queue (its listen backlog; rollcall's is 128): a SYN
//! dropped there is retransmitted only after 1 s, which would measure the kernel's timer, not
//! the server.

use std::time::{Duration, Instant};

/// The opening schedule of one phase.
#[derive(Debug, Clone)]
pub struct Pacer {
    total: u64,
    started: u64,
    /// Connections per second; `None` for as fast as the in-flight bound allows.
    rate: Option<f64>,
    max_in_flight: u64,
    begin: Option<Instant>,
}

impl Pacer {
    /// A schedule for `total` connections.
    pub fn new(total: u64, rate: f64, max_in_flight: u64) -> Pacer {
        Pacer {
            total,
            started: 0,
            rate: (rate > 0.0).then_some(rate),
            max_in_flight: max_in_flight.max(1),
            begin: None,
        }
    }

    /// How many connections may start at `now`, with `in_flight` on their way; counts them
    /// as started.
    pub fn take(&mut self, now: Instant, in_flight: u64) -> u64 {
        let begin = *self.begin.get_or_insert(now);
        let mut allowed = self.total - self.started;
        allowed = allowed.min(self.max_in_flight.saturating_sub(in_flight));
        if let Some(rate) = self.rate {
            // The k-th connection (from 0) is due at begin + k / rate.
            let due = (now.duration_since(begin).as_secs_f64() * rate).floor() as u64 + 1;
            allowed = allowed.min(due.saturating_sub(self.started));
        }
        self.started += allowed;
        allowed
    }

    /// When the rate allows the next connection, if the rate is what holds it back.
    pub fn next_due(&self) -> Option<Instant> {
        let (rate, begin) = (self.rate?, self.begin?);
        if self.started >= self.total {
            return None;
        }
        Some(begin + Duration::from_secs_f64(self.started as f64 / rate))
    }

    /// Connections started so far.
    pub fn started(&self) -> u64 {
        self.started
    }

    /// Whether every connection has been started.
    pub fn done(&self) -> bool {
        self.started >= self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_rate_is_bounded_by_in_flight() {
        let t = Instant::now();
        let mut pacer = Pacer::new(1000, 0.0, 512);
        assert_eq!(pacer.take(t, 0), 512);
        assert_eq!(pacer.take(t, 512), 0);
        assert_eq!(pacer.take(t, 100), 412);
        assert_eq!(pacer.take(t, 0), 76);
        assert!(pacer.done());
        assert_eq!(pacer.next_due(), None);
    }

    #[test]
    fn a_rate_spreads_the_starts() {
        let t = Instant::now();
        let mut pacer = Pacer::new(100, 10.0, 512);
        assert_eq!(pacer.take(t, 0), 1);
        assert_eq!(pacer.next_due(), Some(t + Duration::from_millis(100)));
        assert_eq!(pacer.take(t + Duration::from_millis(99), 0), 0);
        assert_eq!(pacer.take(t + Duration::from_millis(350), 0), 3);
        assert_eq!(pacer.started(), 4);
    }
}
