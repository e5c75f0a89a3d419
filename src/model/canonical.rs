//! The compact canonical form of a client's free-form JSON (`meta`, `data`, `id`, `ref`),
//! written straight from its text: whitespace removed, object keys sorted (by their decoded
//! text), a repeated key keeps its last value, strings re-escaped as serde_json writes them,
//! and numbers *exactly as sent*: no digit is lost and nothing is respelled, since a number
//! never goes through an `f64` or an integer type here.
//!
//! Pure and total: [`canonical`] validates with serde_json first (so the walk below only
//! ever sees valid JSON) and returns `None` for anything else, or for a value nested deeper
//! than [`MAX_DEPTH`] (the walk recurses once per level); nothing here panics on input.
//! The form is a fixed point: canonicalizing its output gives it back unchanged, so a value
//! relayed by other nodes arrives as the first node wrote it.

use std::collections::BTreeMap;

use serde_json::value::RawValue;

/// The deepest nesting accepted: serde_json's own limit for parsed values.
pub const MAX_DEPTH: usize = 128;

/// The canonical form of the JSON text `text`, or `None` when it is not valid JSON.
pub fn canonical(text: &str) -> Option<String> {
    // serde_json checks the syntax.
    of_raw(serde_json::from_str(text).ok()?)
}

/// The canonical form of a value serde_json has already checked (a field of a command);
/// `None` when it is nested deeper than [`MAX_DEPTH`].
pub fn of_raw(raw: &RawValue) -> Option<String> {
    let mut out = String::with_capacity(raw.get().len());
    let mut walk = Walk {
        text: raw.get().as_bytes(),
        at: 0,
        depth: 0,
    };
    walk.value(&mut out)?;
    Some(out)
}

/// A walk over valid JSON text.
struct Walk<'a> {
    text: &'a [u8],
    at: usize,
    /// Objects and arrays open at the cursor.
    depth: usize,
}

