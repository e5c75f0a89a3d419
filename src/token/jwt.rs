//! The JWT codec of connection tokens (feature `tokens`): HS256 signatures (JWS, RFC 7515)
//! over JSON claims (RFC 7519), checked in constant time, with the time claims read with a
//! leeway. Pure: the caller passes the time.

use data_encoding::BASE64URL_NOPAD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

use super::{ChannelGrant, Claims, Refusal, TokenError};
use crate::model::{Json, Meta};
use crate::names;
use crate::protocol::fields::Fields;

/// Verifies `token` with `secret` at `now_ms` (Unix milliseconds, so that a token is
/// refused as soon as its `exp` second has passed) with `leeway` seconds of tolerance on
/// `exp`, `nbf` and `iat`; `max_meta_size` bounds the `meta` claim.
pub fn verify(
    token: &str,
    secret: &[u8],
    now_ms: u64,
    leeway: u64,
    max_meta_size: usize,
) -> Result<Claims, Refusal> {
    if token.is_empty() {
        return Err(TokenError::Missing.into());
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed.into());
    };
    let header = object_of(&decode_part(header)?)?;
    // RFC 8725 §3.1: the algorithm is ours to choose, not the token's.
    if header.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Err(TokenError::BadAlgorithm.into());
    }
    let signature = BASE64URL_NOPAD
        .decode(signature.as_bytes())
        .map_err(|_| TokenError::Malformed)?;
    let signed_len = token.len() - token.rsplit('.').next().map_or(0, str::len) - 1;
    mac(secret)
        .chain_update(&token.as_bytes()[..signed_len])
        .verify_slice(&signature)
        .map_err(|_| TokenError::BadSignature)?;
    let payload = decode_part(payload)?;
    let object = object_of(&payload)?;
    let claims = read_claims(&object, &payload, max_meta_size)?;
    // RFC 7519 §4.1.4: valid only before `exp`.
    if now_ms >= seconds_to_ms(claims.expires_at.saturating_add(leeway)) {
        return Err(TokenError::Expired.into());
    }
    // Valid from the later of `nbf` and `iat` (a token issued in the future is not yet valid).
    let valid_from = [read_time(&object, "nbf")?, read_time(&object, "iat")?]
        .into_iter()
        .flatten()
        .max();
    if valid_from
        .is_some_and(|from| now_ms.saturating_add(seconds_to_ms(leeway)) < seconds_to_ms(from))
    {
        return Err(TokenError::NotYetValid.into());
    }
    Ok(claims)
}

/// Signs `claims` (a JSON object) with `secret`: the token `rollcall token` prints.
pub fn sign(claims: &Value, secret: &[u8]) -> String {
    let header = BASE64URL_NOPAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = BASE64URL_NOPAD.encode(claims.to_string().as_bytes());
    let signing_input = format!("{header}.{payload}");
    let signature = mac(secret)
        .chain_update(signing_input.as_bytes())
        .finalize()
        .into_bytes();
    format!("{signing_input}.{}", BASE64URL_NOPAD.encode(&signature))
}

fn mac(secret: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length (RFC 2104 §2).
    match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    }
}

/// A base64url part of a token, decoded to its (UTF-8) JSON text.
fn decode_part(part: &str) -> Result<String, TokenError> {
    let bytes = BASE64URL_NOPAD
        .decode(part.as_bytes())
        .map_err(|_| TokenError::Malformed)?;
    String::from_utf8(bytes).map_err(|_| TokenError::Malformed)
}

fn object_of(text: &str) -> Result<Map<String, Value>, TokenError> {
    match serde_json::from_str(text) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(TokenError::Malformed),
    }
}

/// The claims of the payload `text`, already parsed as `claims`.
fn read_claims(
    claims: &Map<String, Value>,
    text: &str,
    max_meta_size: usize,
) -> Result<Claims, Refusal> {
    let subject = claims
        .get("sub")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("sub must be a string".into()))?;
    names::validate_user(subject).map_err(|e| malformed(format!("sub {e}")))?;
    let expires_at = claims
        .get("exp")
        .and_then(numeric_date)
        .ok_or_else(|| malformed("exp must be a NumericDate".into()))?;
    let channels = match claims.get("channels") {
        None => ChannelGrant::all(),
        Some(Value::Array(entries)) => {
            let entries: Option<Vec<&str>> = entries.iter().map(Value::as_str).collect();
            let entries = entries
                .ok_or_else(|| malformed("channels: every entry must be a string".into()))?;
            ChannelGrant::parse(entries).map_err(malformed)?
        }
        Some(_) => {
            let detail = "channels must be an array of names and patterns";
            return Err(malformed(detail.into()));
        }
    };
    let meta = match claims.get("meta") {
        None => None,
        Some(Value::Object(_)) => {
            // From its text, so that its numbers keep every digit (protocol §2).
            let fields = Fields::parse(text).map_err(|_| TokenError::Malformed)?;
            let json = fields
                .get("meta")
                .and_then(|meta| Json::parse(meta.get()))
                .ok_or(TokenError::Malformed)?;
            let size = json.as_str().len();
            if size > max_meta_size {
                let detail = format!("meta is {size} bytes, the limit is {max_meta_size}");
                return Err(malformed(detail));
            }
            Some(Meta::from_json(json))
        }
        Some(_) => return Err(malformed("meta must be an object".into())),
    };
    Ok(Claims {
        subject: subject.to_owned(),
        expires_at,
        channels,
        meta,
    })
}

