//! When each user was last seen: the Unix milliseconds its last connection ended, for
//! `GET /users/{id}` and `POST /users/status`.
//!
//! Bounded: at most `capacity` users are remembered; recording one more forgets the least
//! recently seen. Pure: the time is a parameter.
//!
//! Invariant: `by_user` and `by_serial` name the same users; a user's serial is the order of
//! its latest record (a larger serial is more recent).

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

/// Remembered last-seen times, at most `capacity` of them.
#[derive(Debug)]
pub struct LastSeen {
    capacity: usize,
    by_user: HashMap<Rc<str>, (u64, u64)>,
    by_serial: BTreeMap<u64, Rc<str>>,
    next_serial: u64,
}

impl LastSeen {
    /// Remembers at most `capacity` users (0: none).
    pub fn new(capacity: usize) -> LastSeen {
        LastSeen {
            capacity,
            by_user: HashMap::new(),
            by_serial: BTreeMap::new(),
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
            Some((name, &(_, old))) => {
                let name = name.clone();
                self.by_serial.remove(&old);
                name
            }
            None => {
                if self.by_user.len() >= self.capacity {
                    if let Some((_, oldest)) = self.by_serial.pop_first() {
                        self.by_user.remove(&oldest);
                    }
                }
                Rc::from(user)
            }
        };
        self.by_serial.insert(serial, name.clone());
        self.by_user.insert(name, (unix_ms, serial));
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
        assert_eq!(seen.by_serial.len(), 2);
    }

    #[test]
    fn nothing_is_kept_without_capacity() {
        let mut seen = LastSeen::new(0);
        seen.record("a", 1);
        assert!(seen.is_empty());
        assert_eq!(seen.get("a"), None);
    }
}
