//! An ordered map kept as sorted arrays: the roster's members, subscribers and users, which
//! hold one entry per idle present connection.
//!
//! A `BTreeMap` fed keys in order (connection ids always, user ids often: a crowd arriving)
//! splits a full node into 6 and 5 entries and never adds to the left one again, so its nodes
//! stay a little over half full: 58 bytes per 32-byte member, 38 per 20-byte user. Rebuilt
//! later, the freed nodes are left between the heap's other records and the memory does not
//! go back. Here a large map is one exactly sized sorted array, which a large enough map gets
//! from the system directly, beside a small `BTreeMap` of recent insertions; removals leave a
//! tombstone. The recent entries are merged in, and the tombstones dropped, once either
//! outnumbers a sixteenth of the array (at least [`MIN_BATCH`]): a merge costs a pass over
//! the array, so an insertion or a removal costs about 16 moves, whatever the size.
//!
//! A small map (most channels are small) is one sorted `Vec`: 24 bytes, no allocation when
//! empty, and four entries' worth for a channel of one where a `BTreeMap` takes a node of
//! eleven.
//!
//! Invariants: a key is in at most one of the array and the recent entries; the array is
//! sorted by key; `dead` counts the array's tombstones.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::{btree_map, BTreeMap};
use std::iter::Peekable;

/// A small map that reaches this many entries moves to the packed form (an insertion into a
/// small one moves up to this many entries).
const PACK_AT: usize = 64;

/// A packed map whose merge leaves fewer entries than this goes back to the small form.
const UNPACK_BELOW: usize = 16;

/// The fewest recent entries (or tombstones) that make a merge.
const MIN_BATCH: usize = 16;

/// An ordered map (see the module documentation).
pub(crate) enum PackedMap<K, V> {
    /// Sorted by key.
    Small(Vec<(K, V)>),
    Packed(Box<Packed<K, V>>),
}

pub(crate) struct Packed<K, V> {
    /// Sorted by key; `None` is a removed entry's tombstone.
    sorted: Box<[(K, Option<V>)]>,
    /// Entries inserted since the last merge, none of whose keys is in `sorted`.
    recent: BTreeMap<K, V>,
    /// Tombstones in `sorted`.
    dead: usize,
}

impl<K: Ord + std::fmt::Debug, V: std::fmt::Debug> std::fmt::Debug for PackedMap<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K, V> Default for PackedMap<K, V> {
    fn default() -> Self {
        PackedMap::Small(Vec::new())
    }
}

/// The position of `key` in `entries` (sorted by key), or where it would go.
fn search<K: Borrow<Q>, Q: Ord + ?Sized, V>(entries: &[(K, V)], key: &Q) -> Result<usize, usize> {
    entries.binary_search_by(|(k, _)| k.borrow().cmp(key))
}

impl<K: Ord, V> Packed<K, V> {
    fn find<Q: Ord + ?Sized>(&self, key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
    {
        search(&self.sorted, key)
    }

    fn len(&self) -> usize {
        self.sorted.len() - self.dead + self.recent.len()
    }

    /// Recent entries or tombstones that make a merge.
    fn batch(&self) -> usize {
        (self.sorted.len() / 16).max(MIN_BATCH)
    }
}

impl<K: Ord, V> PackedMap<K, V> {
    /// The number of entries.
    pub fn len(&self) -> usize {
        match self {
            PackedMap::Small(map) => map.len(),
            PackedMap::Packed(packed) => packed.len(),
        }
    }

    /// True when it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value of `key`.
    pub fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.get_key_value(key).map(|(_, value)| value)
    }

    /// The entry of `key`.
    pub fn get_key_value<Q: Ord + ?Sized>(&self, key: &Q) -> Option<(&K, &V)>
    where
        K: Borrow<Q>,
    {
        match self {
            PackedMap::Small(entries) => {
                let (k, value) = &entries[search(entries, key).ok()?];
                Some((k, value))
            }
            PackedMap::Packed(packed) => match packed.find(key) {
                Ok(i) => {
                    let (k, value) = &packed.sorted[i];
                    value.as_ref().map(|value| (k, value))
                }
                Err(_) => packed.recent.get_key_value(key),
            },
        }
    }

