//! Giving memory back to the system after a crowd arrives or leaves.
//!
//! glibc's allocator keeps freed memory for reuse, and the process stays at its high-water
//! mark. Two kinds of burst raise the mark far above what an idle crowd needs:
//! - a crowd that leaves: the records of thousands of connections are freed;
//! - a crowd that arrives or hears a lot at once (a reconnect storm into rooms with
//!   `events=all`): the output queued while clients were slower than the server is freed once
//!   it drains. 15,000 clients joining rooms of 100 queue ~86 MB of join events; the heap
//!   kept 124 MB for good, 8 KB per idle connection, before this module trimmed it.
//!
//! `malloc_trim(3)` returns every free page, wherever it is in the heap. It runs when the
//! connections have fallen well below their mark, and when activity settles after a burst:
//! once [`BURST_ARRIVALS`] connections arrived or [`BURST_BYTES`] were sent since the last
//! trim, a check runs every [`SETTLE_MS`] until a period with less than [`QUIET_ARRIVALS`]
//! arrivals and [`QUIET_BYTES`] sent. The decisions are pure ([`Trimmer`]); the server runs
//! [`release_free_memory`] when told to.
//!
//! Invariants: a trim after departures needs at least [`MIN_DROP`] connections (and half of
//! the mark) to have gone away, so steady churn at a stable level never triggers one; a
//! settle check is armed only after a burst since the last trim, so an idle server never
//! trims; at most one settle check is armed at a time.

use crate::wheel::Millis;

/// Connections that must have gone away since the high-water mark before a trim.
const MIN_DROP: usize = 1_000;

/// Arrivals since the last trim that make a burst.
const BURST_ARRIVALS: u64 = 1_000;

/// Bytes sent since the last trim that make a burst.
const BURST_BYTES: u64 = 16 << 20;

/// How often a burst is checked for having settled.
pub(crate) const SETTLE_MS: Millis = 1_000;

/// Arrivals in one settle period below which activity has settled.
const QUIET_ARRIVALS: u64 = 100;

/// Bytes sent in one settle period below which activity has settled.
const QUIET_BYTES: u64 = 1 << 20;

/// What the server has done so far: connections accepted and bytes sent.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Activity {
    pub accepted: u64,
    pub sent: u64,
}

impl Activity {
    /// True when at most `arrivals` arrived and `bytes` were sent since `earlier`.
    fn within(self, earlier: Activity, arrivals: u64, bytes: u64) -> bool {
        self.accepted.saturating_sub(earlier.accepted) < arrivals
            && self.sent.saturating_sub(earlier.sent) < bytes
    }
}

/// Tracks the connections' comings and goings since the last trim.
#[derive(Debug, Default)]
pub(crate) struct Trimmer {
    high_water: usize,
    /// Activity at the last trim (or at start).
    at_trim: Activity,
    /// Activity when the armed settle check was armed or last ran; `None` while none is armed.
    at_check: Option<Activity>,
}

impl Trimmer {
    /// Notes the number of connections after one arrived.
    pub fn grew(&mut self, connections: usize) {
        self.high_water = self.high_water.max(connections);
    }

    /// Notes the number of connections after one left; true when the crowd is gone and
    /// memory should be given back now.
    pub fn shrank(&mut self, connections: usize, activity: Activity) -> bool {
        let dropped = self.high_water.saturating_sub(connections);
        let trim = dropped >= MIN_DROP.max(self.high_water / 2);
        if trim {
            self.trimmed(connections, activity);
        }
        trim
    }

    /// Notes the activity at the end of a turn at `now`. Returns when to run a settle check,
    /// once a burst happened since the last trim and no check is armed.
    pub fn turn_ended(&mut self, activity: Activity, now: Millis) -> Option<Millis> {
        if self.at_check.is_some() || activity.within(self.at_trim, BURST_ARRIVALS, BURST_BYTES) {
            return None;
        }
        self.at_check = Some(activity);
        Some(now + SETTLE_MS)
    }

    /// The armed settle check is due at `now`: `Ok(())` when the last period was quiet (trim
    /// now), else `Err(when)` to check again.
    pub fn settle_check(
        &mut self,
        connections: usize,
        activity: Activity,
        now: Millis,
    ) -> Result<(), Millis> {
        let period_start = self.at_check.unwrap_or(activity);
        if !activity.within(period_start, QUIET_ARRIVALS, QUIET_BYTES) {
            self.at_check = Some(activity);
            return Err(now + SETTLE_MS);
        }
        self.at_check = None;
        self.trimmed(connections, activity);
        Ok(())
    }

