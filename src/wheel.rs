//! A hashed timer wheel holding every deadline of the server (heartbeat, handshake, leave
//! grace, count coalescing, accept back-off) in virtual time.
//!
//! Time is a plain `u64` of milliseconds since an origin the caller chooses; the wheel never
//! reads a clock. The caller asks [`Wheel::next_deadline`] how long it may sleep and calls
//! [`Wheel::expire`] with the current time; calling early is harmless, calling late only
//! delays expiry.
//!
//! Invariants:
//! - Deadlines are rounded *up* to the next tick boundary, so nothing fires early.
//! - An entry fires exactly once, at the first `expire(now)` with `now >= deadline` (rounded).
//! - Entries fire in deadline-tick order; within one tick, in insertion order.
//! - The wheel re-arms nothing on request: keys carry a generation and the caller skips
//!   stale ones when they fire (lazy cancellation and lazy re-arm), so a frame received on a
//!   connection costs no wheel operation. [`Wheel::cancel`] removes one entry early, for a
//!   deadline that is met at once by nearly every connection (the handshake's): found from the
//!   back of its slot, where the most recent entries are.
//! - `expire` costs O(ticks elapsed, at most one revolution + entries in visited slots);
//!   `next_deadline` scans each empty slot at most once between inserts (it remembers where
//!   the empty run ends), so a loop that asks every turn does not pay a revolution a turn.
//! - A slot holds no more than about twice the room its entries need once it has expired,
//!   so memory follows the entries, not the largest crowd that ever passed.

use std::cell::Cell;

/// Milliseconds since the caller's chosen origin.
pub type Millis = u64;

/// Number of slots; with the default 100 ms tick one revolution spans 102.4 s, so the default
/// heartbeat deadlines (30 s / 60 s) fire on their first visit.
const SLOTS: usize = 1024;

/// 16 bytes for the server's timers (a 12-byte key): one per idle connection.
struct Entry<K> {
    /// The revolution in which this entry is due: its due tick is `revolution * SLOTS` plus
    /// the index of the slot holding it, so the low bits need no storing. A `u32` lasts
    /// 2^32 revolutions (139 years at a 1 ms tick); later deadlines are held at the last one.
    revolution: u32,
    key: K,
}

impl<K> Entry<K> {
    fn due_tick(&self, slot: usize) -> u64 {
        u64::from(self.revolution) * SLOTS as u64 + slot as u64
    }
}

/// A timer wheel of keys `K` (small `Copy` handles carrying a generation).
pub struct Wheel<K> {
    tick_ms: u64,
    slots: Vec<Vec<Entry<K>>>,
    /// The first tick not yet expired; every entry is due at or after it.
    next_tick: u64,
    /// No slot of the ticks from `next_tick` up to this one holds an entry: where
    /// `next_deadline` starts its scan (lowered by inserts, raised by scans).
    scan_from: Cell<u64>,
    len: usize,
}

impl<K: Copy> Wheel<K> {
    /// A wheel whose resolution is `tick_ms` milliseconds (at least 1), starting at time `now`.
    pub fn new(tick_ms: u64, now: Millis) -> Self {
        let tick_ms = tick_ms.max(1);
        Wheel {
            tick_ms,
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            next_tick: now / tick_ms + 1,
            scan_from: Cell::new(0),
            len: 0,
        }
    }

    /// The wheel's resolution in milliseconds.
    pub fn tick_ms(&self) -> u64 {
        self.tick_ms
    }

    /// Number of entries not yet fired.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no entry is waiting.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Schedules `key` to fire at `deadline` (rounded up to a tick boundary; a deadline in the
    /// past fires at the next `expire`).
    pub fn insert(&mut self, key: K, deadline: Millis) {
        let due_tick = deadline.div_ceil(self.tick_ms).max(self.next_tick);
        let slot = slot_of(due_tick);
        let revolution = revolution_of(due_tick);
        self.slots[slot].push(Entry { revolution, key });
        self.len += 1;
        // The tick of this slot within the coming revolution.
        let ahead = (slot + SLOTS - slot_of(self.next_tick)) % SLOTS;
        let window_tick = self.next_tick + ahead as u64;
        self.scan_from.set(self.scan_from.get().min(window_tick));
    }

