//! Dense tables of per-connection values in the slot of the connection's id: the engine's
//! sessions ([`SlotTable`]) and what some connections keep beside their session
//! (`Beside`: the Pusher sockets).
//!
//! Ids are the socket layer's: it allocates `{slot, generation}` when it accepts, and the
//! engine keeps a connection's values in the same slot, so no map stands between the two and
//! a stale id (an older generation) finds nothing. Each value keeps the generation of the id
//! it is held under in its own padding (see [`Stamped`]): beside it, a slot would cost
//! 8 bytes more.
//!
//! Invariant: a slot holds a value exactly between its `insert` and its `remove`; the table's
//! tail is given back when the connections that used it are gone.

use crate::ids::{Key, Stamped};
use crate::roster::ConnId;

/// Values by connection id, in the slot of the id.
pub(crate) struct SlotTable<T> {
    slots: Vec<Option<T>>,
    len: usize,
}

impl<T> Default for SlotTable<T> {
    fn default() -> Self {
        SlotTable {
            slots: Vec::new(),
            len: 0,
        }
    }
}

impl<T: Stamped> SlotTable<T> {
    /// Holds `value` under `id`, replacing whatever an older generation left.
    pub fn insert(&mut self, id: ConnId, mut value: T) {
        let slot = id.slot as usize;
        if slot >= self.slots.len() {
            self.slots.resize_with(slot + 1, || None);
        }
        value.stamp(id.generation);
        let previous = self.slots[slot].replace(value);
        self.len += 1;
        self.len -= usize::from(previous.is_some());
    }

    /// The value of `id`, unless it is gone.
    pub fn get(&self, id: ConnId) -> Option<&T> {
        let value = self.slots.get(id.slot as usize)?.as_ref()?;
        (value.generation() == id.generation).then_some(value)
    }

    /// Mutable access to the value of `id`, unless it is gone.
    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut T> {
        let value = self.slots.get_mut(id.slot as usize)?.as_mut()?;
        (value.generation() == id.generation).then_some(value)
    }

    /// Takes the value of `id` out, unless it is gone; gives back the table's tail when the
    /// connections that used it are gone.
    pub fn remove(&mut self, id: ConnId) -> Option<T> {
        let held = self.slots.get_mut(id.slot as usize)?;
        if held
            .as_ref()
            .is_none_or(|v| v.generation() != id.generation)
        {
            return None;
        }
        let value = held.take()?;
        self.len -= 1;
        give_back_tail(&mut self.slots);
        Some(value)
    }

    /// The number of values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Every value with its id.
    pub fn iter(&self) -> impl Iterator<Item = (ConnId, &T)> {
        self.slots.iter().enumerate().filter_map(|(slot, held)| {
            let value = held.as_ref()?;
            let id = Key {
                slot: slot as u32,
                generation: value.generation(),
            };
            Some((id, value))
        })
    }
}

/// Values kept beside the sessions, in the slot of the connection's id, without a generation
/// of their own: each lives exactly as long as the session in its slot (set after the session
/// is held, taken when it ends), so the sessions' table, asked first, tells whether an id is
/// current.
#[cfg(feature = "pusher")]
pub(crate) struct Beside<T> {
    slots: Vec<Option<T>>,
}

#[cfg(feature = "pusher")]
impl<T> Default for Beside<T> {
    fn default() -> Self {
        Beside { slots: Vec::new() }
    }
}

#[cfg(feature = "pusher")]
impl<T> Beside<T> {
    /// Holds `value` in `slot`.
    pub fn set(&mut self, slot: u32, value: T) {
        let slot = slot as usize;
        if slot >= self.slots.len() {
            self.slots.resize_with(slot + 1, || None);
        }
        self.slots[slot] = Some(value);
    }

    /// The value in `slot`.
    pub fn get(&self, slot: u32) -> Option<&T> {
        self.slots.get(slot as usize)?.as_ref()
    }

    /// The value in `slot`, to change.
    pub fn get_mut(&mut self, slot: u32) -> Option<&mut T> {
        self.slots.get_mut(slot as usize)?.as_mut()
    }

    /// Takes the value out of `slot`; gives back the table's tail when its slots are empty.
    pub fn take(&mut self, slot: u32) -> Option<T> {
        let value = self.slots.get_mut(slot as usize)?.take();
        give_back_tail(&mut self.slots);
        value
    }
}

/// Drops the empty slots at the end of `slots`, and the room of a table that shrank to less
/// than half of it.
fn give_back_tail<T>(slots: &mut Vec<Option<T>>) {
    while matches!(slots.last(), Some(None)) {
        slots.pop();
    }
    if slots.capacity() > 2 * slots.len() + 64 {
        slots.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::named;

    #[test]
    fn a_stale_id_finds_nothing_and_the_tail_is_given_back() {
        let mut table = SlotTable::default();
        let id = |slot, generation| Key { slot, generation };
        table.insert(id(3, 1), named("first"));
        assert_eq!(table.len(), 1);
        assert!(table.get(id(3, 0)).is_none(), "an older generation");
        assert!(table.remove(id(3, 2)).is_none(), "a newer generation");
        assert_eq!(table.get(id(3, 1)).map(|v| v.0), Some("first"));
        table.insert(id(3, 2), named("second"));
        assert_eq!(table.len(), 1, "the newer generation replaced the older");
        assert!(table.get_mut(id(3, 1)).is_none());
        assert_eq!(
            table.iter().map(|(key, _)| key).collect::<Vec<_>>(),
            [id(3, 2)]
        );
        assert!(table.remove(id(3, 2)).is_some());
        assert_eq!((table.len(), table.slots.len()), (0, 0));
    }

    #[cfg(feature = "pusher")]
    #[test]
    fn a_value_beside_lives_in_its_slot_until_taken() {
        let mut beside = Beside::default();
        beside.set(2, "two");
        beside.set(0, "zero");
        assert_eq!(beside.get(2), Some(&"two"));
        assert_eq!(beside.get(1), None);
        if let Some(value) = beside.get_mut(0) {
            *value = "nought";
        }
        assert_eq!(beside.take(2), Some("two"));
        assert_eq!(beside.slots.len(), 1, "the empty tail is given back");
        assert_eq!(beside.take(0), Some("nought"));
        assert_eq!(beside.take(0), None);
        assert!(beside.slots.is_empty());
    }
}
