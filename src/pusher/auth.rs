//! Pusher's signatures: `KEY:HEX(HMAC-SHA256(secret, S))`, where S is `socket_id:channel`
//! for a private channel, `socket_id:channel:channel_data` for a presence channel and
//! `socket_id::user::user_data` for a sign-in. The signed text is built from the exact bytes
//! the client sent (never re-serialized), and compared in constant time (`hmac`'s
//! `verify_slice`).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::App;

/// Why an `auth` value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// No `auth`, or not `KEY:HEX`.
    Malformed,
    /// The key part is not this app's key.
    WrongKey,
    /// The signature does not match.
    BadSignature,
}

impl AuthError {
    /// A message for the client.
    pub fn message(self) -> &'static str {
        match self {
            AuthError::Malformed => "the auth value is missing or is not KEY:SIGNATURE",
            AuthError::WrongKey => "the auth value was signed for another app key",
            AuthError::BadSignature => "invalid signature",
        }
    }
}

/// The hex HMAC-SHA256 of `text` with `secret` (how an app's backend signs).
pub fn sign(secret: &str, text: &str) -> String {
    data_encoding::HEXLOWER.encode(&mac(secret).chain_update(text).finalize().into_bytes())
}

/// Checks a subscription's `auth` for `channel`: `channel_data` is signed too when given
/// (presence channels must give it).
pub fn verify_channel(
    app: &App,
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
    auth: &str,
) -> Result<(), AuthError> {
    let mut signed = mac(&app.secret).chain_update(socket_id).chain_update(":");
    signed.update(channel.as_bytes());
    if let Some(data) = channel_data {
        signed.update(b":");
        signed.update(data.as_bytes());
    }
    check(app, signed, auth)
}

/// Checks a sign-in's `auth` over its `user_data` (the exact string sent).
pub fn verify_signin(
    app: &App,
    socket_id: &str,
    user_data: &str,
    auth: &str,
) -> Result<(), AuthError> {
    let signed = mac(&app.secret)
        .chain_update(socket_id)
        .chain_update("::user::")
        .chain_update(user_data);
    check(app, signed, auth)
}

fn check(app: &App, signed: Hmac<Sha256>, auth: &str) -> Result<(), AuthError> {
    let (key, signature) = auth.split_once(':').ok_or(AuthError::Malformed)?;
    if key != app.key {
        return Err(AuthError::WrongKey);
    }
    let signature = decode_hex(signature).ok_or(AuthError::Malformed)?;
    signed
        .verify_slice(&signature)
        .map_err(|_| AuthError::BadSignature)
}

/// The bytes of a hexadecimal text (either case); `None` for an odd length or another
/// character. (Written out: data-encoding's permissive decoder costs 20 KiB of code for it.)
pub(super) fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let digits = text.as_bytes();
    if digits.len() % 2 != 0 {
        return None;
    }
    let value = |digit: u8| char::from(digit).to_digit(16);
    digits
        .chunks_exact(2)
        .map(|pair| u8::try_from(value(pair[0])? << 4 | value(pair[1])?).ok())
        .collect()
}

pub(super) fn mac(secret: &str) -> Hmac<Sha256> {
    // HMAC takes keys of any length (RFC 2104 §2).
    match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference's test vectors (`../shared/pusher-protocol.md` §2).
    fn app() -> App {
        App::parse("3:278d425bdf160c739803:7ad3773142a6692b25b8").expect("app")
    }
    const SOCKET: &str = "1234.1234";

    #[test]
    fn private_channel_vector() {
        let signature = "58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4";
        assert_eq!(sign(&app().secret, "1234.1234:private-foobar"), signature);
        let auth = format!("278d425bdf160c739803:{signature}");
        assert_eq!(
            verify_channel(&app(), SOCKET, "private-foobar", None, &auth),
            Ok(())
        );
        assert_eq!(
            verify_channel(&app(), "1234.1235", "private-foobar", None, &auth),
            Err(AuthError::BadSignature),
            "another socket"
        );
    }

    #[test]
    fn presence_channel_vector() {
        let data = r#"{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#;
        let auth =
            "278d425bdf160c739803:31935e7d86dba64c2a90aed31fdc61869f9b22ba9d8863bba239c03ca481bc80";
        assert_eq!(
            verify_channel(&app(), SOCKET, "presence-foobar", Some(data), auth),
            Ok(())
        );
        let tampered = data.replace("10", "11");
        assert_eq!(
            verify_channel(&app(), SOCKET, "presence-foobar", Some(&tampered), auth),
            Err(AuthError::BadSignature)
        );
        let reordered = r#"{"user_info":{"name":"Mr. Channels"},"user_id":10}"#;
        assert_eq!(
            verify_channel(&app(), SOCKET, "presence-foobar", Some(reordered), auth),
            Err(AuthError::BadSignature),
            "the exact bytes are signed, not their meaning"
        );
    }

    #[test]
    fn signin_vector() {
        let auth =
            "278d425bdf160c739803:4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba";
        assert_eq!(
            verify_signin(&app(), SOCKET, r#"{"id":"12345"}"#, auth),
            Ok(())
        );
        assert_eq!(
            verify_signin(&app(), SOCKET, r#"{"id":"12346"}"#, auth),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn hex_decodes_both_cases_and_refuses_the_rest() {
        assert_eq!(decode_hex("00fFa1"), Some(vec![0, 255, 161]));
        assert_eq!(decode_hex(""), Some(vec![]));
        for bad in ["0", "0g", "+1", " 1", "é1"] {
            assert_eq!(decode_hex(bad), None, "{bad}");
        }
    }

    #[test]
    fn malformed_and_foreign_auth() {
        let app = app();
        let sign_for = |key: &str| format!("{key}:{}", sign(&app.secret, "1.1:private-x"));
        assert_eq!(
            verify_channel(&app, "1.1", "private-x", None, &sign_for(&app.key)),
            Ok(())
        );
        assert_eq!(
            verify_channel(&app, "1.1", "private-x", None, &sign_for("other")),
            Err(AuthError::WrongKey)
        );
        for bad in [
            "",
            "nokey",
            "278d425bdf160c739803:zz",
            "278d425bdf160c739803:",
        ] {
            assert!(
                verify_channel(&app, "1.1", "private-x", None, bad).is_err(),
                "{bad}"
            );
        }
    }
}