    /// Removes the entry of `key` put in for `deadline`, unless it already fired; true when
    /// one was removed. The entries after it keep their order.
    pub fn cancel(&mut self, key: K, deadline: Millis) -> bool
    where
        K: PartialEq,
    {
        let due_tick = deadline.div_ceil(self.tick_ms);
        if due_tick < self.next_tick {
            return false;
        }
        let revolution = revolution_of(due_tick);
        let slot = &mut self.slots[slot_of(due_tick)];
        let Some(index) = slot
            .iter()
            .rposition(|entry| entry.key == key && entry.revolution == revolution)
        else {
            return false;
        };
        slot.remove(index);
        self.len -= 1;
        if slot.is_empty() {
            *slot = Vec::new();
        }
        true
    }

    /// Moves every entry due at or before `now` into `fired`, in deadline order.
    pub fn expire(&mut self, now: Millis, fired: &mut Vec<K>) {
        let now_tick = now / self.tick_ms;
        if now_tick < self.next_tick {
            return;
        }
        let ticks = now_tick - self.next_tick + 1;
        if ticks as usize >= SLOTS {
            self.expire_whole_revolution(now_tick, fired);
        } else {
            for tick in self.next_tick..=now_tick {
                self.expire_slot(tick, fired);
            }
        }
        self.next_tick = now_tick + 1;
        debug_assert!(
            self.slots
                .iter()
                .enumerate()
                .all(|(slot, entries)| entries.iter().all(|e| e.due_tick(slot) >= self.next_tick)),
            "an entry is due before next_tick {} after expire({now})",
            self.next_tick
        );
    }

    /// The time of the earliest tick whose slot holds an entry, or `None` when empty.
    ///
    /// This may be earlier than the true earliest deadline (an entry a revolution or more
    /// ahead shares its slot), which only costs an early wake-up; never later.
    pub fn next_deadline(&self) -> Option<Millis> {
        if self.len == 0 {
            return None;
        }
        let start = self.scan_from.get().max(self.next_tick);
        let first = (start..self.next_tick + SLOTS as u64)
            .find(|&tick| !self.slots[slot_of(tick)].is_empty())?;
        self.scan_from.set(first);
        Some(first * self.tick_ms)
    }

    fn expire_slot(&mut self, tick: u64, fired: &mut Vec<K>) {
        let index = slot_of(tick);
        let slot = &mut self.slots[index];
        let before = slot.len();
        slot.retain(|entry| {
            if entry.due_tick(index) <= tick {
                fired.push(entry.key);
                false
            } else {
                true
            }
        });
        self.len -= before - slot.len();
        release_spare(slot);
    }

    /// After a stall longer than a revolution every slot is visited once; entries of one
    /// call are then ordered by their due tick so the order invariant still holds.
    fn expire_whole_revolution(&mut self, now_tick: u64, fired: &mut Vec<K>) {
        let mut due = Vec::new();
        for (index, slot) in self.slots.iter_mut().enumerate() {
            slot.retain(|entry| {
                let due_tick = entry.due_tick(index);
                if due_tick <= now_tick {
                    due.push((due_tick, entry.key));
                }
                due_tick > now_tick
            });
        }
        self.slots.iter_mut().for_each(release_spare);
        // Stable: entries of one tick share a slot and keep their insertion order.
        due.sort_by_key(|&(due_tick, _)| due_tick);
        self.len -= due.len();
        fired.extend(due.into_iter().map(|(_, key)| key));
    }
}

/// Gives back what a slot no longer needs. A crowd of deadlines (every connection of a
/// reconnect storm) passes through slot after slot; without this each slot it visited would
/// keep room for all of it, forever.
fn release_spare<K>(slot: &mut Vec<Entry<K>>) {
    if slot.is_empty() {
        *slot = Vec::new();
    } else if slot.capacity() > 4 * slot.len() {
        slot.shrink_to(2 * slot.len());
    }
}

fn slot_of(tick: u64) -> usize {
    (tick % SLOTS as u64) as usize
}