fn seconds_to_ms(seconds: u64) -> u64 {
    seconds.saturating_mul(1000)
}

/// An optional NumericDate claim; present but not a NumericDate is malformed.
fn read_time(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(value) => numeric_date(value).map(Some).ok_or(TokenError::Malformed),
    }
}

/// A NumericDate (RFC 7519 §2): seconds, possibly fractional; negative ones are malformed.
fn numeric_date(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|f| *f >= 0.0 && f.is_finite())
            .map(|f| f as u64)
    })
}

/// A malformed claim, and what was wrong with it.
fn malformed(detail: String) -> Refusal {
    Refusal {
        reason: TokenError::Malformed,
        detail: Some(detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &[u8] = b"s3cret";
    const NOW: u64 = 1_800_000_000;

    fn verify_now(token: &str) -> Result<Claims, TokenError> {
        verify(token, SECRET, NOW * 1000, 5, 1024).map_err(|refusal| refusal.reason)
    }

    fn token(claims: Value) -> String {
        sign(&claims, SECRET)
    }

    fn with_header(header: &str, claims: Value, key: &[u8]) -> String {
        let input = format!(
            "{}.{}",
            BASE64URL_NOPAD.encode(header.as_bytes()),
            BASE64URL_NOPAD.encode(claims.to_string().as_bytes())
        );
        let signature = mac(key)
            .chain_update(input.as_bytes())
            .finalize()
            .into_bytes();
        format!("{input}.{}", BASE64URL_NOPAD.encode(&signature))
    }

    #[test]
    fn a_valid_token_yields_its_claims() {
        let claims = verify_now(&token(json!({
            "sub": "alice", "exp": NOW + 60, "iat": NOW, "channels": ["lobby", "chat.*"], "meta": {"n": 1}
        })))
        .expect("valid");
        assert_eq!(claims.subject, "alice");
        assert_eq!(claims.expires_at, NOW + 60);
        assert!(claims.channels.allows("lobby") && claims.channels.allows("chat.1"));
        assert!(!claims.channels.allows("chats") && !claims.channels.allows("lob"));
        assert_eq!(
            claims.meta.map(|m| m.as_str().to_owned()),
            Some(r#"{"n":1}"#.into())
        );
    }

    #[test]
    fn time_claims_with_leeway() {
        assert!(
            verify_now(&token(json!({"sub": "a", "exp": NOW - 3}))).is_ok(),
            "within leeway"
        );
        assert_eq!(
            verify_now(&token(json!({"sub": "a", "exp": NOW - 6}))),
            Err(TokenError::Expired)
        );
        assert_eq!(
            verify_now(&token(
                json!({"sub": "a", "exp": NOW + 60, "nbf": NOW + 10})
            )),
            Err(TokenError::NotYetValid)
        );
        assert_eq!(
            verify_now(&token(
                json!({"sub": "a", "exp": NOW + 60, "iat": NOW + 10})
            )),
            Err(TokenError::NotYetValid)
        );
        assert!(verify_now(&token(json!({"sub": "a", "exp": NOW + 60, "nbf": NOW + 4}))).is_ok());
    }

    #[test]
    fn a_token_is_expired_as_soon_as_its_exp_second_passes() {
        let token = token(json!({"sub": "a", "exp": NOW}));
        assert!(verify(&token, SECRET, NOW * 1000 - 1, 0, 1024).is_ok());
        assert_eq!(
            verify(&token, SECRET, NOW * 1000, 0, 1024).map_err(|r| r.reason),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn classic_attacks_are_refused() {
        let claims = json!({"sub": "alice", "exp": NOW + 60});
        let none = format!(
            "{}.{}.",
            BASE64URL_NOPAD.encode(br#"{"alg":"none"}"#),
            BASE64URL_NOPAD.encode(claims.to_string().as_bytes())
        );
        assert_eq!(verify_now(&none), Err(TokenError::BadAlgorithm));
        let hs512 = with_header(r#"{"alg":"HS512"}"#, claims.clone(), SECRET);
        assert_eq!(verify_now(&hs512), Err(TokenError::BadAlgorithm));
        let other_key = with_header(r#"{"alg":"HS256"}"#, claims.clone(), b"another");
        assert_eq!(verify_now(&other_key), Err(TokenError::BadSignature));
        let good = token(claims);
        let forged = token(json!({"sub": "mallory", "exp": NOW + 60}));
        let mut parts: Vec<&str> = good.split('.').collect();
        parts[1] = forged.split('.').nth(1).expect("payload");
        assert_eq!(
            verify_now(&parts.join(".")),
            Err(TokenError::BadSignature),
            "tampered payload"
        );
    }

    #[test]
    fn malformed_tokens() {
        assert_eq!(verify_now(""), Err(TokenError::Missing));
        for bad in ["a.b", "a.b.c.d", "!!!.x.y", "e30.e30.", "e30.e30.e30"] {
            assert!(
                matches!(
                    verify_now(bad),
                    Err(TokenError::Malformed | TokenError::BadAlgorithm)
                ),
                "{bad}"
            );
        }
        for claims in [
            json!({"exp": NOW + 60}),
            json!({"sub": "alice"}),
            json!({"sub": "a\nb", "exp": NOW + 60}),
            json!({"sub": "", "exp": NOW + 60}),
            json!({"sub": "a", "exp": "soon"}),
            json!({"sub": "a", "exp": NOW + 60, "channels": "lobby"}),
            json!({"sub": "a", "exp": NOW + 60, "channels": ["a|b"]}),
            json!({"sub": "a", "exp": NOW + 60, "meta": [1]}),
        ] {
            assert_eq!(
                verify_now(&token(claims.clone())),
                Err(TokenError::Malformed),
                "{claims}"
            );
        }
    }

    #[test]
    fn a_refusal_names_the_claim_and_the_entry() {
        let refused = |claims: Value| {
            verify(&token(claims), SECRET, NOW * 1000, 5, 16).expect_err("malformed")
        };
        let grant = refused(json!({"sub": "a", "exp": NOW + 60, "channels": ["ok", "bad*x"]}));
        assert_eq!(grant.reason, TokenError::Malformed);
        let text = grant.to_string();
        assert!(
            text.starts_with("malformed (") && text.contains(r#""bad*x""#),
            "{text}"
        );
        let sub = refused(json!({"sub": "x".repeat(129), "exp": NOW + 60})).to_string();
        assert!(sub.contains("sub is 129 bytes long"), "{sub}");
        let meta = refused(json!({"sub": "a", "exp": NOW + 60, "meta": {"n": "long text"}}));
        assert!(meta.to_string().contains("limit is 16"), "{meta}");
    }

    #[test]
    fn identities_from_identity_providers() {
        for sub in [
            "auth0|5f7c8ec7c33c6c004bbafe82",
            "jane+x@example.com",
            "山田 🦀",
            "\"\\",
        ] {
            let claims = verify_now(&token(json!({"sub": sub, "exp": NOW + 60})));
            assert_eq!(claims.map(|c| c.subject), Ok(sub.to_owned()));
        }
    }

    /// A token signed over `payload` exactly as written (`json!` cannot spell every number).
    fn token_of_text(payload: &str) -> String {
        let input = format!(
            "{}.{}",
            BASE64URL_NOPAD.encode(br#"{"alg":"HS256"}"#),
            BASE64URL_NOPAD.encode(payload.as_bytes())
        );
        let signature = mac(SECRET)
            .chain_update(input.as_bytes())
            .finalize()
            .into_bytes();
        format!("{input}.{}", BASE64URL_NOPAD.encode(&signature))
    }

    /// Issue 13 item 4: the `meta` claim keeps every digit of its numbers, while the time
    /// claims are still read from any spelling of a JSON number.
    #[test]
    fn meta_numbers_pass_through_and_times_read_any_number() {
        let payload = format!(
            r#"{{"sub":"a","exp":{}E0,"iat":{}.5,"meta":{{"big":12345678901234567890123,"neg":-9223372036854775809}}}}"#,
            NOW + 60,
            NOW - 1
        );
        let claims = verify_now(&token_of_text(&payload)).expect("valid");
        assert_eq!(claims.expires_at, NOW + 60);
        assert_eq!(
            claims.meta.map(|m| m.as_str().to_owned()),
            Some(r#"{"big":12345678901234567890123,"neg":-9223372036854775809}"#.into())
        );
        let later = format!(r#"{{"sub":"a","exp":{},"nbf":{}.0e0}}"#, NOW + 60, NOW + 10);
        assert_eq!(
            verify_now(&token_of_text(&later)),
            Err(TokenError::NotYetValid)
        );
        for exp in ["1e400", "-1", "18446744073709551616e-30"] {
            let payload = format!(r#"{{"sub":"a","exp":{exp}}}"#);
            assert!(verify_now(&token_of_text(&payload)).is_err(), "exp {exp}");
        }
    }
}
