//! A user id: 16 bytes, shared by every connection, membership and event of its user, with
//! no heap allocation for an id of up to [`INLINE_MAX`] bytes.
//!
//! Every present user is named in the roster's users and in each channel it is a member of,
//! and each of its connections names it again: one `Rc<str>` per user cost a 32-byte
//! allocation of its own (about a tenth of an idle connection) and left one more small
//! long-lived block between the short-lived buffers of a burst of arrivals. The ids apps use
//! are mostly short (numeric ids, short handles), so they are kept inside the 16 bytes; a
//! longer one (a UUID) is one shared allocation, as before, behind a thin pointer.
//!
//! Invariants: an id of at most [`INLINE_MAX`] bytes is always inline, so two equal ids have
//! the same representation and comparisons can go by the text alone; an inline id's bytes
//! past its length are zero, so two inline ids compare as two integers (see [`Ord`]).

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use arcstr::ArcStr;

/// The longest id kept inline.
pub const INLINE_MAX: usize = 15;

/// A user id (see the module documentation). Dereferences to its text; ordered, compared and
/// hashed as that text, so a map keyed by ids is searched with a `&str`.
#[derive(Clone)]
pub struct UserId(Repr);

#[derive(Clone)]
enum Repr {
    /// The text in the first `len` bytes of `bytes`.
    Inline {
        len: InlineLen,
        bytes: [u8; INLINE_MAX],
    },
    /// A longer text, shared. `ArcStr` is one pointer (its length lives in the allocation),
    /// which fits beside the inline variant's length byte: the enum stays 16 bytes.
    Shared(ArcStr),
}

/// The length of an inline id: an enum of exactly the values 0..=15, so that the other values
/// of its byte tell [`Repr::Shared`] apart without a tag of its own.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum InlineLen {
    L0,
    L1,
    L2,
    L3,
    L4,
    L5,
    L6,
    L7,
    L8,
    L9,
    L10,
    L11,
    L12,
    L13,
    L14,
    L15,
}

impl InlineLen {
    const ALL: [InlineLen; INLINE_MAX + 1] = [
        InlineLen::L0,
        InlineLen::L1,
        InlineLen::L2,
        InlineLen::L3,
        InlineLen::L4,
        InlineLen::L5,
        InlineLen::L6,
        InlineLen::L7,
        InlineLen::L8,
        InlineLen::L9,
        InlineLen::L10,
        InlineLen::L11,
        InlineLen::L12,
        InlineLen::L13,
        InlineLen::L14,
        InlineLen::L15,
    ];
}

impl UserId {
    /// The id's text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Inline { len, bytes } => {
                let text = &bytes[..*len as usize];
                // SAFETY: inline bytes are only ever written by `From<&str>`, which copies a
                // whole `str`, and `len` is that str's length: they are valid UTF-8.
                unsafe { std::str::from_utf8_unchecked(text) }
            }
            Repr::Shared(text) => text,
        }
    }

    /// An inline id's bytes and length as one integer whose order is the text's: the bytes,
    /// zero-padded, big-endian in the high 15 bytes, and the length in the lowest. Where one
    /// text is a prefix of the other, the padding's zeros compare at most equal to the longer
    /// one's bytes, and the length breaks the tie (a prefix orders first, as with `str`).
    /// `None` for a shared id.
    fn inline_key(&self) -> Option<u128> {
        match &self.0 {
            Repr::Inline { len, bytes } => {
                let mut word = [0; INLINE_MAX + 1];
                word[..INLINE_MAX].copy_from_slice(bytes);
                word[INLINE_MAX] = *len as u8;
                Some(u128::from_be_bytes(word))
            }
            Repr::Shared(_) => None,
        }
    }

    /// True when the id needed no allocation of its own.
    pub fn is_inline(&self) -> bool {
        matches!(self.0, Repr::Inline { .. })
    }
}

impl From<&str> for UserId {
    fn from(text: &str) -> UserId {
        match InlineLen::ALL.get(text.len()) {
            Some(&len) => {
                let mut bytes = [0; INLINE_MAX];
                bytes[..text.len()].copy_from_slice(text.as_bytes());
                UserId(Repr::Inline { len, bytes })
            }
            None => UserId(Repr::Shared(ArcStr::from(text))),
        }
    }
}