    /// The value of `key`, to change.
    pub fn get_mut<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        match self {
            PackedMap::Small(entries) => {
                let i = search(entries, key).ok()?;
                Some(&mut entries[i].1)
            }
            PackedMap::Packed(packed) => match packed.find(key) {
                Ok(i) => packed.sorted[i].1.as_mut(),
                Err(_) => packed.recent.get_mut(key),
            },
        }
    }

    /// True when `key` has an entry.
    pub fn contains_key<Q: Ord + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.get_key_value(key).is_some()
    }

    /// Sets the value of `key`, returning the one it replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let packed = match self {
            PackedMap::Small(entries) => {
                match search(entries, &key) {
                    Ok(i) => return Some(std::mem::replace(&mut entries[i].1, value)),
                    Err(i) => entries.insert(i, (key, value)),
                }
                if entries.len() >= PACK_AT {
                    self.pack();
                }
                return None;
            }
            PackedMap::Packed(packed) => packed,
        };
        match packed.find(&key) {
            Ok(i) => {
                let held = &mut packed.sorted[i].1;
                packed.dead -= usize::from(held.is_none());
                held.replace(value)
            }
            Err(_) => {
                let previous = packed.recent.insert(key, value);
                if packed.recent.len() >= packed.batch() {
                    self.merge();
                }
                previous
            }
        }
    }

    /// Removes the entry of `key`, returning its value.
    pub fn remove<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        let packed = match self {
            PackedMap::Small(entries) => {
                let (_, value) = entries.remove(search(entries, key).ok()?);
                if entries.capacity() > 2 * entries.len().max(2) {
                    entries.shrink_to(entries.len());
                }
                return Some(value);
            }
            PackedMap::Packed(packed) => packed,
        };
        match packed.find(key) {
            Ok(i) => {
                let value = packed.sorted[i].1.take()?;
                packed.dead += 1;
                if packed.dead >= packed.batch() {
                    self.merge();
                }
                Some(value)
            }
            Err(_) => packed.recent.remove(key),
        }
    }

    /// The entries in key order.
    pub fn iter(&self) -> Iter<'_, K, V> {
        match self {
            PackedMap::Small(entries) => Iter::Small(entries.iter()),
            PackedMap::Packed(packed) => Iter::Packed {
                sorted: packed.sorted.iter().peekable(),
                recent: packed.recent.iter().peekable(),
            },
        }
    }

    /// Moves a small map's entries to the packed form.
    fn pack(&mut self) {
        if let PackedMap::Small(entries) = self {
            let sorted = std::mem::take(entries)
                .into_iter()
                .map(|(key, value)| (key, Some(value)))
                .collect();
            *self = PackedMap::Packed(Box::new(Packed {
                sorted,
                recent: BTreeMap::new(),
                dead: 0,
            }));
        }
    }

    /// Merges the recent entries into the array and drops its tombstones, in one pass; a map
    /// left small goes back to the small form.
    fn merge(&mut self) {
        let PackedMap::Packed(packed) = self else {
            return;
        };
        let len = packed.len();
        let sorted = std::mem::take(&mut packed.sorted).into_vec();
        let recent = std::mem::take(&mut packed.recent);
        let live = sorted
            .into_iter()
            .filter_map(|(key, value)| Some((key, value?)));
        let merged = MergeByKey {
            left: live.peekable(),
            right: recent.into_iter().peekable(),
        };
        if len < UNPACK_BELOW {
            *self = PackedMap::Small(merged.collect());
            return;
        }
        let mut sorted = Vec::with_capacity(len);
        sorted.extend(merged.map(|(key, value)| (key, Some(value))));
        packed.sorted = sorted.into_boxed_slice();
        packed.dead = 0;
    }
}

/// Two iterators of entries sorted by key, with no key in both, as one sorted iterator.
struct MergeByKey<L: Iterator, R: Iterator> {
    left: Peekable<L>,
    right: Peekable<R>,
}