    /// A trim happened; an armed settle check stays armed (it is on the wheel) and will
    /// find the period since it was armed, so one is never armed twice.
    fn trimmed(&mut self, connections: usize, activity: Activity) {
        self.high_water = connections;
        self.at_trim = activity;
    }
}

/// Gives the allocator's free pages back to the system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) fn release_free_memory() {
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn release_free_memory() {}

#[cfg(test)]
mod tests {
    use super::*;

    fn activity(accepted: u64, sent: u64) -> Activity {
        Activity { accepted, sent }
    }

    #[test]
    fn an_idle_server_arms_no_check() {
        let mut trimmer = Trimmer::default();
        // Heartbeats of 1,000 connections for an hour: 2 bytes each per 25 s.
        for second in 0..3_600u64 {
            let now = activity(BURST_ARRIVALS - 1, second * 80);
            assert_eq!(trimmer.turn_ended(now, second * 1_000), None, "{second}");
        }
    }

    #[test]
    fn a_burst_of_arrivals_trims_once_a_period_is_quiet() {
        let mut trimmer = Trimmer::default();
        assert_eq!(trimmer.turn_ended(activity(999, 0), 10), None);
        assert_eq!(
            trimmer.turn_ended(activity(1_000, 0), 20),
            Some(20 + SETTLE_MS)
        );
        // Armed once: later turns arm nothing more.
        assert_eq!(trimmer.turn_ended(activity(1_500, 0), 30), None);
        // 500 more arrived in the period: not settled, look again a period later.
        assert_eq!(
            trimmer.settle_check(1_500, activity(1_500, 0), 1_020),
            Err(1_020 + SETTLE_MS)
        );
        // 99 in the next one: settled.
        assert_eq!(
            trimmer.settle_check(1_599, activity(1_599, 0), 2_020),
            Ok(())
        );
        // Counting starts again from there.
        assert_eq!(trimmer.turn_ended(activity(2_598, 0), 3_000), None);
        assert!(trimmer.turn_ended(activity(2_599, 0), 3_010).is_some());
    }

    #[test]
    fn a_burst_of_output_trims_once_output_settles() {
        let mut trimmer = Trimmer::default();
        assert_eq!(trimmer.turn_ended(activity(0, BURST_BYTES - 1), 5), None);
        let at = trimmer.turn_ended(activity(0, BURST_BYTES), 6);
        assert_eq!(at, Some(6 + SETTLE_MS));
        let sent = BURST_BYTES + QUIET_BYTES;
        assert_eq!(
            trimmer.settle_check(10, activity(0, sent), 1_006),
            Err(1_006 + SETTLE_MS)
        );
        assert_eq!(
            trimmer.settle_check(10, activity(0, sent + QUIET_BYTES - 1), 2_006),
            Ok(())
        );
    }

    #[test]
    fn a_crowd_that_leaves_trims_once_half_is_gone() {
        let mut trimmer = Trimmer::default();
        (1..=4_000).for_each(|n| trimmer.grew(n));
        assert!(!trimmer.shrank(2_001, Activity::default()));
        assert!(trimmer.shrank(2_000, Activity::default()));
        // The mark is now 2,000: the next departures do not trim again.
        assert!(!trimmer.shrank(1_999, Activity::default()));
    }

    #[test]
    fn steady_churn_never_trims_on_departures() {
        let mut trimmer = Trimmer::default();
        for round in 0..10_000 {
            trimmer.grew(501);
            assert!(!trimmer.shrank(500, Activity::default()), "round {round}");
        }
    }

    #[test]
    fn a_trim_on_departures_leaves_the_armed_check_alone() {
        let mut trimmer = Trimmer::default();
        (1..=2_000).for_each(|n| trimmer.grew(n));
        assert!(trimmer.turn_ended(activity(2_000, 0), 0).is_some());
        assert!(trimmer.shrank(0, activity(2_000, 0)));
        // Still armed: a new burst arms no second check.
        assert_eq!(trimmer.turn_ended(activity(3_000, 0), 500), None);
        // The armed one finds that burst in its period, and waits for it to settle.
        assert_eq!(
            trimmer.settle_check(0, activity(3_000, 0), 1_000),
            Err(1_000 + SETTLE_MS)
        );
        assert_eq!(trimmer.settle_check(0, activity(3_000, 0), 2_000), Ok(()));
    }
}
