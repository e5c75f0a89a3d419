//! The channels one connection is subscribed to, without a heap allocation for the common
//! case of one channel (most connections are in exactly one).
//!
//! Invariant: no channel appears twice; `Many` holds at least two.

use crate::roster::ChannelId;

/// A small set of channel ids: 16 bytes inline, heap only for two or more.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) enum ChannelSet {
    #[default]
    Empty,
    One(ChannelId),
    /// Boxed: a thin pointer keeps every connection's set at 16 bytes, and the second
    /// allocation is paid only by the few in several channels.
    #[allow(clippy::box_collection)]
    Many(Box<Vec<ChannelId>>),
}

impl ChannelSet {
    /// Adds `channel` unless present.
    pub fn insert(&mut self, channel: ChannelId) {
        match self {
            ChannelSet::Empty => *self = ChannelSet::One(channel),
            ChannelSet::One(first) if *first != channel => {
                *self = ChannelSet::Many(Box::new(vec![*first, channel]));
            }
            ChannelSet::Many(all) if !all.contains(&channel) => all.push(channel),
            _ => {}
        }
    }

    /// Removes `channel` if present.
    pub fn remove(&mut self, channel: ChannelId) {
        match self {
            ChannelSet::One(only) if *only == channel => *self = ChannelSet::Empty,
            ChannelSet::Many(all) => {
                all.retain(|c| *c != channel);
                if let [only] = all[..] {
                    *self = ChannelSet::One(only);
                }
            }
            _ => {}
        }
    }

    /// The channels, in insertion order.
    pub fn as_slice(&self) -> &[ChannelId] {
        match self {
            ChannelSet::Empty => &[],
            ChannelSet::One(only) => std::slice::from_ref(only),
            ChannelSet::Many(all) => all,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Key;

    fn channel(slot: u32) -> ChannelId {
        Key {
            slot,
            generation: 0,
        }
    }

    #[test]
    fn grows_and_shrinks_without_duplicates() {
        let mut set = ChannelSet::default();
        assert!(set.as_slice().is_empty());
        set.insert(channel(1));
        set.insert(channel(1));
        assert_eq!(set, ChannelSet::One(channel(1)));
        set.insert(channel(2));
        set.insert(channel(3));
        set.insert(channel(2));
        assert_eq!(set.as_slice(), [channel(1), channel(2), channel(3)]);
        set.remove(channel(2));
        set.remove(channel(1));
        assert_eq!(
            set,
            ChannelSet::One(channel(3)),
            "back inline with one left"
        );
        assert_eq!(set.as_slice(), [channel(3)]);
        set.remove(channel(9));
        set.remove(channel(3));
        assert_eq!(set, ChannelSet::Empty);
    }

    #[test]
    fn one_channel_costs_no_heap_and_16_bytes() {
        assert_eq!(std::mem::size_of::<ChannelSet>(), 16);
    }
}
