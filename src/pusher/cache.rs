//! The last event of each `cache-` channel, for its next subscriber (Pusher's cache
//! channels): kept [`CACHE_TTL_MS`], then forgotten.
//!
//! Memory is bounded by the channels that had an event in the last half hour: expired
//! entries go when the table has doubled since it was last swept.

use std::collections::HashMap;

use crate::wheel::Millis;

/// How long a cache channel remembers its last event (Pusher's limit: 30 minutes).
pub const CACHE_TTL_MS: Millis = 30 * 60 * 1000;

/// The table of last events, by the engine's channel name.
#[derive(Debug, Default)]
pub struct EventCache {
    entries: HashMap<Box<str>, Cached>,
    /// The table's size after the last sweep.
    swept_at_len: usize,
}

#[derive(Debug)]
struct Cached {
    event: Box<str>,
    /// JSON text.
    data: Box<str>,
    at: Millis,
}

impl EventCache {
    /// Remembers `event` with `data` as the channel's last, at `now`.
    pub fn remember(&mut self, channel: &str, event: &str, data: &str, now: Millis) {
        let cached = Cached {
            event: event.into(),
            data: data.into(),
            at: now,
        };
        match self.entries.get_mut(channel) {
            Some(entry) => *entry = cached,
            None => {
                self.entries.insert(channel.into(), cached);
                if self.entries.len() > 2 * self.swept_at_len.max(64) {
                    self.sweep(now);
                }
            }
        }
    }

    /// The channel's last event and data, unless older than the TTL.
    pub fn last(&self, channel: &str, now: Millis) -> Option<(&str, &str)> {
        self.entries
            .get(channel)
            .filter(|cached| now.saturating_sub(cached.at) < CACHE_TTL_MS)
            .map(|cached| (&*cached.event, &*cached.data))
    }

    fn sweep(&mut self, now: Millis) {
        self.entries
            .retain(|_, cached| now.saturating_sub(cached.at) < CACHE_TTL_MS);
        self.swept_at_len = self.entries.len();
    }

    /// Channels remembered (expired ones included until a sweep).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_event_is_kept_for_half_an_hour() {
        let mut cache = EventCache::default();
        assert_eq!(cache.last("1#cache-x", 0), None);
        cache.remember("1#cache-x", "a", "1", 0);
        cache.remember("1#cache-x", "b", "2", 10);
        assert_eq!(cache.last("1#cache-x", 20), Some(("b", "2")));
        assert_eq!(
            cache.last("1#cache-x", 10 + CACHE_TTL_MS - 1),
            Some(("b", "2"))
        );
        assert_eq!(cache.last("1#cache-x", 10 + CACHE_TTL_MS), None);
    }

    #[test]
    fn expired_entries_are_swept_as_the_table_grows() {
        let mut cache = EventCache::default();
        for i in 0..100 {
            cache.remember(&format!("1#cache-{i}"), "e", "1", 0);
        }
        assert_eq!(cache.len(), 100);
        for i in 0..100 {
            cache.remember(&format!("1#cache-new-{i}"), "e", "1", CACHE_TTL_MS);
        }
        assert!(
            cache.len() < 200,
            "the expired hundred went: {}",
            cache.len()
        );
        assert_eq!(cache.last("1#cache-new-99", CACHE_TTL_MS), Some(("e", "1")));
    }
}