impl From<String> for UserId {
    fn from(text: String) -> UserId {
        UserId::from(text.as_str())
    }
}

impl Deref for UserId {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for UserId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for UserId {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for UserId {
    fn eq(&self, other: &UserId) -> bool {
        match (self.inline_key(), other.inline_key()) {
            (Some(mine), Some(theirs)) => mine == theirs,
            _ => self.as_str() == other.as_str(),
        }
    }
}

impl Eq for UserId {}

impl PartialEq<str> for UserId {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for UserId {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialOrd for UserId {
    fn partial_cmp(&self, other: &UserId) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for UserId {
    /// As their texts order. Two inline ids (the common case, and the presence maps' hot
    /// path: every join and leave searches them) compare as two integers, not through
    /// `memcmp`.
    fn cmp(&self, other: &UserId) -> Ordering {
        match (self.inline_key(), other.inline_key()) {
            (Some(mine), Some(theirs)) => mine.cmp(&theirs),
            _ => self.as_str().cmp(other.as_str()),
        }
    }
}

impl Hash for UserId {
    /// As `str` hashes, which `Borrow<str>` requires of a map key.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashMap};

    /// Every roster entry and session carries one: growing it grows every idle connection.
    #[test]
    fn an_id_takes_16_bytes() {
        assert_eq!(std::mem::size_of::<UserId>(), 16);
        assert_eq!(std::mem::size_of::<Option<UserId>>(), 16);
    }

    #[test]
    fn short_ids_are_inline_and_long_ones_shared() {
        let short = UserId::from("é-123456789012");
        assert_eq!(short.len(), INLINE_MAX);
        assert!(short.is_inline());
        assert_eq!(&*short, "é-123456789012");
        let long = UserId::from("0f8fad5b-d9cb-469f-a165-70867728950e");
        assert!(!long.is_inline());
        assert_eq!(&*long, "0f8fad5b-d9cb-469f-a165-70867728950e");
        assert!(UserId::from("").is_inline());
        assert_eq!(UserId::from("1234567890123456").len(), 16);
    }

    #[test]
    fn compares_orders_and_hashes_as_its_text() {
        let names = [
            "b",
            "a",
            "",
            "a-much-longer-user-id",
            "a-much-longer-user-i",
            "ab",
        ];
        let mut ids: Vec<UserId> = names.iter().map(|&n| UserId::from(n)).collect();
        ids.sort();
        let mut sorted = names.to_vec();
        sorted.sort();
        assert_eq!(ids.iter().map(|id| id.as_str()).collect::<Vec<_>>(), sorted);

        let by_id: BTreeMap<UserId, usize> = ids.iter().cloned().zip(0..).collect();
        let hashed: HashMap<UserId, usize> = ids.iter().cloned().zip(0..).collect();
        for name in names {
            assert_eq!(
                by_id.get(name),
                hashed.get(name),
                "{name:?} found both ways"
            );
            assert!(by_id.contains_key(name));
        }
        assert_eq!(UserId::from("x"), UserId::from(String::from("x")));
        assert_ne!(UserId::from("x"), UserId::from("y"));
    }

    proptest::proptest! {
        /// Prefixes, NUL bytes (equal to the padding), high bytes and lengths on both sides of
        /// the inline limit: the integer comparison must order and equate as `str` does.
        #[test]
        fn orders_and_equates_as_str_does(
            a in "[a\\x00\\xff]{0,17}",
            tail in "[a\\x00\u{e9}]{0,3}",
            other in "[a\\x00\u{e9}]{0,17}",
            extend in proptest::bool::ANY,
        ) {
            // Half the pairs are a text and the same text extended (a prefix case).
            let b = if extend { format!("{a}{tail}") } else { other };
            let (x, y) = (UserId::from(a.as_str()), UserId::from(b.as_str()));
            proptest::prop_assert_eq!(x.cmp(&y), a.cmp(&b));
            proptest::prop_assert_eq!(x == y, a == b);
        }
    }
}
