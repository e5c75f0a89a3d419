//! The syntax of user ids and channel names: what every place a name enters (URL, command,
//! token, host call, cluster note) checks before the name goes any further.
//!
//! - A **user id** is the identity an app already has: any UTF-8 text of 1 to
//!   [`MAX_USER_LEN`] bytes without control characters (U+0000-U+001F, U+007F): an email with
//!   `+`, a UUID, an Auth0 subject `auth0|5f7c…`, a name in any script.
//! - A **channel name** is 1 to [`MAX_CHANNEL_LEN`] bytes of ASCII letters, digits and
//!   `_ - = @ , . ; : /` (Pusher's alphabet plus `:` and `/`, for `room:lobby` and
//!   `studio/1/live`). `*` is reserved for grant patterns, `#` for server-to-user channels.
//!
//! Lengths are in bytes, as they are stored. A user id may hold `"`, `\` or `<`: it is
//! escaped wherever it leaves ([`crate::model::JsonStr`] in JSON, `{:?}` in log lines). A
//! channel name never needs escaping in JSON, a URL path or a log line, but is written
//! through the same escaper, whose fast path makes that free. Neither can hold a tab (the
//! cluster's note separator) or a space (the first space splits the script's
//! `"CHANNEL USER"` fields).

use std::fmt;

/// Longest accepted user id, in bytes.
pub const MAX_USER_LEN: usize = 128;

/// Longest accepted channel name, in bytes (all its characters are one byte).
pub const MAX_CHANNEL_LEN: usize = 200;

/// The punctuation a channel name may hold besides ASCII letters and digits.
pub const CHANNEL_PUNCTUATION: &str = "_-=@,.;:/";

/// Why a string is not a valid user id or channel name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    /// The name is empty.
    Empty,
    /// The name is longer than its limit, in bytes.
    TooLong {
        /// Its length, in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A user id holds a control character.
    Control(char),
    /// A channel name holds a character outside its alphabet.
    BadCharacter(char),
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            NameError::Empty => write!(f, "must not be empty"),
            NameError::TooLong { len, max } => {
                write!(f, "is {len} bytes long, the limit is {max} bytes")
            }
            NameError::Control(c) => write!(
                f,
                "contains the control character U+{:04X}; user ids may hold any other character",
                u32::from(c)
            ),
            NameError::BadCharacter('*') => {
                write!(f, "contains '*', which is reserved for grant patterns")
            }
            NameError::BadCharacter('#') => {
                write!(
                    f,
                    "contains '#', which is reserved for server-to-user channels"
                )
            }
            NameError::BadCharacter(c) => write!(
                f,
                "contains {c:?}; channel names hold ASCII letters, digits and {}",
                spaced(CHANNEL_PUNCTUATION)
            ),
        }
    }
}

impl std::error::Error for NameError {}

/// `"_-="` as `"_ - ="`, for messages.
fn spaced(punctuation: &str) -> String {
    let mut out = String::with_capacity(punctuation.len() * 2);
    for (index, c) in punctuation.chars().enumerate() {
        if index > 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// Checks a user id: 1 to [`MAX_USER_LEN`] bytes, no control character.
pub fn validate_user(user: &str) -> Result<(), NameError> {
    check_len(user, MAX_USER_LEN)?;
    // Control characters are ASCII, and no byte of a multi-byte UTF-8 character is.
    match user.bytes().find(u8::is_ascii_control) {
        Some(byte) => Err(NameError::Control(char::from(byte))),
        None => Ok(()),
    }
}

/// Checks a channel name: 1 to [`MAX_CHANNEL_LEN`] bytes of its alphabet.
pub fn validate_channel(channel: &str) -> Result<(), NameError> {
    if let Some(c) = channel.chars().find(|c| !is_channel_char(*c)) {
        return Err(NameError::BadCharacter(c));
    }
    check_len(channel, MAX_CHANNEL_LEN)
}

/// True for the characters of a channel name.
pub fn is_channel_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || CHANNEL_PUNCTUATION.contains(c)
}

fn check_len(name: &str, max: usize) -> Result<(), NameError> {
    match name.len() {
        0 => Err(NameError::Empty),
        len if len > max => Err(NameError::TooLong { len, max }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_the_identities_apps_have() {
        for user in [
            "alice",
            "auth0|5f7c8ec7c33c6c004bbafe82",
            "google-oauth2|104388229374843209132",
            "jane+rollcall@example.com",
            "0f8fad5b-d9cb-469f-a165-70867728950e",
            "Jane Doe",
            "Łukasz",
            "山田太郎",
            "مرحبا",
            "🦀",
            r#"say "hi" \ </script>"#,
        ] {
            assert_eq!(validate_user(user), Ok(()), "{user}");
        }
        assert_eq!(validate_user(&"é".repeat(64)), Ok(()), "128 bytes");
    }

    #[test]
    fn user_ids_refuse_empty_long_and_control_characters() {
        assert_eq!(validate_user(""), Err(NameError::Empty));
        let long = "x".repeat(MAX_USER_LEN + 1);
        assert_eq!(
            validate_user(&long),
            Err(NameError::TooLong { len: 129, max: 128 })
        );
        // Lengths are bytes: 65 two-byte characters are 130 bytes.
        assert_eq!(
            validate_user(&"é".repeat(65)),
            Err(NameError::TooLong { len: 130, max: 128 })
        );
        for c in ['\0', '\t', '\n', '\r', '\u{1b}', '\u{1f}', '\u{7f}'] {
            let user = format!("a{c}b");
            assert_eq!(validate_user(&user), Err(NameError::Control(c)), "{c:?}");
        }
        let message = NameError::Control('\n').to_string();
        assert!(message.contains("U+000A"), "{message}");
    }

    #[test]
    fn channel_names_take_the_apps_conventions() {
        for channel in [
            "lobby",
            "room:lobby",
            "chat:index",
            "studio/1/live",
            "presence-chat.1",
            "private-App.Models.User.42",
            "private-encrypted-a=b,c;d@e",
            "a_b-c",
        ] {
            assert_eq!(validate_channel(channel), Ok(()), "{channel}");
        }
        assert_eq!(validate_channel(&"x".repeat(MAX_CHANNEL_LEN)), Ok(()));
    }

    #[test]
    fn channel_names_refuse_what_is_reserved_or_foreign() {
        assert_eq!(validate_channel(""), Err(NameError::Empty));
        assert_eq!(
            validate_channel(&"x".repeat(201)),
            Err(NameError::TooLong { len: 201, max: 200 })
        );
        for c in ['*', '#', ' ', '"', '\\', '|', '+', '%', '?', '&', 'é', '\t'] {
            let channel = format!("a{c}b");
            assert_eq!(
                validate_channel(&channel),
                Err(NameError::BadCharacter(c)),
                "{c:?}"
            );
        }
        let reserved = NameError::BadCharacter('*').to_string();
        assert!(reserved.contains("grant patterns"), "{reserved}");
        let foreign = NameError::BadCharacter('|').to_string();
        assert!(foreign.contains("_ - = @ , . ; : /"), "{foreign}");
    }

    #[test]
    fn a_channel_name_never_needs_escaping() {
        // JSON (RFC 8259 §7) escapes '"', '\\' and controls; the cluster splits on tab and
        // space; an HTTP request line on space. None is in the alphabet.
        for byte in 0..=u8::MAX {
            let c = char::from(byte);
            if is_channel_char(c) {
                assert!(c.is_ascii_graphic() && !matches!(c, '"' | '\\'), "{c:?}");
            }
        }
    }
}
