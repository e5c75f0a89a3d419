//! The syntax shared by user ids and channel names: 1 to 64 characters of
//! `A-Z a-z 0-9 _ . @ -`.
//!
//! Because the alphabet needs no escaping in JSON, URLs or log lines, a validated name can be
//! written anywhere verbatim; every place a name enters (URL, command) validates it here.

use std::fmt;

/// Longest accepted name, in bytes (all accepted characters are one byte).
pub const MAX_LEN: usize = 64;

/// Why a string is not a valid name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    /// The name is empty.
    Empty,
    /// The name is longer than [`MAX_LEN`].
    TooLong(usize),
    /// The name contains a character outside the alphabet.
    BadCharacter(char),
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => write!(f, "must not be empty"),
            NameError::TooLong(len) => {
                write!(f, "is {len} characters long, the limit is {MAX_LEN}")
            }
            NameError::BadCharacter(c) => {
                write!(f, "contains {c:?}; allowed are letters, digits and _ . @ -")
            }
        }
    }
}

impl std::error::Error for NameError {}

/// Checks `name` against the shared alphabet and length.
pub fn validate(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if let Some(c) = name.chars().find(|c| !is_allowed(*c)) {
        return Err(NameError::BadCharacter(c));
    }
    if name.len() > MAX_LEN {
        return Err(NameError::TooLong(name.len()));
    }
    Ok(())
}

fn is_allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_alphabet_up_to_the_limit() {
        assert_eq!(validate("alice"), Ok(()));
        assert_eq!(validate("a.b-c_d@example.com"), Ok(()));
        assert_eq!(validate(&"x".repeat(MAX_LEN)), Ok(()));
    }

    #[test]
    fn rejects_empty_long_and_foreign() {
        assert_eq!(validate(""), Err(NameError::Empty));
        assert_eq!(validate(&"x".repeat(65)), Err(NameError::TooLong(65)));
        assert_eq!(validate("a b"), Err(NameError::BadCharacter(' ')));
        assert_eq!(validate("chat:1"), Err(NameError::BadCharacter(':')));
        assert_eq!(validate("é"), Err(NameError::BadCharacter('é')));
        assert_eq!(validate("\"}"), Err(NameError::BadCharacter('"')));
    }
}
