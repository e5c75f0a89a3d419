//! The Pusher REST API's request signatures (the `pusher` server SDKs sign every call):
//! `auth_signature = HEX(HMAC-SHA256(secret, METHOD\nPATH\nQUERY))`, QUERY being every
//! parameter but `auth_signature`, keys lowercased, sorted, `key=value` joined by `&`, values
//! percent-decoded. The key must be the app's, the timestamp within [`MAX_SKEW_SECS`] of
//! ours, and `body_md5` the MD5 of the body when the body is not empty, and also when an
//! SDK sends it with an empty body (pusher-http-python does, on every GET).

use std::collections::BTreeMap;

use data_encoding::HEXLOWER;
use hmac::Mac;
use md5::{Digest, Md5};

use super::auth::{decode_hex, mac};
use super::socket_id::is_socket_id;
use super::{App, MAX_EVENT_NAME};
use crate::http::percent;

/// How far a request's `auth_timestamp` may be from the server's clock, in seconds.
pub const MAX_SKEW_SECS: u64 = 600;

/// A refused REST call: the HTTP status and a message for the JSON error body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestError {
    /// 400 for bad input, 401 for a bad signature, key or timestamp, 404, 413...
    pub status: u16,
    /// What was wrong.
    pub message: String,
}

impl RestError {
    /// A refusal with `status` and `message`.
    pub fn new(status: u16, message: impl Into<String>) -> RestError {
        RestError {
            status,
            message: message.into(),
        }
    }
}

/// The parameters of a request's query, decoded, by lowercased name.
pub type Params = BTreeMap<String, String>;

/// A signed request, as the server read it.
pub struct Signed<'a> {
    /// `GET` or `POST`.
    pub method: &'a str,
    /// The path, as sent (`/apps/1/events`).
    pub path: &'a str,
    /// The raw query (without `?`).
    pub query: &'a str,
    /// The body.
    pub body: &'a [u8],
}

/// Checks `request`'s signature for `app` at `now_secs` (Unix seconds); returns its
/// parameters (without the `auth_` ones).
pub fn verify(app: &App, request: &Signed<'_>, now_secs: u64) -> Result<Params, RestError> {
    let mut params = Params::new();
    let mut signature = None;
    for pair in request.query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |text| {
            percent::decode_query_value(text)
                .map_err(|error| RestError::new(400, format!("query {name}: {error}")))
        };
        let (name, value) = (decode(name)?.to_ascii_lowercase(), decode(value)?);
        if name == "auth_signature" {
            signature = Some(value);
        } else if params.insert(name.clone(), value).is_some() {
            return Err(RestError::new(
                400,
                format!("query parameter {name} given twice"),
            ));
        }
    }
    let unauthorized = |message: &str| RestError::new(401, message);
    match params.get("auth_key") {
        Some(key) if *key == app.key => {}
        Some(_) => return Err(unauthorized("auth_key is not this app's key")),
        None => return Err(unauthorized("missing auth_key")),
    }
    let timestamp = params
        .get("auth_timestamp")
        .and_then(|ts| ts.parse::<u64>().ok())
        .ok_or_else(|| unauthorized("missing or malformed auth_timestamp"))?;
    if timestamp.abs_diff(now_secs) > MAX_SKEW_SECS {
        return Err(unauthorized(&format!(
            "auth_timestamp is {}s from the server's clock; at most {MAX_SKEW_SECS}s is accepted",
            timestamp.abs_diff(now_secs)
        )));
    }
    if params.get("auth_version").is_some_and(|v| v != "1.0") {
        return Err(unauthorized("auth_version must be 1.0"));
    }
    check_body_md5(params.get("body_md5").map(String::as_str), request.body)?;
    let signature = signature.ok_or_else(|| unauthorized("missing auth_signature"))?;
    let signature =
        decode_hex(&signature).ok_or_else(|| unauthorized("auth_signature is not hexadecimal"))?;
    mac(&app.secret)
        .chain_update(string_to_sign(request.method, request.path, &params))
        .verify_slice(&signature)
        .map_err(|_| unauthorized("invalid signature: check the app secret"))?;
    params.retain(|name, _| !name.starts_with("auth_") && name != "body_md5");
    Ok(params)
}