impl<K: Ord, V, L, R> Iterator for MergeByKey<L, R>
where
    L: Iterator<Item = (K, V)>,
    R: Iterator<Item = (K, V)>,
{
    type Item = (K, V);

    fn next(&mut self) -> Option<(K, V)> {
        let left_first = match (self.left.peek(), self.right.peek()) {
            (Some((left, _)), Some((right, _))) => left.cmp(right) == Ordering::Less,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if left_first {
            self.left.next()
        } else {
            self.right.next()
        }
    }
}

/// The entries of a [`PackedMap`] in key order. The packed form merges as [`MergeByKey`]
/// does, written out for borrowed entries: a broadcast walks its subscribers through it, and
/// `MergeByKey` over the live entries was about a fifth slower on that walk (`cargo bench
/// --bench core -- walk_only`).
pub(crate) enum Iter<'a, K, V> {
    Small(std::slice::Iter<'a, (K, V)>),
    Packed {
        sorted: Peekable<std::slice::Iter<'a, (K, Option<V>)>>,
        recent: Peekable<btree_map::Iter<'a, K, V>>,
    },
}

impl<'a, K: Ord, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<(&'a K, &'a V)> {
        let (sorted, recent) = match self {
            Iter::Small(entries) => return entries.next().map(|(key, value)| (key, value)),
            Iter::Packed { sorted, recent } => (sorted, recent),
        };
        // Tombstones are skipped before the comparison.
        while sorted.next_if(|(_, value)| value.is_none()).is_some() {}
        let sorted_first = match (sorted.peek(), recent.peek()) {
            (Some((left, _)), Some((right, _))) => left < *right,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if sorted_first {
            let (key, value) = sorted.next()?;
            Some((key, value.as_ref()?))
        } else {
            recent.next()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u16, u32),
        Remove(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0..600u16, any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
            2 => (0..600u16).prop_map(Op::Remove),
        ]
    }

    fn is_packed<K, V>(map: &PackedMap<K, V>) -> bool {
        matches!(map, PackedMap::Packed(_))
    }

    proptest! {
        /// Whatever the operations, it answers as a `BTreeMap` does.
        #[test]
        fn behaves_as_a_btree_map(ops in proptest::collection::vec(op(), 1..2_000)) {
            let mut map = PackedMap::default();
            let mut model = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => prop_assert_eq!(map.insert(k, v), model.insert(k, v)),
                    Op::Remove(k) => prop_assert_eq!(map.remove(&k), model.remove(&k)),
                }
                prop_assert_eq!(map.len(), model.len());
            }
            prop_assert!(map.iter().eq(model.iter()));
            for k in 0..600u16 {
                prop_assert_eq!(map.get(&k), model.get(&k));
                prop_assert_eq!(map.contains_key(&k), model.contains_key(&k));
                if let Some(value) = map.get_mut(&k) {
                    *value = value.wrapping_add(1);
                }
            }
            let bumped: Vec<(u16, u32)> = model.iter().map(|(&k, &v)| (k, v.wrapping_add(1))).collect();
            prop_assert!(map.iter().map(|(&k, _)| k).eq(model.keys().copied()));
            prop_assert!(map.iter().map(|(&k, &v)| (k, v)).eq(bumped));
        }
    }

    /// A crowd arriving in key order and leaving again: the map packs, stays sorted through
    /// recent entries and tombstones, and goes back to a small map once nearly empty.
    #[test]
    fn packs_a_crowd_and_unpacks_when_it_left() {
        let mut map = PackedMap::default();
        for k in 0..10_000u32 {
            map.insert(k, k * 2);
        }
        assert!(is_packed(&map));
        let PackedMap::Packed(packed) = &map else {
            unreachable!()
        };
        assert!(packed.recent.len() < packed.batch(), "merged as it grew");
        assert_eq!(map.get(&9_999), Some(&19_998));
        assert_eq!(map.get_key_value(&5), Some((&5, &10)));
        for k in (0..10_000u32).filter(|k| k % 3 != 0) {
            assert_eq!(map.remove(&k), Some(k * 2));
        }
        assert!(map.iter().map(|(&k, _)| k).eq((0..10_000).step_by(3)));
        for k in (0..10_000u32).step_by(3).skip(5) {
            assert_eq!(map.remove(&k), Some(k * 2));
        }
        assert_eq!(map.len(), 5);
        assert!(!is_packed(&map), "a few entries are a small map again");
        assert!(map.iter().map(|(&k, _)| k).eq([0, 3, 6, 9, 12]));
    }

    /// Every channel has five (its members, its subscribers by mode): an empty one costs 24
    /// bytes and no allocation.
    #[test]
    fn an_empty_map_takes_24_bytes() {
        assert_eq!(std::mem::size_of::<PackedMap<u64, u64>>(), 24);
    }
}
