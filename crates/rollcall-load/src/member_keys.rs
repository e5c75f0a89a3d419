//! The user names in a presence message's member maps (`state`'s `users`, a `diff`'s
//! `joins`, `leaves` and `updates`), read without building a JSON tree.
//!
//! A storm's clients receive N² member entries between them (each of N clients must learn N
//! members): parsing each `state` into a `serde_json::Value` made the load tool, not the
//! server, the ceiling of the measurement. This walks the top-level object once, skipping
//! values by their brackets and strings, and hands out each map's keys as they are written.
//!
//! Invariants: never panics on any input (a malformed message yields the keys read before
//! the fault); keys are the raw text between their quotes (escapes left as they are, which
//! the storm's plain `PREFIX-mK` names never need).

/// Hands `key(map, member)` each key of `text`'s top-level objects named in `maps` (`map`
/// its index there) as it is read, without collecting them: a storm client reads N² keys.
/// Returns the `type` read (empty if none).
pub fn for_each_key<'a>(
    text: &'a str,
    maps: &[&str],
    mut key: impl FnMut(usize, &'a str),
) -> &'a str {
    let mut at = Cursor::new(text);
    walk(&mut at, maps, |at, field| {
        let map = maps.iter().position(|name| *name == field)?;
        at.each_object_key(|member| key(map, member))
    });
    at.kind
}

/// Walks the top-level object of `at`'s text, noting its `type` in `at.kind` and handing
/// each field named in `maps` whose value is an object to `object` (which must step over
/// it); stops at the first fault.
fn walk<'a>(
    at: &mut Cursor<'a>,
    maps: &[&str],
    mut object: impl FnMut(&mut Cursor<'a>, &'a str) -> Option<()>,
) {
    if !at.eat(b'{') {
        return;
    }
    loop {
        let Some(field) = at.string() else {
            return;
        };
        if !at.eat(b':') {
            return;
        }
        if field == "type" {
            let Some(kind) = at.string() else {
                return;
            };
            at.kind = kind;
        } else if maps.contains(&field) && at.peek() == Some(b'{') {
            if object(at, field).is_none() {
                return;
            }
        } else if !at.skip_value() {
            return;
        }
        if !at.eat(b',') {
            return;
        }
    }
}

/// A position in a JSON text.
struct Cursor<'a> {
    text: &'a str,
    at: usize,
    /// The top-level `type` once read.
    kind: &'a str,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Cursor<'a> {
        Cursor {
            text,
            at: 0,
            kind: "",
        }
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    /// The next byte that is not white space.
    fn peek(&mut self) -> Option<u8> {
        while let Some(&byte) = self.bytes().get(self.at) {
            if !byte.is_ascii_whitespace() {
                return Some(byte);
            }
            self.at += 1;
        }
        None
    }

    /// Steps over `byte` if it comes next.
    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        if found {
            self.at += 1;
        }
        found
    }

    /// A string's raw text (between its quotes), the cursor after it.
    fn string(&mut self) -> Option<&'a str> {
        if !self.eat(b'"') {
            return None;
        }
        let start = self.at;
        self.at = string_end(self.bytes(), start)?;
        // Both ends are ASCII quotes, so the slice falls on character boundaries.
        self.text.get(start..self.at - 1)
    }

    /// Steps over the member values rollcall writes when there is no meta, `{}` (a diff's)
    /// and `{"conns":N,"meta":{}}` (a state's), by their exact text: most of what a storm
    /// client reads. False (the cursor unmoved) for anything else.
    fn skip_plain_member(&mut self) -> bool {
        const CONNS: &[u8] = br#"{"conns":"#;
        const NO_META: &[u8] = br#","meta":{}}"#;
        let rest = &self.bytes()[self.at.min(self.text.len())..];
        if rest.starts_with(b"{}") {
            self.at += 2;
            return true;
        }
        let Some(after) = rest.strip_prefix(CONNS) else {
            return false;
        };
        let digits = after.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || !after[digits..].starts_with(NO_META) {
            return false;
        }
        self.at += CONNS.len() + digits + NO_META.len();
        true
    }

    /// Steps over one value of any kind; false when the text ends or breaks first.
    fn skip_value(&mut self) -> bool {
        match self.peek() {
            Some(b'"') => self.string().is_some(),
            Some(b'{' | b'[') => self.skip_nested(),
            Some(_) => {
                let bytes = self.bytes();
                while let Some(&byte) = bytes.get(self.at) {
                    if matches!(byte, b',' | b'}' | b']') || byte.is_ascii_whitespace() {
                        return true;
                    }
                    self.at += 1;
                }
                false
            }
            None => false,
        }
    }

    /// Steps over an object or array by counting brackets outside strings.
    fn skip_nested(&mut self) -> bool {
        let bytes = self.bytes();
        let mut depth = 0usize;
        let mut at = self.at;
        while let Some(&byte) = bytes.get(at) {
            at += 1;
            match byte {
                b'"' => match string_end(bytes, at) {
                    Some(end) => at = end,
                    None => return false,
                },
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        self.at = at;
                        return true;
                    }
                }
                _ => {}
            }
        }
        false
    }

    /// Hands out the keys of the object that comes next, the cursor after it.
    fn each_object_key(&mut self, mut key: impl FnMut(&'a str)) -> Option<()> {
        if !self.eat(b'{') {
            return None;
        }
        if self.eat(b'}') {
            return Some(());
        }
        loop {
            key(self.string()?);
            if !self.eat(b':') || !(self.skip_plain_member() || self.skip_value()) {
                return None;
            }
            if self.eat(b'}') {
                return Some(());
            }
            if !self.eat(b',') {
                return None;
            }
        }
    }
}