/// The query of a request to `path` signed for `app` at `timestamp` (Unix seconds), as the
/// server SDKs sign one: `extra` parameters (unescaped; give them URL-safe), `auth_*`, the
/// body's MD5 when it has one, and `auth_signature`. For load tools and tests.
pub fn signed_query(
    app: &App,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &[u8],
    timestamp: u64,
) -> String {
    let mut params: Params = extra
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    params.insert("auth_key".into(), app.key.clone());
    params.insert("auth_timestamp".into(), timestamp.to_string());
    params.insert("auth_version".into(), "1.0".into());
    if !body.is_empty() {
        params.insert("body_md5".into(), HEXLOWER.encode(&Md5::digest(body)));
    }
    let text = string_to_sign(method, path, &params);
    let signature = HEXLOWER.encode(&mac(&app.secret).chain_update(text).finalize().into_bytes());
    let mut query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    query.push(format!("auth_signature={signature}"));
    query.join("&")
}

/// `METHOD\nPATH\nk=v&k=v`, the parameters sorted by name (they are, in a `BTreeMap`).
fn string_to_sign(method: &str, path: &str, params: &Params) -> String {
    let mut text = format!("{method}\n{path}\n");
    for (index, (name, value)) in params.iter().enumerate() {
        if index > 0 {
            text.push('&');
        }
        text.push_str(name);
        text.push('=');
        text.push_str(value);
    }
    text
}

/// A body must come with its MD5; a `body_md5` sent with an empty body must match too.
fn check_body_md5(given: Option<&str>, body: &[u8]) -> Result<(), RestError> {
    let actual = HEXLOWER.encode(&Md5::digest(body));
    match given {
        Some(given) if given.eq_ignore_ascii_case(&actual) => Ok(()),
        Some(_) => Err(RestError::new(401, "body_md5 does not match the body")),
        None if body.is_empty() => Ok(()),
        None => Err(RestError::new(401, "a request with a body needs body_md5")),
    }
}

/// Most channels one event may name.
pub const MAX_CHANNELS_PER_EVENT: usize = 100;

/// Most events one batch may hold.
pub const MAX_BATCH: usize = 10;

/// One event the REST API asks to trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    /// The event's name.
    pub name: String,
    /// Its data as JSON text: a JSON string, delivered verbatim (a non-string `data` is sent
    /// as the string of its JSON text, as Pusher does).
    pub data: String,
    /// The channels, without repeats.
    pub channels: Vec<String>,
    /// The connection not to send it to (`socket_id`: Laravel's `toOthers()`).
    pub socket_id: Option<String>,
    /// The `info` asked for (`user_count`, `subscription_count`), comma-separated.
    pub info: Option<String>,
}

/// Reads `POST /apps/{id}/events`.
pub fn parse_trigger(body: &[u8], max_data: usize) -> Result<Trigger, RestError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|error| RestError::new(400, format!("the body is not JSON: {error}")))?;
    trigger_of(&value, max_data)
}

/// Reads `POST /apps/{id}/batch_events`: `{"batch":[EVENT,...]}`, each event naming one
/// `channel`.
pub fn parse_batch(body: &[u8], max_data: usize) -> Result<Vec<Trigger>, RestError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|error| RestError::new(400, format!("the body is not JSON: {error}")))?;
    let Some(batch) = value.get("batch").and_then(serde_json::Value::as_array) else {
        return Err(RestError::new(400, "the body must be {\"batch\":[...]}"));
    };
    if batch.len() > MAX_BATCH {
        return Err(RestError::new(
            400,
            format!(
                "a batch holds at most {MAX_BATCH} events, not {}",
                batch.len()
            ),
        ));
    }
    batch
        .iter()
        .map(|event| trigger_of(event, max_data))
        .collect()
}

