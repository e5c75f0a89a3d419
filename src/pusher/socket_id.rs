//! Socket ids: what a Pusher connection is called on the wire (`\d+\.\d+`, the pattern the
//! server SDKs' `validateSocketId` accepts), and back.
//!
//! A socket id is the connection's `{slot, generation}` each offset by a random number drawn
//! when the server starts: unique among open connections (the key is), unlike another
//! server's ids or an earlier run's, and turned back into the key without a table (the REST
//! API's `socket_id` exclusion names a connection by it).

use crate::ids::Key;

/// The offsets of one server's socket ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketIds {
    slot_offset: u64,
    generation_offset: u64,
}

/// Offsets stay below 10^12 so that an id stays short (at most 13 digits a part).
const OFFSET_RANGE: u64 = 1_000_000_000_000;

impl SocketIds {
    /// Offsets from a random `seed`.
    pub fn new(seed: u64) -> SocketIds {
        let mixed = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        SocketIds {
            slot_offset: seed % OFFSET_RANGE,
            generation_offset: mixed.rotate_left(29) % OFFSET_RANGE,
        }
    }

    /// The socket id of connection `key`.
    pub fn format(self, key: Key) -> String {
        format!(
            "{}.{}",
            self.slot_offset + u64::from(key.slot),
            self.generation_offset + u64::from(key.generation)
        )
    }

    /// The connection a socket id names, if it is one of this server's shape.
    pub fn parse(self, text: &str) -> Option<Key> {
        let (slot, generation) = text.split_once('.')?;
        let number = |part: &str| {
            part.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| part.parse::<u64>().ok())
                .flatten()
        };
        let slot = number(slot)?.checked_sub(self.slot_offset)?;
        let generation = number(generation)?.checked_sub(self.generation_offset)?;
        Some(Key {
            slot: u32::try_from(slot).ok()?,
            generation: u32::try_from(generation).ok()?,
        })
    }
}

/// True for text of the socket id shape `\d+\.\d+` (any server's: the SDKs check this much).
pub fn is_socket_id(text: &str) -> bool {
    text.split_once('.').is_some_and(|(a, b)| {
        !a.is_empty() && !b.is_empty() && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_look_like_pushers() {
        let ids = SocketIds::new(0xdead_beef_1234_5678);
        for key in [
            Key {
                slot: 0,
                generation: 0,
            },
            Key {
                slot: 7,
                generation: 3,
            },
            Key {
                slot: u32::MAX,
                generation: u32::MAX,
            },
        ] {
            let text = ids.format(key);
            let (a, b) = text.split_once('.').expect("a dot");
            assert!(!a.is_empty() && !b.is_empty(), "{text}");
            assert!(
                a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit()),
                "{text}"
            );
            assert_eq!(ids.parse(&text), Some(key), "{text}");
        }
        assert_ne!(
            SocketIds::new(1).format(Key {
                slot: 1,
                generation: 1
            }),
            SocketIds::new(2).format(Key {
                slot: 1,
                generation: 1
            }),
            "another run, other ids"
        );
        for bad in ["", "1", "a.b", "1.2.3", "-1.2", "+1.2", "1.", ".1", "0.0"] {
            assert_eq!(ids.parse(bad), None, "{bad}");
        }
        assert!(is_socket_id("123.456") && is_socket_id("0.0"));
        for bad in ["", "1", "a.b", "1.2.3", "-1.2", "1.", ".1"] {
            assert!(!is_socket_id(bad), "{bad}");
        }
    }
}
