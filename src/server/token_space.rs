//! Which `mio` tokens belong to a server, so that it can share a `Poll` with its host.
//!
//! A server uses every token whose top 16 bits equal its tag: a block of 2^48 tokens the host
//! chooses (the default tag is `0xFFFF`, the very top of the token space, far from the small
//! numbers hosts use). Inside the block, a connection's token packs the low 16 bits of its
//! generation above its 32-bit slot, so an event that outlived its connection is recognised
//! (a slot would have to be reused 65,536 times within one poll batch to fool it); the
//! highest slots, which a slab never reaches, name the listener, the signal pipe, the
//! waker and, in a cluster, the two Redis connections.

use mio::Token;

use crate::ids::Key;

/// The block of `mio` tokens a server uses: every token whose top 16 bits are the tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenSpace {
    tag: u16,
}

/// What one of a server's tokens names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Listener,
    Signals,
    Waker,
    /// The cluster's Redis connection for commands.
    RedisCommands,
    /// The cluster's Redis connection subscribed to the notes.
    RedisNotes,
    /// The connection to a webhook URL (its index).
    Webhook(usize),
    /// A connection: its slot and the low 16 bits of its generation.
    Connection {
        slot: u32,
        generation: u16,
    },
}

const SLOT_BITS: u32 = 32;
const GENERATION_BITS: u32 = 16;
const TAG_SHIFT: u32 = SLOT_BITS + GENERATION_BITS;
const LISTENER_SLOT: u32 = u32::MAX;
const SIGNALS_SLOT: u32 = u32::MAX - 1;
const WAKER_SLOT: u32 = u32::MAX - 2;
const REDIS_COMMANDS_SLOT: u32 = u32::MAX - 3;
const REDIS_NOTES_SLOT: u32 = u32::MAX - 4;
/// Webhook URL `i` has slot `WEBHOOK_SLOT - i`, for `i` below [`crate::webhook::MAX_URLS`].
const WEBHOOK_SLOT: u32 = u32::MAX - 5;
const WEBHOOK_LOWEST: u32 = WEBHOOK_SLOT - crate::webhook::MAX_URLS as u32 + 1;

impl Default for TokenSpace {
    fn default() -> Self {
        TokenSpace::new(0xFFFF)
    }
}

impl TokenSpace {
    /// The block of tokens whose top 16 bits are `tag`: `tag << 48` up to, and not
    /// including, `(tag + 1) << 48`.
    pub const fn new(tag: u16) -> Self {
        TokenSpace { tag }
    }

    /// True when `token` is in this block (the host forwards such events to the server).
    pub fn contains(self, token: Token) -> bool {
        (token.0 as u64 >> TAG_SHIFT) as u16 == self.tag
    }

    pub(crate) fn connection(self, key: Key) -> Token {
        self.token(key.slot, key.generation as u16)
    }

    pub(crate) fn listener(self) -> Token {
        self.token(LISTENER_SLOT, 0)
    }

    #[cfg_attr(not(feature = "signals"), allow(dead_code))]
    pub(crate) fn signals(self) -> Token {
        self.token(SIGNALS_SLOT, 0)
    }

    pub(crate) fn waker(self) -> Token {
        self.token(WAKER_SLOT, 0)
    }

    pub(crate) fn redis_commands(self) -> Token {
        self.token(REDIS_COMMANDS_SLOT, 0)
    }

    pub(crate) fn redis_notes(self) -> Token {
        self.token(REDIS_NOTES_SLOT, 0)
    }

    // Only webhooks register these (feature `webhooks`); the token tests use it either way.
    #[cfg_attr(not(feature = "webhooks"), allow(dead_code))]
    pub(crate) fn webhook(self, url: usize) -> Token {
        debug_assert!(url < crate::webhook::MAX_URLS, "webhook URL {url}");
        self.token(WEBHOOK_SLOT - url as u32, 0)
    }

    /// What `token` names, or `None` when it is not this server's.
    pub(crate) fn classify(self, token: Token) -> Option<Target> {
        if !self.contains(token) {
            return None;
        }
        let bits = token.0 as u64;
        let slot = bits as u32;
        Some(match slot {
            LISTENER_SLOT => Target::Listener,
            SIGNALS_SLOT => Target::Signals,
            WAKER_SLOT => Target::Waker,
            REDIS_COMMANDS_SLOT => Target::RedisCommands,
            REDIS_NOTES_SLOT => Target::RedisNotes,
            WEBHOOK_LOWEST..=WEBHOOK_SLOT => Target::Webhook((WEBHOOK_SLOT - slot) as usize),
            _ => Target::Connection {
                slot,
                generation: (bits >> SLOT_BITS) as u16,
            },
        })
    }

    fn token(self, slot: u32, generation: u16) -> Token {
        let bits =
            u64::from(self.tag) << TAG_SHIFT | u64::from(generation) << SLOT_BITS | u64::from(slot);
        Token(bits as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_tokens_round_trip_with_their_generation() {
        let space = TokenSpace::new(7);
        let key = Key {
            slot: 42,
            generation: 0x1_0003,
        };
        let token = space.connection(key);
        assert!(space.contains(token));
        assert_eq!(
            space.classify(token),
            Some(Target::Connection {
                slot: 42,
                generation: 3
            })
        );
    }

    #[test]
    fn reserved_tokens_are_distinct_and_inside_the_block() {
        let space = TokenSpace::default();
        let reserved = [
            space.listener(),
            space.signals(),
            space.waker(),
            space.redis_commands(),
            space.redis_notes(),
            space.webhook(0),
            space.webhook(crate::webhook::MAX_URLS - 1),
        ];
        assert_eq!(
            reserved.map(|token| space.classify(token)),
            [
                Some(Target::Listener),
                Some(Target::Signals),
                Some(Target::Waker),
                Some(Target::RedisCommands),
                Some(Target::RedisNotes),
                Some(Target::Webhook(0)),
                Some(Target::Webhook(crate::webhook::MAX_URLS - 1)),
            ]
        );
    }

    #[test]
    fn other_blocks_and_small_host_tokens_are_not_ours() {
        let space = TokenSpace::new(1);
        for token in [
            Token(0),
            Token(1),
            Token(usize::MAX),
            TokenSpace::new(2).listener(),
        ] {
            assert!(!space.contains(token), "{token:?}");
            assert_eq!(space.classify(token), None);
        }
    }
}
