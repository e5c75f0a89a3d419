//! Generational identities: `{slot, generation}` handles over a [`slab::Slab`].
//!
//! Slab keys are reused as soon as an entry is removed, so a bare key outlives what it named.
//! Every handle that can outlive its target (a `mio` token, a timer-wheel entry, a queued
//! event) carries the generation the slot had when the handle was made. [`Slots::get`] and
//! friends return `None` for a stale handle; it is skipped, never applied to the new occupant.
//!
//! Invariant: a slot's generation strictly increases with each insert into that slot (it wraps
//! only after 2^32 reuses of one slot).

use slab::Slab;
use std::fmt;

/// A generational handle: slot index plus the generation the slot had at insert time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// Index into the slab.
    pub slot: u32,
    /// Generation of the slot when this key was issued.
    pub generation: u32,
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.slot, self.generation)
    }
}

impl std::str::FromStr for Key {
    type Err = ParseKeyError;

    /// Reads a key as [`Key`]'s `Display` writes it: `SLOT.GENERATION`.
    fn from_str(text: &str) -> Result<Key, ParseKeyError> {
        let (slot, generation) = text.split_once('.').ok_or(ParseKeyError)?;
        Ok(Key {
            slot: slot.parse().map_err(|_| ParseKeyError)?,
            generation: generation.parse().map_err(|_| ParseKeyError)?,
        })
    }
}

/// A text that is not a [`Key`] (`SLOT.GENERATION`, two decimal `u32`s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseKeyError;

impl fmt::Display for ParseKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a connection id (SLOT.GENERATION, as the welcome gives it)")
    }
}

impl std::error::Error for ParseKeyError {}

/// A value that keeps the generation of the key it is held under, in its own padding: beside
/// it, in a wrapper, every slot of a table with one entry per connection would cost 8 bytes.
pub trait Stamped {
    /// The generation set by the last [`Stamped::stamp`].
    fn generation(&self) -> u32;
    /// Records the generation of the key the value is held under.
    fn stamp(&mut self, generation: u32);
}

/// A slab whose handles are [`Key`]s: a stale key finds nothing.
pub struct Slots<T> {
    entries: Slab<T>,
    /// Generation to give the next entry placed in each slot ever used.
    next_generation: Vec<u32>,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots {
            entries: Slab::new(),
            next_generation: Vec::new(),
        }
    }
}

impl<T: Stamped> Slots<T> {
    /// Inserts a value and returns its key.
    pub fn insert(&mut self, mut value: T) -> Key {
        let vacant = self.entries.vacant_entry();
        let slot = vacant.key();
        if slot >= self.next_generation.len() {
            self.next_generation.resize(slot + 1, 0);
        }
        let generation = self.next_generation[slot];
        self.next_generation[slot] = generation.wrapping_add(1);
        value.stamp(generation);
        vacant.insert(value);
        Key {
            slot: slot as u32,
            generation,
        }
    }

    /// The key of the entry in `slot` whose generation ends in the 16 bits `low` (what a
    /// `mio` token carries, see `server::token_space`), unless the slot moved on.
    pub fn key_in_slot(&self, slot: u32, low: u16) -> Option<Key> {
        let generation = self.entries.get(slot as usize)?.generation();
        (generation as u16 == low).then_some(Key { slot, generation })
    }

    /// The value named by `key`, unless the key is stale.
    pub fn get(&self, key: Key) -> Option<&T> {
        let value = self.entries.get(key.slot as usize)?;
        (value.generation() == key.generation).then_some(value)
    }

    /// Mutable access to the value named by `key`, unless the key is stale.
    pub fn get_mut(&mut self, key: Key) -> Option<&mut T> {
        let value = self.entries.get_mut(key.slot as usize)?;
        (value.generation() == key.generation).then_some(value)
    }

    /// Removes and returns the value named by `key`, unless the key is stale.
    pub fn remove(&mut self, key: Key) -> Option<T> {
        self.get(key)?;
        Some(self.entries.remove(key.slot as usize))
    }

    /// The live entry in `slot`, with its key, whatever its generation: for a handle that
    /// carries its own proof of identity instead (see `roster::GraceKey`).
    pub fn in_slot_mut(&mut self, slot: u32) -> Option<(Key, &mut T)> {
        let value = self.entries.get_mut(slot as usize)?;
        let key = Key {
            slot,
            generation: value.generation(),
        };
        Some((key, value))
    }

    /// Number of live entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no entry is live.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every live entry with its key.
    pub fn iter(&self) -> impl Iterator<Item = (Key, &T)> {
        self.entries.iter().map(|(slot, value)| {
            let key = Key {
                slot: slot as u32,
                generation: value.generation(),
            };
            (key, value)
        })
    }
}

/// A value for tests of [`Slots`]: a name, and the generation it is held under.
#[cfg(test)]
#[derive(Debug, PartialEq)]
pub(crate) struct Named(pub &'static str, pub u32);

#[cfg(test)]
impl Stamped for Named {
    fn generation(&self) -> u32 {
        self.1
    }

    fn stamp(&mut self, generation: u32) {
        self.1 = generation;
    }
}

/// A [`Named`] value not yet held.
#[cfg(test)]
pub(crate) fn named(name: &'static str) -> Named {
    Named(name, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_reads_back_as_it_is_written_and_nothing_else_reads() {
        let key = Key {
            slot: 7,
            generation: 4_000_000_000,
        };
        assert_eq!(key.to_string().parse(), Ok(key));
        for text in [
            "",
            "7",
            "7.",
            ".7",
            "7.x",
            "-1.0",
            "7.4294967296",
            "7.1.2",
            " 7.1",
        ] {
            assert_eq!(text.parse::<Key>(), Err(ParseKeyError), "{text:?}");
        }
    }

    #[test]
    fn stale_key_is_skipped_after_slot_reuse() {
        let mut slots = Slots::default();
        let old = slots.insert(named("first"));
        assert_eq!(slots.remove(old).map(|v| v.0), Some("first"));
        let new = slots.insert(named("second"));
        assert_eq!(new.slot, old.slot, "the slab reuses the slot");
        assert_ne!(new.generation, old.generation);
        assert_eq!(slots.get(old), None);
        assert_eq!(slots.remove(old), None);
        assert_eq!(slots.get(new), Some(&Named("second", new.generation)));
    }

    #[test]
    fn keys_display_as_slot_dot_generation() {
        assert_eq!(
            Key {
                slot: 7,
                generation: 3
            }
            .to_string(),
            "7.3"
        );
    }

    #[test]
    fn a_token_s_low_generation_bits_find_the_current_key_only() {
        let mut slots = Slots::default();
        let old = slots.insert(named("old"));
        slots.remove(old);
        let new = slots.insert(named("new"));
        assert_eq!(
            slots.key_in_slot(new.slot, new.generation as u16),
            Some(new)
        );
        assert_eq!(slots.key_in_slot(old.slot, old.generation as u16), None);
        assert_eq!(slots.key_in_slot(99, 0), None);
    }

    #[test]
    fn every_entry_is_listed_with_its_key() {
        let mut slots = Slots::default();
        let first = slots.insert(named("first"));
        let second = slots.insert(named("second"));
        slots.remove(first);
        let third = slots.insert(named("third"));
        assert_eq!(slots.len(), 2);
        let listed: Vec<(Key, &str)> = slots.iter().map(|(key, v)| (key, v.0)).collect();
        assert_eq!(listed, [(third, "third"), (second, "second")]);
        assert_eq!(
            slots.in_slot_mut(third.slot).map(|(key, _)| key),
            Some(third)
        );
    }
}
