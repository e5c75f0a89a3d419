//! Wire protocol v1's JSON codec: the messages carried in WebSocket text frames (see
//! `docs/protocol.md`, the public contract), used by the v1 dialect
//! ([`crate::dialect::v1`]).
//!
//! Pure and allocation-light: [`command`] decodes what a client sends into the neutral
//! commands ([`crate::model::Command`]) with typed errors; [`event`] encodes what the
//! server sends. Names (users, channels) are
//! validated on entry and written as escaped JSON strings; free-form JSON (`meta`, `data`,
//! `id`, `ref`) is kept as compact serialized text ([`crate::model::Json`]) and spliced in unchanged.
//!
//! Invariant: a number a client sends reaches every recipient exactly as sent: free-form
//! values are canonicalized from their text ([`crate::model::canonical`]), never through an `f64`. The
//! canonical form is a fixed point: a value relayed by other nodes arrives as the first node
//! wrote it.

pub mod command;
pub mod event;
pub(crate) mod fields;

pub use command::decode;

#[cfg(test)]
mod tests {
    use super::{decode, event};
    use crate::model::{Action, Command, Json, Meta};

    /// A number as a client sends it, and as the server sends it on: exactly as sent.
    const NUMBERS: [(&str, &str); 12] = [
        ("12345678901234567890123", "12345678901234567890123"),
        // i64::MIN - 1 and u64::MAX + 1: past every integer type.
        ("-9223372036854775809", "-9223372036854775809"),
        ("18446744073709551616", "18446744073709551616"),
        // Past f64: kept, not refused as "out of range".
        ("1e400", "1e400"),
        ("1e-400", "1e-400"),
        ("0.1", "0.1"),
        (
            "0.10000000000000000000000001",
            "0.10000000000000000000000001",
        ),
        ("-0.0", "-0.0"),
        ("-0", "-0"),
        ("1.0", "1.0"),
        ("2.50", "2.50"),
        ("1E5", "1E5"),
    ];

    #[track_caller]
    fn decode_ok(text: &str) -> Command {
        decode(text, 1024).unwrap_or_else(|error| panic!("{text}: {error:?}"))
    }

    #[test]
    fn numbers_in_id_and_ref_pass_through() {
        for (sent, wire) in NUMBERS {
            let command = decode_ok(&format!(r#"{{"type":"ping","id":{sent},"ref":[{sent}]}}"#));
            let Action::Ping { id } = command.action else {
                panic!("{sent}: not a ping");
            };
            assert_eq!(
                event::pong(&id, command.reference.as_ref()),
                format!(r#"{{"type":"pong","id":{wire},"ref":[{wire}]}}"#),
                "sent {sent}"
            );
        }
    }

    #[test]
    fn numbers_in_meta_and_data_pass_through() {
        for (sent, wire) in NUMBERS {
            let text = format!(r#"{{"type":"update","channel":"c","meta":{{"n": {sent}}}}}"#);
            let Action::Update { meta, .. } = decode_ok(&text).action else {
                panic!("{sent}: not an update");
            };
            assert_eq!(
                event::update("c", "u", &meta, 1),
                format!(
                    r#"{{"type":"update","channel":"c","user":"u","meta":{{"n":{wire}}},"seq":1}}"#
                ),
                "sent {sent}"
            );
            let text = format!(r#"{{"type":"publish","channel":"c","data":[ {sent} ]}}"#);
            let Action::Publish { data, .. } = decode_ok(&text).action else {
                panic!("{sent}: not a publish");
            };
            assert_eq!(
                event::message("c", None, &data),
                format!(r#"{{"type":"message","channel":"c","from":null,"data":[{wire}]}}"#),
                "sent {sent}"
            );
        }
    }

    /// Another node's text is checked and kept as is; the wire form is a fixed point, so a
    /// value relayed through any number of nodes arrives as the first node sent it.
    #[test]
    fn numbers_from_other_nodes_pass_through() {
        for (sent, wire) in NUMBERS {
            let parsed = Json::parse(sent).unwrap_or_else(|| panic!("{sent} refused"));
            assert_eq!(parsed.as_str(), wire);
            assert_eq!(Json::parse(wire).as_ref().map(Json::as_str), Some(wire));
            let meta = Meta::parse(&format!(r#"{{"n":{sent}}}"#)).expect("an object");
            assert_eq!(meta.as_str(), format!(r#"{{"n":{wire}}}"#));
        }
    }

    /// Only numbers are kept as sent: the rest of §2's canonical form still applies.
    #[test]
    fn whitespace_key_order_and_duplicates_are_still_canonical() {
        let json =
            Json::parse(r#"{ "b" : 1E5, "a" : [ 1.50 , -0 ], "b" : 12345678901234567890123 }"#)
                .expect("valid");
        assert_eq!(
            json.as_str(),
            r#"{"a":[1.50,-0],"b":12345678901234567890123}"#
        );
    }
}