fn trigger_of(value: &serde_json::Value, max_data: usize) -> Result<Trigger, RestError> {
    let bad = |message: String| RestError::new(400, message);
    let field = |name: &str| value.get(name).filter(|v| !v.is_null());
    let name = match field("name").and_then(serde_json::Value::as_str) {
        Some(name) if !name.is_empty() && name.len() <= MAX_EVENT_NAME && !name.contains('\t') => {
            name.to_owned()
        }
        _ => {
            return Err(bad(format!(
                "\"name\" must be a string of 1 to {MAX_EVENT_NAME} bytes without tabs"
            )))
        }
    };
    let data = match field("data") {
        Some(serde_json::Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
        None => return Err(bad("missing \"data\"".into())),
    };
    if data.len() > max_data {
        return Err(RestError::new(
            413,
            format!("\"data\" is {} bytes; the limit is {max_data}", data.len()),
        ));
    }
    let mut channels: Vec<String> = Vec::new();
    let named: Vec<&serde_json::Value> = match (field("channels"), field("channel")) {
        (Some(serde_json::Value::Array(list)), None) => list.iter().collect(),
        (None, Some(one)) => vec![one],
        _ => return Err(bad("give \"channels\" (an array) or \"channel\"".into())),
    };
    if named.is_empty() || named.len() > MAX_CHANNELS_PER_EVENT {
        return Err(bad(format!(
            "an event names 1 to {MAX_CHANNELS_PER_EVENT} channels"
        )));
    }
    for channel in named {
        let Some(channel) = channel.as_str() else {
            return Err(bad("channel names are strings".into()));
        };
        super::channel::validate(channel).map_err(bad)?;
        if !channels.iter().any(|c| c == channel) {
            channels.push(channel.to_owned());
        }
    }
    let socket_id = match field("socket_id") {
        None => None,
        Some(serde_json::Value::String(id)) if is_socket_id(id) => Some(id.clone()),
        Some(other) => return Err(bad(format!("invalid socket_id {other}"))),
    };
    let info = field("info")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    let mut quoted = String::with_capacity(data.len() + 2);
    crate::model::push_json_str(&mut quoted, &data);
    Ok(Trigger {
        name,
        data: quoted,
        channels,
        socket_id,
        info,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_353_088_179;

    fn app() -> App {
        App::parse("3:278d425bdf160c739803:7ad3773142a6692b25b8").expect("app")
    }

    /// The reference's example (`../shared/pusher-protocol.md` §5).
    #[test]
    fn the_reference_example_is_signed_as_pusher_signs_it() {
        let params: Params = [
            ("auth_key", "278d425bdf160c739803"),
            ("auth_timestamp", "1353088179"),
            ("auth_version", "1.0"),
            ("body_md5", "ec365a775a4cd0599faeb73354201b6f"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let text = string_to_sign("POST", "/apps/3/events", &params);
        assert_eq!(
            super::super::auth::sign(&app().secret, &text),
            "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
        );
    }

    /// Signs as the SDKs do, for the tests below.
    fn signed_query(method: &str, path: &str, extra: &str, body: &[u8], ts: u64) -> String {
        let extra: Vec<(&str, &str)> = extra
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .collect();
        super::signed_query(&app(), method, path, &extra, body, ts)
    }

    fn check(method: &str, path: &str, query: &str, body: &[u8]) -> Result<Params, RestError> {
        let request = Signed {
            method,
            path,
            query,
            body,
        };
        verify(&app(), &request, NOW)
    }

    #[test]
    fn signed_requests_pass_and_give_their_parameters() {
        let body = br#"{"name":"e","channel":"c","data":"x"}"#;
        let query = signed_query("POST", "/apps/3/events", "", body, NOW);
        assert_eq!(
            check("POST", "/apps/3/events", &query, body),
            Ok(Params::new())
        );
        let query = signed_query(
            "GET",
            "/apps/3/channels",
            "filter_by_prefix=presence-",
            b"",
            NOW,
        );
        let params = check("GET", "/apps/3/channels", &query, b"").expect("valid");
        assert_eq!(
            params.get("filter_by_prefix").map(String::as_str),
            Some("presence-")
        );
    }

    #[test]
    fn an_empty_body_with_its_md5_passes() {
        let empty_md5 = HEXLOWER.encode(&Md5::digest(b""));
        let query = signed_query(
            "GET",
            "/apps/3/channels",
            &format!("body_md5={empty_md5}"),
            b"",
            NOW,
        );
        assert!(check("GET", "/apps/3/channels", &query, b"").is_ok());
    }

    #[test]
    fn forged_stale_and_tampered_requests_get_401() {
        let body = br#"{"name":"e","channel":"c","data":"x"}"#;
        let good = signed_query("POST", "/apps/3/events", "", body, NOW);
        for (what, result) in [
            (
                "another body",
                check("POST", "/apps/3/events", &good, br#"{"name":"f"}"#),
            ),
            ("another path", check("POST", "/apps/4/events", &good, body)),
            (
                "another method",
                check("GET", "/apps/3/events", &good, body),
            ),
            (
                "a stale timestamp",
                check(
                    "POST",
                    "/apps/3/events",
                    &signed_query("POST", "/apps/3/events", "", body, NOW - 601),
                    body,
                ),
            ),
            (
                "a wrong signature",
                check(
                    "POST",
                    "/apps/3/events",
                    &good.replace("auth_signature=", "auth_signature=0"),
                    body,
                ),
            ),
            (
                "no signature",
                check(
                    "POST",
                    "/apps/3/events",
                    "auth_key=278d425bdf160c739803",
                    body,
                ),
            ),
            (
                "another key",
                check(
                    "POST",
                    "/apps/3/events",
                    &good.replace("278d425bdf160c739803", "other"),
                    body,
                ),
            ),
        ] {
            assert_eq!(result.map_err(|e| e.status), Err(401), "{what}");
        }
        let within = signed_query("POST", "/apps/3/events", "", body, NOW + 600);
        assert!(
            check("POST", "/apps/3/events", &within, body).is_ok(),
            "600 s is within"
        );
    }

    #[test]
    fn events_bodies_are_read_and_checked() {
        let trigger = parse_trigger(
            br#"{"name":"e","data":"{\"a\":1}","channels":["c","private-d","c"],"socket_id":"1.2"}"#,
            100,
        )
        .expect("valid");
        assert_eq!(
            trigger.data, r#""{\"a\":1}""#,
            "a JSON string, delivered verbatim"
        );
        assert_eq!(trigger.channels, ["c", "private-d"]);
        assert_eq!(trigger.socket_id.as_deref(), Some("1.2"));
        let object =
            parse_trigger(br#"{"name":"e","data":{"a":1},"channel":"c"}"#, 100).expect("valid");
        assert_eq!(object.data, r#""{\"a\":1}""#);
        for (body, status) in [
            (&br#"nope"#[..], 400),
            (br#"{"data":"x","channel":"c"}"#, 400),
            (br#"{"name":"e","channel":"c"}"#, 400),
            (br#"{"name":"e","data":"x"}"#, 400),
            (br#"{"name":"e","data":"x","channel":"a b"}"#, 400),
            (br#"{"name":"e","data":"x","channels":[]}"#, 400),
            (br#"{"name":"e","data":"x","channel":"c","socket_id":"abc"}"#, 400),
            (br#"{"name":"e","data":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx","channel":"c"}"#, 413),
        ] {
            let result = parse_trigger(body, 100).map_err(|e| e.status);
            assert_eq!(result, Err(status), "{}", String::from_utf8_lossy(body));
        }
        let many: Vec<String> = (0..101).map(|i| format!("\"c{i}\"")).collect();
        let body = format!(
            r#"{{"name":"e","data":"x","channels":[{}]}}"#,
            many.join(",")
        );
        assert_eq!(
            parse_trigger(body.as_bytes(), 100).map_err(|e| e.status),
            Err(400)
        );
    }

    #[test]
    fn batches_hold_at_most_ten() {
        let one = r#"{"name":"e","data":"x","channel":"c"}"#;
        let batch = |n: usize| format!(r#"{{"batch":[{}]}}"#, vec![one; n].join(","));
        assert_eq!(
            parse_batch(batch(10).as_bytes(), 100).map(|b| b.len()),
            Ok(10)
        );
        assert_eq!(
            parse_batch(batch(11).as_bytes(), 100).map_err(|e| e.status),
            Err(400)
        );
        assert!(parse_batch(b"{}", 100).is_err());
    }
}
