//! Percent-decoding of URL parts (RFC 3986 §2.1): `%XX` is the byte `0xXX`, and the decoded
//! bytes must be UTF-8, so that `%7C` is `|` and `%E5%B1%B1` is `山`.
//!
//! A query value also decodes `+` to a space (the `application/x-www-form-urlencoded` rule
//! browsers' `URLSearchParams` follow, so a user id `Jane Doe` may arrive as `Jane+Doe`); a
//! literal `+` is `%2B`. A path decodes only `%XX`. A broken escape or a result that is not
//! UTF-8 is an error that says where, for the 400 a client gets.

use std::fmt;

/// Why a URL part could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PercentError {
    /// `%` not followed by two hexadecimal digits: the escape as found, and its byte offset.
    BadEscape {
        /// The `%` and up to two characters after it.
        escape: String,
        /// Where the `%` is, in bytes from the start of the value.
        at: usize,
    },
    /// The decoded bytes are not UTF-8.
    NotUtf8,
}

impl fmt::Display for PercentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PercentError::BadEscape { escape, at } => write!(
                f,
                "malformed percent-encoding {escape:?} at byte {at}: '%' must be followed by two hexadecimal digits"
            ),
            PercentError::NotUtf8 => {
                write!(f, "malformed percent-encoding: the decoded bytes are not UTF-8")
            }
        }
    }
}

impl std::error::Error for PercentError {}

/// Decodes a query value: `%XX` escapes, and `+` as a space.
pub fn decode_query_value(text: &str) -> Result<String, PercentError> {
    decode(text, true)
}

/// Decodes a path: `%XX` escapes only (`+` is itself).
pub fn decode_path(text: &str) -> Result<String, PercentError> {
    decode(text, false)
}

fn decode(text: &str, plus_is_space: bool) -> Result<String, PercentError> {
    if !text
        .bytes()
        .any(|b| b == b'%' || (plus_is_space && b == b'+'))
    {
        return Ok(text.to_owned());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        match byte {
            b'%' => {
                let value = match bytes.get(index + 1..index + 3) {
                    Some(&[high, low]) => hex(high).zip(hex(low)).map(|(h, l)| h << 4 | l),
                    _ => None,
                };
                let Some(value) = value else {
                    let end = text.len().min(index + 3);
                    let escape = String::from_utf8_lossy(&bytes[index..end]).into_owned();
                    return Err(PercentError::BadEscape { escape, at: index });
                };
                out.push(value);
                index += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                index += 1;
            }
            _ => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| PercentError::NotUtf8)
}

fn hex(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|value| u8::try_from(value).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_multi_byte_characters() {
        assert_eq!(
            decode_query_value("auth0%7C123").as_deref(),
            Ok("auth0|123")
        );
        assert_eq!(
            decode_query_value("%e5%B1%B1%F0%9F%A6%80").as_deref(),
            Ok("山🦀")
        );
        assert_eq!(
            decode_query_value("room:lobby").as_deref(),
            Ok("room:lobby")
        );
        assert_eq!(decode_query_value("%25").as_deref(), Ok("%"));
        assert_eq!(
            decode_query_value("山").as_deref(),
            Ok("山"),
            "raw UTF-8 passes"
        );
    }

    #[test]
    fn plus_is_a_space_in_a_query_value_only() {
        assert_eq!(decode_query_value("Jane+Doe").as_deref(), Ok("Jane Doe"));
        assert_eq!(decode_query_value("a%2Bb").as_deref(), Ok("a+b"));
        assert_eq!(decode_path("a+b").as_deref(), Ok("a+b"));
        assert_eq!(decode_path("room%3Alobby").as_deref(), Ok("room:lobby"));
    }

    #[test]
    fn broken_escapes_say_where() {
        for (text, escape, at) in [
            ("%zz", "%zz", 0),
            ("ab%4", "%4", 2),
            ("%", "%", 0),
            ("a%+1", "%+1", 1),
            ("a%-1b", "%-1", 1),
            ("%4g", "%4g", 0),
        ] {
            assert_eq!(
                decode_query_value(text),
                Err(PercentError::BadEscape {
                    escape: escape.into(),
                    at
                }),
                "{text}"
            );
        }
        assert_eq!(decode_query_value("%ff"), Err(PercentError::NotUtf8));
        assert_eq!(
            decode_path("%C3"),
            Err(PercentError::NotUtf8),
            "a cut character"
        );
        let message = decode_path("x%zz").expect_err("broken").to_string();
        assert!(message.contains("\"%zz\" at byte 1"), "{message}");
    }
}
