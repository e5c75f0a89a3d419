//! A JSON object read as its fields' texts: what a command, a `POST /publish` body and a
//! token's claims are read with, so that free-form values can be canonicalized from the
//! text the client sent (numbers exactly as sent, see [`super::canonical`]).

use std::borrow::Cow;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// A JSON object's fields, each as the JSON text that was sent (a repeated field: the last).
/// A handful of fields: a list searched in order beats hashing, and keys without escapes
/// are borrowed from the text.
pub(crate) struct Fields<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> Fields<'a> {
    /// The fields of the JSON object `text`; an error of category `Data` when `text` is
    /// JSON but no object.
    pub fn parse(text: &'a str) -> Result<Fields<'a>, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The text of the field `name`, if present; of a repeated name, the last (as in
    /// serde_json's maps).
    pub fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.0
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| *value)
    }
}

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FieldsVisitor)
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
        let mut fields: Vec<(Cow<'de, str>, &'de RawValue)> = Vec::new();
        // Every field is kept, repeats included (`get` finds the last): reading stays linear
        // in the size of the object, however many keys a peer sends.
        while let Some(Key(key)) = map.next_key()? {
            fields.push((key, map.next_value()?));
        }
        Ok(Fields(fields))
    }
}

/// An object key: borrowed from the message unless it has escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, key: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(key)))
            }
            fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(key.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_keep_their_text_and_the_last_of_a_repeated_name_wins() {
        let text = r#"{"a":1,"b" : [1E5, 2.50],"a":"x","\u0063":null}"#;
        let fields = Fields::parse(text).expect("an object");
        assert_eq!(fields.get("a").map(RawValue::get), Some(r#""x""#));
        assert_eq!(fields.get("b").map(RawValue::get), Some("[1E5, 2.50]"));
        assert_eq!(
            fields.get("c").map(RawValue::get),
            Some("null"),
            "escaped key"
        );
        assert!(fields.get("d").is_none());
        let not_an_object = Fields::parse("[1]").err().map(|e| e.classify());
        assert_eq!(not_an_object, Some(serde_json::error::Category::Data));
        // Many repeats of one name: the last one.
        let mut repeated = String::from("{");
        for i in 0..3_000 {
            repeated.push_str(&format!("\"k\":{i},"));
        }
        repeated.push_str("\"k\":\"last\"}");
        let fields = Fields::parse(&repeated).expect("an object");
        assert_eq!(fields.get("k").map(RawValue::get), Some(r#""last""#));
    }
}