impl Walk<'_> {
    /// Writes the canonical form of the value at the cursor and moves past it.
    fn value(&mut self, out: &mut String) -> Option<()> {
        self.skip_space();
        match *self.text.get(self.at)? {
            b'{' => self.object(out),
            b'[' => self.array(out),
            b'"' => {
                let decoded = self.string()?;
                out.push_str(&serde_json::to_string(&decoded).ok()?);
                Some(())
            }
            _ => {
                // A number or a literal: every byte up to the next delimiter, verbatim.
                let start = self.at;
                while self
                    .text
                    .get(self.at)
                    .is_some_and(|b| !matches!(b, b',' | b']' | b'}') && !b.is_ascii_whitespace())
                {
                    self.at += 1;
                }
                out.push_str(std::str::from_utf8(&self.text[start..self.at]).ok()?);
                Some(())
            }
        }
    }

    fn object(&mut self, out: &mut String) -> Option<()> {
        self.enter()?;
        // Sorted by decoded key; inserting again replaces: the last duplicate wins.
        let mut members = BTreeMap::new();
        loop {
            self.skip_space();
            match *self.text.get(self.at)? {
                b'}' => {
                    self.at += 1;
                    break;
                }
                b',' => self.at += 1,
                _ => {
                    let key = self.string()?;
                    self.skip_space();
                    self.expect(b':')?;
                    let mut value = String::new();
                    self.value(&mut value)?;
                    members.insert(key, value);
                }
            }
        }
        self.depth -= 1;
        out.push('{');
        for (index, (key, value)) in members.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            out.push_str(&serde_json::to_string(key).ok()?);
            out.push(':');
            out.push_str(value);
        }
        out.push('}');
        Some(())
    }

    fn array(&mut self, out: &mut String) -> Option<()> {
        self.enter()?;
        out.push('[');
        let mut first = true;
        loop {
            self.skip_space();
            match *self.text.get(self.at)? {
                b']' => {
                    self.at += 1;
                    break;
                }
                b',' => self.at += 1,
                _ => {
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    self.value(out)?;
                }
            }
        }
        self.depth -= 1;
        out.push(']');
        Some(())
    }

    /// Steps into an object or array: `None` past [`MAX_DEPTH`].
    fn enter(&mut self) -> Option<()> {
        self.at += 1;
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }

    /// The string at the cursor, decoded (escapes resolved), moving past it.
    fn string(&mut self) -> Option<String> {
        let start = self.at;
        self.expect(b'"')?;
        while *self.text.get(self.at)? != b'"' {
            // A backslash escapes the next byte (`\"` included); `\uXXXX` needs no care here.
            self.at += if self.text[self.at] == b'\\' { 2 } else { 1 };
        }
        self.at += 1;
        serde_json::from_slice(self.text.get(start..self.at)?).ok()
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (*self.text.get(self.at)? == byte).then(|| self.at += 1)
    }

    fn skip_space(&mut self) {
        while self.text.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_kept_exactly_as_sent() {
        for number in [
            "12345678901234567890123",
            "-9223372036854775809",
            "18446744073709551616",
            "1e400",
            "1E5",
            "-1.5E-7",
            "0.10000000000000000000000001",
            "-0.0",
            "-0",
            "1.0",
            "2.50",
            "0",
        ] {
            assert_eq!(canonical(number).as_deref(), Some(number));
            let nested = format!(r#"{{"n" : [ {number} , {{"m":{number}}} ]}}"#);
            assert_eq!(
                canonical(&nested),
                Some(format!(r#"{{"n":[{number},{{"m":{number}}}]}}"#)),
            );
        }
    }

    #[test]
    fn whitespace_goes_keys_sort_and_the_last_duplicate_wins() {
        assert_eq!(
            canonical(" { \"b\" : 1 ,\n\t\"a\":[ true, false ,null ] , \"b\" : \"x\" } ")
                .as_deref(),
            Some(r#"{"a":[true,false,null],"b":"x"}"#)
        );
        assert_eq!(canonical("[]").as_deref(), Some("[]"));
        assert_eq!(canonical("{ }").as_deref(), Some("{}"));
        assert_eq!(canonical(" null ").as_deref(), Some("null"));
    }

    #[test]
    fn strings_are_escaped_as_serde_json_writes_them() {
        assert_eq!(
            canonical(r#"{"\u00e9\/\"":"tab\there \ud83d\ude00 \u0001"}"#).as_deref(),
            Some("{\"é/\\\"\":\"tab\\there 😀 \\u0001\"}")
        );
        // Keys sort by their decoded text: an escaped "b" is "b".
        assert_eq!(
            canonical(r#"{"\u0062":1,"a":2,"b":3}"#).as_deref(),
            Some(r#"{"a":2,"b":3}"#)
        );
    }

    #[test]
    fn it_is_a_fixed_point_and_agrees_with_serde_json_where_numbers_are_plain() {
        for text in [
            r#"{"z":{"y":[1,2,{"x":"\n"}]},"a":-3.25}"#,
            r#"[{"b":1,"a":{}},[],"",0]"#,
            r#""just a string""#,
        ] {
            let once = canonical(text).expect("valid");
            assert_eq!(canonical(&once).as_deref(), Some(once.as_str()));
            let value: serde_json::Value = serde_json::from_str(text).expect("valid");
            assert_eq!(once, value.to_string(), "{text}");
        }
    }

    #[test]
    fn invalid_json_is_refused() {
        for text in [
            "",
            "{",
            "[1,]",
            "{\"a\"}",
            "01",
            "1.",
            "nul",
            "\"\\x\"",
            "{\"a\":1}x",
            "[\"\\ud800\"]",
        ] {
            assert_eq!(canonical(text), None, "{text:?}");
        }
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(canonical(&deep(MAX_DEPTH)).is_some());
        assert_eq!(canonical(&deep(MAX_DEPTH + 1)), None, "too deep");
        let deep_objects = format!("{}1{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
        assert_eq!(
            canonical(&deep_objects),
            None,
            "refused, not a stack overflow"
        );
    }
}
