//! Per-connection command rate limiting: the token-bucket algorithm in virtual time, with
//! *credits* for its tokens (in this code base "token" means a JWT, see `token`).
//!
//! Each command takes a credit; credits come back at `per_second` up to `burst`. A command
//! without a credit is refused (`rate_limited`); a connection that keeps sending while
//! refused — more than `burst` refusals in a row — is flooding and is closed.
//!
//! Invariants: at most `burst` commands pass in any instant, and at most
//! `burst + per_second × t` over any span `t`; 8 bytes of state per connection (for the
//! Pusher client-event limit, only per connection that used it lately: [`RateBuckets`]).

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;

use crate::wheel::Millis;

/// The configured limit: `per_second` commands on average, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Credits returned per second.
    pub per_second: u32,
    /// The bucket's size.
    pub burst: u32,
}

impl RateLimit {
    /// Parses `20/s` (burst twice the rate) or `20/s:50` (burst 50).
    pub fn parse(text: &str) -> Result<RateLimit, RateLimitError> {
        let error = || RateLimitError(text.to_owned());
        let (rate, burst) = match text.split_once(':') {
            Some((rate, burst)) => (rate, Some(burst)),
            None => (text, None),
        };
        let per_second: u32 = rate
            .strip_suffix("/s")
            .ok_or_else(error)?
            .parse()
            .map_err(|_| error())?;
        let burst = match burst {
            Some(burst) => burst.parse().map_err(|_| error())?,
            None => per_second.saturating_mul(2),
        };
        if per_second == 0 || burst == 0 {
            return Err(error());
        }
        Ok(RateLimit { per_second, burst })
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/s:{}", self.per_second, self.burst)
    }
}

/// A rate limit that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitError(String);

impl fmt::Display for RateLimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid rate limit {:?}: expected N/s or N/s:BURST (e.g. 20/s:40), N > 0",
            self.0
        )
    }
}

impl std::error::Error for RateLimitError {}

/// What the bucket says about one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Run it.
    Allowed,
    /// Refuse it with `rate_limited`.
    Limited,
    /// Refused again and again: close the connection.
    Flooding,
}

/// One connection's bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateBucket {
    /// Credits, in thousandths (so that refills of less than a credit are not lost).
    millicredits: u32,
    /// Refusals since the last allowed command.
    refused: u16,
    /// Low 16 bits of the time of the last refill, in units of 64 ms; a bucket untouched
    /// for longer than the wrap (70 minutes) is simply full.
    refilled_at: u16,
}

/// Refill time resolution in milliseconds.
const STEP_MS: Millis = 64;

impl RateBucket {
    /// A full bucket at `now`.
    pub fn new(limit: RateLimit, now: Millis) -> RateBucket {
        RateBucket {
            millicredits: limit.burst.saturating_mul(1000),
            refused: 0,
            refilled_at: step(now),
        }
    }

    /// Takes a credit for a command at `now`.
    pub fn admit(&mut self, limit: RateLimit, now: Millis) -> Admission {
        self.refill(limit, now);
        if self.millicredits >= 1000 {
            self.millicredits -= 1000;
            self.refused = 0;
            return Admission::Allowed;
        }
        self.refused = self.refused.saturating_add(1);
        if u32::from(self.refused) > limit.burst {
            Admission::Flooding
        } else {
            Admission::Limited
        }
    }

    /// True when, refilled at `now`, it is as a new one would be: full (a refusal still
    /// counted does not matter: the next command is allowed, which clears it).
    fn is_full(&mut self, limit: RateLimit, now: Millis) -> bool {
        self.refill(limit, now);
        self.millicredits == limit.burst.saturating_mul(1000)
    }

    fn refill(&mut self, limit: RateLimit, now: Millis) {
        let steps = u64::from(step(now).wrapping_sub(self.refilled_at));
        let earned = steps * STEP_MS * u64::from(limit.per_second);
        let full = u64::from(limit.burst) * 1000;
        self.millicredits = (u64::from(self.millicredits) + earned).min(full) as u32;
        self.refilled_at = step(now);
    }
}

/// The buckets of the connections that spent credits lately, by connection. A full bucket
/// is the same as a new one, so a connection that has not sent anything for a while keeps
/// none. A bucket is made full at a connection's first use and forgotten once it is full
/// again ([`RateBuckets::forget_if_full`], called at each connection's heartbeat deadline) or
/// the connection ends.
///
/// For limits most connections never meet (Pusher client events): a map entry costs about
/// three times a bucket's 8 bytes, so the command limit, which nearly every connection meets
/// (a Pusher subscribe is a command), keeps its bucket in the session. Measured both ways:
/// 15,000 Pusher connections in presence channels cost 24 bytes more each with the command
/// buckets here.
#[derive(Debug)]
pub struct RateBuckets<K> {
    limit: RateLimit,
    buckets: HashMap<K, RateBucket>,
}