/// Where the string whose text starts at `at` ends: just past its closing quote. A plain
/// loop: member keys are short, too short for a vectorised search to pay off.
fn string_end(bytes: &[u8], mut at: usize) -> Option<usize> {
    while let Some(&byte) = bytes.get(at) {
        match byte {
            b'"' => return Some(at + 1),
            // An escape: the next byte is escaped whatever it is.
            b'\\' => at += 2,
            _ => at += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &[&str] = &["users", "joins", "leaves", "updates"];

    /// What a text hands out, collected: its type and each map's keys.
    struct Read<'a> {
        kind: &'a str,
        keys: Vec<(usize, &'a str)>,
    }

    impl<'a> Read<'a> {
        fn keys(&self, field: &str) -> Vec<&'a str> {
            let map = MAPS.iter().position(|name| *name == field).expect("a map");
            self.keys
                .iter()
                .filter(|(m, _)| *m == map)
                .map(|(_, key)| *key)
                .collect()
        }
    }

    fn read<'a>(text: &'a str, maps: &[&str]) -> Read<'a> {
        let mut keys = Vec::new();
        let kind = for_each_key(text, maps, |map, key| keys.push((map, key)));
        Read { kind, keys }
    }

    #[test]
    fn a_state_lists_its_users_whatever_their_meta() {
        let text = r#"{"type":"state","channel":"storm","seq":3,"users":{"a-m0":{"conns":1,"meta":{"x":"}{\"","y":[1,{"z":null}]}},"a-m1":{"conns":2,"meta":{}}}}"#;
        let read = read(text, MAPS);
        assert_eq!(read.kind, "state");
        assert_eq!(read.keys("users"), ["a-m0", "a-m1"]);
        assert!(read.keys("joins").is_empty());
    }

    #[test]
    fn a_diff_gives_each_map_and_ignores_look_alike_keys_in_metas() {
        let text = r#"{"type":"diff","channel":"c","from":1,"seq":4,"joins":{"j":{"leaves":{"fake":1}}},"leaves":{"l":{"reason":"closed"}},"updates":{}}"#;
        let read = read(text, MAPS);
        assert_eq!(read.kind, "diff");
        assert_eq!(read.keys("joins"), ["j"]);
        assert_eq!(read.keys("leaves"), ["l"]);
        assert!(read.keys("updates").is_empty());
    }

    #[test]
    fn garbage_and_truncated_texts_give_what_came_before_the_fault() {
        for text in [
            "",
            "[",
            "{",
            r#"{"type""#,
            r#"{"type":"state","users":{"#,
            "\u{0}\"}",
        ] {
            let read = read(text, MAPS);
            assert!(read.keys("users").is_empty(), "{text:?}");
        }
        for cut in [
            r#"{"type":"state","users":{"a":"#,
            r#"{"type":"state","users":{"a":{}"#,
            r#"{"type":"state","users":{"a":{},"b"#,
        ] {
            let cut = read(cut, MAPS);
            assert_eq!(cut.kind, "state");
            assert_eq!(cut.keys("users"), ["a"], "the keys before the cut");
        }
        let escaped_end = read(r#"{"type":"a\"#, MAPS);
        assert_eq!(escaped_end.kind, "");
    }

    #[test]
    fn agrees_with_serde_json_on_the_keys() {
        let text = r#"{ "type" : "state" , "seq" : 1e3, "users" : { "b" : { "meta" : { "k" : [ "]" , true ] } } , "a" : {} } }"#;
        let value: serde_json::Value = serde_json::from_str(text).expect("valid JSON");
        let mut expected: Vec<&str> = value["users"]
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        let mut keys = read(text, MAPS).keys("users");
        expected.sort_unstable();
        keys.sort_unstable();
        assert_eq!(keys, expected);
    }

    #[test]
    fn keys_come_with_their_maps_index_in_text_order() {
        let text = r#"{"type":"diff","channel":"c","joins":{"a":{"x":"\"}"},"b":{}},"leaves":{"c":{"reason":"closed"}},"updates":{"d":{"k":[1,{"e":2}]}}}"#;
        let mut seen = Vec::new();
        let kind = for_each_key(text, &["joins", "updates", "leaves"], |map, key| {
            seen.push((map, key));
        });
        assert_eq!(kind, "diff");
        assert_eq!(seen, [(0, "a"), (0, "b"), (2, "c"), (1, "d")]);
    }

    #[test]
    fn plain_members_and_look_alikes_give_the_same_keys() {
        for text in [
            r#"{"type":"state","users":{"a":{"conns":12,"meta":{}},"b":{}}}"#,
            r#"{"type":"state","users":{"a":{"conns":12,"meta":{"x":1}},"b":{"c":{}}}}"#,
            r#"{"type":"state","users":{"a":{"conns":1,"meta":{},"x":2},"b":{}}}"#,
            r#"{"type":"state","users":{"a":{"conns":1,"meta":{}}   ,"b":{}  }}"#,
        ] {
            let keys = read(text, MAPS).keys("users");
            let value: serde_json::Value = serde_json::from_str(text).expect("valid JSON");
            let expected: Vec<&str> = value["users"]
                .as_object()
                .expect("users")
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(keys, expected, "{text}");
        }
    }
}
