//! Names written as JSON string literals, quotes included (RFC 8259 §7): [`push_json_str`]
//! for the encoders, which build each event by appending to one `String`, and [`JsonStr`]
//! where a `format!` is clearer than speed matters.
//!
//! The fast path (no byte needs an escape: every channel name, almost every user id) appends
//! the name between quotes as it is, so a name that needs no escaping costs one scan of its
//! bytes; only a name with `"`, `\` or a control character takes the escaping path.

use std::fmt::{self, Write};

/// Appends `text` to `out` as a JSON string literal: `"` + the escaped text + `"`.
#[inline]
pub fn push_json_str(out: &mut String, text: &str) {
    out.push('"');
    if text.bytes().any(needs_escape) {
        // Writing to a `String` cannot fail.
        let _ = write_escaped(out, text);
    } else {
        out.push_str(text);
    }
    out.push('"');
}

/// Displays `.0` as a JSON string literal, as [`push_json_str`] appends it.
#[derive(Debug, Clone, Copy)]
pub struct JsonStr<'a>(pub &'a str);

impl fmt::Display for JsonStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        write_escaped(f, self.0)?;
        f.write_char('"')
    }
}

/// RFC 8259 §7: the quotation mark, the reverse solidus and the control characters
/// (U+0000-U+001F) must be escaped. U+007F may stay, as serde_json leaves it.
fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

/// Writes `text` with every byte that needs it escaped, as serde_json would (short forms
/// where JSON has one, `\u00XX` for the other controls). Runs of plain text are written
/// whole; escapes are all ASCII, so a multi-byte character is never split.
fn write_escaped(out: &mut impl Write, text: &str) -> fmt::Result {
    let mut plain_from = 0;
    for (index, byte) in text.bytes().enumerate() {
        if !needs_escape(byte) {
            continue;
        }
        out.write_str(&text[plain_from..index])?;
        match byte {
            b'"' => out.write_str("\\\"")?,
            b'\\' => out.write_str("\\\\")?,
            b'\n' => out.write_str("\\n")?,
            b'\r' => out.write_str("\\r")?,
            b'\t' => out.write_str("\\t")?,
            0x08 => out.write_str("\\b")?,
            0x0c => out.write_str("\\f")?,
            control => write!(out, "\\u{control:04x}")?,
        }
        plain_from = index + 1;
    }
    out.write_str(&text[plain_from..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pushed(text: &str) -> String {
        let mut out = String::new();
        push_json_str(&mut out, text);
        assert_eq!(out, JsonStr(text).to_string(), "both ways write the same");
        out
    }

    fn parsed(text: &str) -> String {
        let literal = pushed(text);
        serde_json::from_str(&literal).unwrap_or_else(|e| panic!("{literal}: {e}"))
    }

    #[test]
    fn plain_names_are_written_as_they_are() {
        assert_eq!(pushed("room:lobby"), r#""room:lobby""#);
        assert_eq!(pushed("auth0|5f7c"), r#""auth0|5f7c""#);
        assert_eq!(pushed("山田 🦀"), "\"山田 🦀\"");
    }

    #[test]
    fn quotes_backslashes_and_controls_are_escaped_as_serde_json_does() {
        for text in [
            r#"say "hi""#,
            r"C:\path\",
            "</script><b>",
            "tab\there\nnew\r\u{8}\u{c}\u{0}\u{1f}\u{7f}",
            "\u{202e}right-to-left\u{202c} 🦀 é",
            "\"",
            "\\",
            "",
        ] {
            let expected = serde_json::to_string(text).expect("a str serializes");
            assert_eq!(pushed(text), expected, "{text:?}");
            assert_eq!(parsed(text), text);
        }
    }

    proptest! {
        #[test]
        fn any_text_round_trips_through_serde_json(text in any::<String>()) {
            prop_assert_eq!(parsed(&text), text);
        }

        #[test]
        fn any_text_is_written_as_serde_json_writes_it(text in "\\PC*|[\"\\\\\u{0}-\u{1f}a]*") {
            let expected = serde_json::to_string(&text).expect("a str serializes");
            prop_assert_eq!(pushed(&text), expected);
        }
    }
}