/// The revolution an entry due at `due_tick` is kept under (see [`Entry::revolution`]).
fn revolution_of(due_tick: u64) -> u32 {
    u32::try_from(due_tick / SLOTS as u64).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expired(wheel: &mut Wheel<u32>, now: Millis) -> Vec<u32> {
        let mut fired = Vec::new();
        wheel.expire(now, &mut fired);
        fired
    }

    #[test]
    fn a_cancelled_entry_never_fires_and_the_others_keep_their_order() {
        let mut wheel = Wheel::new(100, 0);
        for key in 0..5u32 {
            wheel.insert(key, 450);
        }
        wheel.insert(9, 450 + 102_400);
        assert!(wheel.cancel(2, 450));
        assert!(!wheel.cancel(2, 450), "only once");
        assert!(
            !wheel.cancel(9, 450),
            "another revolution's entry is not this one"
        );
        assert!(!wheel.cancel(7, 450), "never put in");
        assert_eq!(wheel.len(), 5);
        assert_eq!(expired(&mut wheel, 500), vec![0, 1, 3, 4]);
        assert!(!wheel.cancel(3, 450), "already fired");
        assert!(wheel.cancel(9, 450 + 102_400));
        assert!(wheel.is_empty());
        assert_eq!(wheel.next_deadline(), None);
    }

    #[test]
    fn insert_then_expire_at_deadline() {
        let mut wheel = Wheel::new(100, 0);
        wheel.insert(1, 500);
        assert_eq!(wheel.len(), 1);
        assert_eq!(expired(&mut wheel, 499), Vec::<u32>::new());
        assert_eq!(expired(&mut wheel, 500), vec![1]);
        assert!(wheel.is_empty());
        assert_eq!(
            expired(&mut wheel, 10_000),
            Vec::<u32>::new(),
            "fires exactly once"
        );
    }

    #[test]
    fn deadlines_round_up_never_fire_early() {
        let mut wheel = Wheel::new(100, 0);
        wheel.insert(7, 101);
        assert_eq!(wheel.next_deadline(), Some(200));
        assert_eq!(expired(&mut wheel, 199), Vec::<u32>::new());
        assert_eq!(expired(&mut wheel, 200), vec![7]);
    }

    #[test]
    fn past_deadline_fires_on_next_expire() {
        let mut wheel = Wheel::new(100, 1_000);
        wheel.insert(3, 10);
        assert_eq!(
            expired(&mut wheel, 1_050),
            Vec::<u32>::new(),
            "still inside tick 10"
        );
        assert_eq!(expired(&mut wheel, 1_100), vec![3]);
    }

    #[test]
    fn expiry_order_is_deadline_then_insertion() {
        let mut wheel = Wheel::new(10, 0);
        wheel.insert(30, 300);
        wheel.insert(10, 100);
        wheel.insert(20, 200);
        wheel.insert(11, 100);
        assert_eq!(expired(&mut wheel, 1_000), vec![10, 11, 20, 30]);
    }

    #[test]
    fn entries_a_revolution_ahead_wait_their_turn() {
        let mut wheel = Wheel::new(10, 0);
        let far = 10 * SLOTS as u64 + 50;
        wheel.insert(1, 50);
        wheel.insert(2, far);
        assert_eq!(expired(&mut wheel, 60), vec![1]);
        assert_eq!(expired(&mut wheel, far - 10), Vec::<u32>::new());
        assert_eq!(expired(&mut wheel, far), vec![2]);
    }

    #[test]
    fn long_stall_expires_everything_due_in_order() {
        let mut wheel = Wheel::new(10, 0);
        for (key, deadline) in [(3, 9_000), (1, 20), (2, 5_000), (4, 50_000)] {
            wheel.insert(key, deadline);
        }
        assert_eq!(expired(&mut wheel, 30_000), vec![1, 2, 3]);
        assert_eq!(wheel.len(), 1);
        assert_eq!(expired(&mut wheel, 50_000), vec![4]);
    }

    #[test]
    fn next_deadline_tracks_the_earliest_slot() {
        let mut wheel = Wheel::new(100, 0);
        assert_eq!(wheel.next_deadline(), None);
        wheel.insert(1, 3_000);
        wheel.insert(2, 700);
        assert_eq!(wheel.next_deadline(), Some(700));
        expired(&mut wheel, 700);
        assert_eq!(wheel.next_deadline(), Some(3_000));
    }

    /// The lazy re-arm pattern the server uses for heartbeats: activity only moves a
    /// `last_seen` field; when the old entry fires, it is re-inserted at the real deadline.
    #[test]
    fn lazy_rearm_costs_one_insert_per_firing_not_per_frame() {
        let interval = 1_000;
        let mut wheel = Wheel::new(100, 0);
        let mut last_seen = 0;
        wheel.insert(1, last_seen + interval);
        for frame_at in (50..950).step_by(50) {
            last_seen = frame_at;
        }
        assert_eq!(wheel.len(), 1, "frames did not touch the wheel");
        let fired = expired(&mut wheel, 1_000);
        assert_eq!(fired, vec![1]);
        assert!(
            last_seen + interval > 1_000,
            "not due yet: re-arm at the real deadline"
        );
        wheel.insert(1, last_seen + interval);
        assert_eq!(expired(&mut wheel, 1_899), Vec::<u32>::new());
        assert_eq!(expired(&mut wheel, 1_900), vec![1]);
    }

    /// A key whose generation is stale is still delivered by the wheel; the owner must skip it.
    #[test]
    fn generation_skip_is_the_owners_job() {
        use crate::ids::{named, Slots};
        let mut conns = Slots::default();
        let old = conns.insert(named("old"));
        let mut wheel = Wheel::new(100, 0);
        wheel.insert(old, 500);
        conns.remove(old);
        let new = conns.insert(named("new"));
        assert_eq!(new.slot, old.slot);
        let mut fired = Vec::new();
        wheel.expire(500, &mut fired);
        assert_eq!(fired, vec![old]);
        let applied: Vec<_> = fired.iter().filter_map(|key| conns.get(*key)).collect();
        assert!(
            applied.is_empty(),
            "a stale entry must not reach the new connection"
        );
    }

    /// Every idle connection keeps one entry: its size is in the README's memory table.
    #[test]
    fn an_entry_of_a_twelve_byte_key_is_sixteen_bytes() {
        assert_eq!(std::mem::size_of::<Entry<[u32; 3]>>(), 16);
    }

    #[test]
    fn a_deadline_many_revolutions_ahead_fires_at_its_tick_and_not_before() {
        let mut wheel = Wheel::new(1, 0);
        let far = 5 * SLOTS as u64 + 7;
        wheel.insert(1, far);
        wheel.insert(2, 7);
        assert_eq!(expired(&mut wheel, 7), [2]);
        assert_eq!(expired(&mut wheel, far - 1), Vec::<u32>::new());
        assert_eq!(expired(&mut wheel, far), [1]);
    }

    #[test]
    fn a_crowd_passing_through_leaves_no_room_behind() {
        let mut wheel = Wheel::new(10, 0);
        let mut now = 0;
        for key in 0..10_000u32 {
            wheel.insert(key, 10);
        }
        // The crowd moves one slot on at each expiry, as synchronized heartbeats would.
        for _ in 0..50 {
            now += 10;
            let fired = expired(&mut wheel, now);
            assert_eq!(fired.len(), 10_000);
            for key in fired {
                wheel.insert(key, now + 10);
            }
        }
        let room: usize = wheel.slots.iter().map(Vec::capacity).sum();
        assert!(
            room < 2 * 10_000 + 64,
            "{room} entries of room kept for 10,000 entries"
        );
    }

    #[test]
    fn hundred_thousand_entries_expire_in_one_call() {
        let mut wheel = Wheel::new(100, 0);
        for key in 0..100_000u32 {
            wheel.insert(key, 1_000 + u64::from(key % 10) * 10);
        }
        let fired = expired(&mut wheel, 1_100);
        assert_eq!(fired.len(), 100_000);
        assert!(wheel.is_empty());
    }
}
