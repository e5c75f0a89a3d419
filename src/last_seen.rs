//! When each user was last seen: the Unix milliseconds its last connection ended, for
//! `GET /users/{id}` and `POST /users/status`.
//!
//! Bounded: at most `capacity` users are remembered; recording one more forgets the least
//! recently seen. Pure: the time is a parameter.
//!
//! Invariants: every user of `by_user` has exactly one live record in `order`, the one whose
//! serial `by_user` holds (a larger serial is more recent); the other records of `order` are
//! stale, skipped when forgetting and dropped once they outnumber the live ones, so `order`
//! holds at most twice `capacity` records. A queue rather than an ordered map: serials only
//! grow, so new records go at the back and the oldest live one is at the front, and every
//! host is spared a `BTreeMap` of its own (~9 KiB of code).

use crate::user_id::UserId;
use std::collections::{HashMap, VecDeque};

/// Remembered last-seen times, at most `capacity` of them.
#[derive(Debug)]
pub struct LastSeen {
    capacity: usize,
    /// Each user's last-seen time and the serial of its latest record.
    by_user: HashMap<UserId, (u64, u64)>,
    /// Records (serial, user), oldest first.
    order: VecDeque<(u64, UserId)>,
    next_serial: u64,
}

impl LastSeen {
    /// Remembers at most `capacity` users (0: none).
    pub fn new(capacity: usize) -> LastSeen {
        LastSeen {
            capacity,
            by_user: HashMap::new(),
            order: VecDeque::new(),
            next_serial: 0,
        }
    }

    /// `user` was last seen at `unix_ms`.
    pub fn record(&mut self, user: &str, unix_ms: u64) {
        if self.capacity == 0 {
            return;
        }
        let serial = self.next_serial;
        self.next_serial += 1;
        let name = match self.by_user.get_key_value(user) {
            Some((name, _)) => name.clone(),
            None => {
                if self.by_user.len() >= self.capacity {
                    self.forget_least_recent();
                }
                UserId::from(user)
            }
        };
        self.order.push_back((serial, name.clone()));
        self.by_user.insert(name, (unix_ms, serial));
        if self.order.len() > self.capacity.saturating_mul(2) {
            self.drop_stale();
        }
    }

    /// When `user` was last seen, unless never or forgotten.
    pub fn get(&self, user: &str) -> Option<u64> {
        self.by_user.get(user).map(|&(at, _)| at)
    }

    /// Users remembered.
    pub fn len(&self) -> usize {
        self.by_user.len()
    }

    /// True when nobody is remembered.
    pub fn is_empty(&self) -> bool {
        self.by_user.is_empty()
    }

    /// Forgets the user whose latest record is the oldest, dropping the stale records before it.
    fn forget_least_recent(&mut self) {
        while let Some((serial, name)) = self.order.pop_front() {
            if self.is_live(serial, &name) {
                self.by_user.remove(&name);
                return;
            }
        }
    }

    /// Keeps only the live records (one per user remembered), in order.
    fn drop_stale(&mut self) {
        let mut order = std::mem::take(&mut self.order);
        order.retain(|(serial, name)| self.is_live(*serial, name));
        self.order = order;
    }

    /// True when the record `serial` is `name`'s latest.
    fn is_live(&self, serial: u64, name: &str) -> bool {
        self.by_user
            .get(name)
            .is_some_and(|&(_, latest)| latest == serial)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_seen_is_forgotten_first() {
        let mut seen = LastSeen::new(2);
        seen.record("a", 1);
        seen.record("b", 2);
        seen.record("a", 3);
        seen.record("c", 4);
        assert_eq!(seen.get("b"), None, "b was seen least recently");
        assert_eq!((seen.get("a"), seen.get("c")), (Some(3), Some(4)));
        assert_eq!(seen.len(), 2);
    }

    /// A user seen again and again leaves stale records behind: they are dropped before they
    /// outnumber the users, and the order of the live ones still decides who is forgotten.
    #[test]
    fn stale_records_stay_bounded_and_do_not_decide() {
        let mut seen = LastSeen::new(3);
        seen.record("a", 1);
        seen.record("b", 2);
        seen.record("c", 3);
        for at in 4..100 {
            seen.record("a", at);
            assert!(
                seen.order.len() <= 6,
                "{} records at {at}",
                seen.order.len()
            );
        }
        seen.record("b", 100);
        seen.record("d", 101);
        assert_eq!(seen.get("c"), None, "c was seen least recently");
        seen.record("e", 102);
        assert_eq!(seen.get("a"), None, "then a (99), before b (100)");
        assert_eq!(
            (seen.get("b"), seen.get("d"), seen.get("e")),
            (Some(100), Some(101), Some(102))
        );
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn nothing_is_kept_without_capacity() {
        let mut seen = LastSeen::new(0);
        seen.record("a", 1);
        assert!(seen.is_empty());
        assert_eq!(seen.get("a"), None);
    }
}