impl<K: Hash + Eq> RateBuckets<K> {
    /// No buckets, for `limit`.
    pub fn new(limit: RateLimit) -> RateBuckets<K> {
        RateBuckets {
            limit,
            buckets: HashMap::new(),
        }
    }

    /// Takes a credit from `key`'s bucket at `now` (a full one if it has none).
    pub fn admit(&mut self, key: K, now: Millis) -> Admission {
        let limit = self.limit;
        self.buckets
            .entry(key)
            .or_insert_with(|| RateBucket::new(limit, now))
            .admit(limit, now)
    }

    /// Drops `key`'s bucket if it is full again at `now`.
    pub fn forget_if_full(&mut self, key: &K, now: Millis) {
        let limit = self.limit;
        if self
            .buckets
            .get_mut(key)
            .is_some_and(|bucket| bucket.is_full(limit, now))
        {
            self.forget(key);
        }
    }

    /// Drops `key`'s bucket (its connection ended).
    pub fn forget(&mut self, key: &K) {
        self.buckets.remove(key);
        if self.buckets.capacity() > 4 * self.buckets.len().max(16) {
            self.buckets.shrink_to(2 * self.buckets.len());
        }
    }

    /// How many buckets are held.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// True when no bucket is held.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

fn step(now: Millis) -> u16 {
    (now / STEP_MS) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: RateLimit = RateLimit {
        per_second: 20,
        burst: 40,
    };

    #[test]
    fn parses_rate_and_burst() {
        assert_eq!(
            RateLimit::parse("20/s"),
            Ok(RateLimit {
                per_second: 20,
                burst: 40
            })
        );
        assert_eq!(
            RateLimit::parse("5/s:7"),
            Ok(RateLimit {
                per_second: 5,
                burst: 7
            })
        );
        for bad in ["20", "0/s", "20/s:0", "x/s", "20/m", "20/s:", ""] {
            assert!(RateLimit::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(LIMIT.to_string(), "20/s:40");
    }

    #[test]
    fn a_burst_passes_then_commands_are_limited() {
        let mut bucket = RateBucket::new(LIMIT, 0);
        for _ in 0..40 {
            assert_eq!(bucket.admit(LIMIT, 0), Admission::Allowed);
        }
        assert_eq!(bucket.admit(LIMIT, 0), Admission::Limited);
    }

    #[test]
    fn credits_come_back_at_the_rate() {
        let mut bucket = RateBucket::new(LIMIT, 0);
        (0..40).for_each(|_| assert_eq!(bucket.admit(LIMIT, 0), Admission::Allowed));
        // 20/s: one credit per 50 ms; the refill counts in 64 ms steps.
        assert_eq!(bucket.admit(LIMIT, 60), Admission::Limited);
        assert_eq!(bucket.admit(LIMIT, 64), Admission::Allowed);
        let allowed = (0..100)
            .filter(|_| bucket.admit(LIMIT, 1_088) == Admission::Allowed)
            .count();
        assert_eq!(allowed, 20, "one second (16 steps) later, 20 more");
        let allowed = (0..100)
            .filter(|_| bucket.admit(LIMIT, 100_000) == Admission::Allowed)
            .count();
        assert_eq!(allowed, 40, "a long rest fills the bucket, not more");
    }

    #[test]
    fn refusing_more_than_a_burst_in_a_row_is_flooding() {
        let mut bucket = RateBucket::new(LIMIT, 0);
        (0..40).for_each(|_| {
            bucket.admit(LIMIT, 0);
        });
        for _ in 0..40 {
            assert_eq!(bucket.admit(LIMIT, 0), Admission::Limited);
        }
        assert_eq!(bucket.admit(LIMIT, 0), Admission::Flooding);
        assert_eq!(
            bucket.admit(LIMIT, 1_000),
            Admission::Allowed,
            "a pause forgives"
        );
    }

    #[test]
    fn eight_bytes_per_connection() {
        assert_eq!(std::mem::size_of::<RateBucket>(), 8);
    }

    #[test]
    fn buckets_are_kept_only_while_they_are_not_full() {
        let mut buckets = RateBuckets::new(LIMIT);
        assert!(buckets.is_empty());
        assert_eq!(buckets.admit(1, 0), Admission::Allowed);
        assert_eq!(buckets.len(), 1, "a bucket for the sender only");
        buckets.forget_if_full(&1, 0);
        assert_eq!(buckets.len(), 1, "one credit short: kept");
        buckets.forget_if_full(&1, 2_000);
        assert!(buckets.is_empty(), "full again: forgotten");
        // A forgotten bucket comes back full, as it was: 40 allowed, then limited.
        let allowed = (0..100)
            .filter(|_| buckets.admit(1, 2_000) == Admission::Allowed)
            .count();
        assert_eq!(allowed, 40);
        buckets.forget(&1);
        assert!(buckets.is_empty());
    }
}
