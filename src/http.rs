//! HTTP/1.1 on the WebSocket port: reading one request head without blocking, and deciding
//! between a WebSocket upgrade (RFC 6455 §4.2) and an error response.
//!
//! Pure: bytes in, a decision out. The head is parsed with `httparse` and bounded by
//! [`MAX_HEAD`]; nothing a peer sends can make this module allocate more than that or panic.
//! A pending handshake costs only the bytes received so far (tungstenite's own server
//! handshake would allocate a 4 KiB chunk per pending connection), and the same parser serves
//! the plain HTTP endpoints that share the port.

use std::fmt::Write;

use crate::names;
use crate::protocol::EventsMode;

/// Largest accepted request head; a larger one is answered with 431.
pub const MAX_HEAD: usize = 8 << 10;
const MAX_HEADERS: usize = 32;

/// An HTTP response to send before closing the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Extra headers besides `Content-Type`, `Content-Length` and `Connection: close`.
    pub headers: Vec<(&'static str, &'static str)>,
    /// Plain-text body.
    pub body: String,
}

impl Response {
    /// A plain-text error response.
    pub fn error(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    fn with_header(mut self, name: &'static str, value: &'static str) -> Response {
        self.headers.push((name, value));
        self
    }

    /// The wire form; the connection is closed after it is written.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            reason_phrase(self.status),
            self.body.len() + 1
        );
        for (name, value) in &self.headers {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(self.body.as_bytes());
        bytes.push(b'\n');
        bytes
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// What a valid upgrade request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// `user` from the query, if given (validated).
    pub user: Option<String>,
    /// `channel` values from the query, in order, without repeats (validated).
    pub channels: Vec<String>,
    /// `events` from the query (default `all`).
    pub events: EventsMode,
    /// The `Sec-WebSocket-Accept` value for the response.
    pub accept_key: String,
}

impl Upgrade {
    /// The `101 Switching Protocols` response (RFC 6455 §4.2.2).
    pub fn response(&self) -> Vec<u8> {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            self.accept_key
        )
        .into_bytes()
    }
}

/// The result of looking at the bytes received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    /// The head is not complete yet; read more.
    Partial,
    /// A complete upgrade request; `head_len` bytes belong to it, the rest are frames.
    Upgrade {
        /// What the request asks for.
        upgrade: Upgrade,
        /// Length of the request head in the buffer.
        head_len: usize,
    },
    /// Answer with this response and close.
    Refuse(Response),
}

/// Examines the bytes received so far on a new connection.
pub fn examine(buffer: &[u8]) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buffer) {
        Ok(httparse::Status::Partial) if buffer.len() >= MAX_HEAD => Head::Refuse(too_large()),
        Ok(httparse::Status::Partial) => Head::Partial,
        Ok(httparse::Status::Complete(head_len)) => match route(&request) {
            Ok(upgrade) => Head::Upgrade { upgrade, head_len },
            Err(response) => Head::Refuse(response),
        },
        Err(httparse::Error::TooManyHeaders) => Head::Refuse(too_large()),
        Err(error) => Head::Refuse(Response::error(
            400,
            format!("malformed HTTP request: {error}"),
        )),
    }
}

fn too_large() -> Response {
    Response::error(
        431,
        format!("request head over {MAX_HEAD} bytes or {MAX_HEADERS} headers"),
    )
}

fn route(request: &httparse::Request) -> Result<Upgrade, Response> {
    let target = request.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path != "/" && path != "/ws" {
        return Err(Response::error(404, format!("no such path: {path}")));
    }
    if request.method != Some("GET") {
        return Err(Response::error(405, "only GET is allowed here").with_header("Allow", "GET"));
    }
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
    };
    let has_token = |name: &str, token: &str| {
        header(name).is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    if !has_token("Upgrade", "websocket") || !has_token("Connection", "upgrade") {
        return Err(Response::error(
            426,
            "this endpoint speaks WebSocket: connect with a WebSocket client",
        )
        .with_header("Upgrade", "websocket"));
    }
    if request.version != Some(1) {
        return Err(Response::error(400, "a WebSocket upgrade needs HTTP/1.1"));
    }
    // RFC 6455 §4.4: answer an unsupported version with the versions we speak.
    if header("Sec-WebSocket-Version").map(str::trim) != Some("13") {
        return Err(Response::error(
            426,
            "unsupported Sec-WebSocket-Version: this server speaks 13",
        )
        .with_header("Sec-WebSocket-Version", "13"));
    }
    // RFC 6455 §4.1: the key is 16 random bytes, base64-encoded (24 characters).
    let key = header("Sec-WebSocket-Key")
        .map(str::trim)
        .filter(|key| key.len() == 24);
    let Some(key) = key else {
        return Err(Response::error(
            400,
            "missing or malformed Sec-WebSocket-Key",
        ));
    };
    let mut upgrade = parse_query(query).map_err(|reason| Response::error(400, reason))?;
    upgrade.accept_key = tungstenite::handshake::derive_accept_key(key.as_bytes());
    Ok(upgrade)
}

fn parse_query(query: &str) -> Result<Upgrade, String> {
    let mut upgrade = Upgrade {
        user: None,
        channels: Vec::new(),
        events: EventsMode::All,
        accept_key: String::new(),
    };
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, raw) = pair.split_once('=').unwrap_or((pair, ""));
        if !matches!(name, "user" | "channel" | "events") {
            // Unknown parameters (cache busters, a proxy's additions) are not ours to judge.
            continue;
        }
        let value =
            percent_decode(raw).ok_or_else(|| format!("{name}: malformed percent-encoding"))?;
        match name {
            "user" if upgrade.user.is_some() => return Err("user: given more than once".into()),
            "user" => {
                names::validate(&value).map_err(|error| format!("user {error}"))?;
                upgrade.user = Some(value);
            }
            "channel" => {
                names::validate(&value).map_err(|error| format!("channel {error}"))?;
                if !upgrade.channels.contains(&value) {
                    upgrade.channels.push(value);
                }
            }
            "events" => {
                upgrade.events = EventsMode::parse(&value)
                    .ok_or_else(|| format!("events must be all, count or none, not {value:?}"))?;
            }
            _ => {}
        }
    }
    Ok(upgrade)
}

/// Decodes `%XX` escapes and `+` (as a space, per HTML forms); `None` on a broken escape or
/// a result that is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' => {
                let hex = bytes.get(index + 1..index + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                index += 3;
            }
            b'+' => {
                out.push(b' ');
                index += 1;
            }
            byte => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn upgrade_request(target: &str) -> String {
        format!(
            "GET {target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"
        )
    }

    fn refused(request: &str) -> Response {
        match examine(request.as_bytes()) {
            Head::Refuse(response) => response,
            other => panic!("expected a refusal for {request:?}, got {other:?}"),
        }
    }

    #[test]
    fn upgrade_with_query_and_pipelined_bytes() {
        let mut bytes = upgrade_request(
            "/ws?user=alice%40example.com&channel=a&channel=b&channel=a&events=count&x=%zz",
        )
        .into_bytes();
        let head = bytes.len();
        bytes.extend_from_slice(&[0x81, 0x80]);
        let Head::Upgrade { upgrade, head_len } = examine(&bytes) else {
            panic!("not an upgrade")
        };
        assert_eq!(head_len, head);
        assert_eq!(upgrade.user.as_deref(), Some("alice@example.com"));
        assert_eq!(upgrade.channels, vec!["a", "b"]);
        assert_eq!(upgrade.events, EventsMode::Count);
        // The example from RFC 6455 §1.3.
        assert_eq!(upgrade.accept_key, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let response = String::from_utf8(upgrade.response()).expect("ascii");
        assert!(response.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(response.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    }

    #[test]
    fn partial_until_the_blank_line() {
        let request = upgrade_request("/");
        assert_eq!(
            examine(&request.as_bytes()[..request.len() - 2]),
            Head::Partial
        );
        assert_eq!(examine(b""), Head::Partial);
    }

    #[test]
    fn routing_errors() {
        assert_eq!(refused("GET /nope HTTP/1.1\r\n\r\n").status, 404);
        let response = refused("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(response.status, 405);
        assert_eq!(response.headers, vec![("Allow", "GET")]);
        assert_eq!(refused("GET / HTTP/1.1\r\nHost: x\r\n\r\n").status, 426);
        let old = upgrade_request("/").replace("Version: 13", "Version: 8");
        let response = refused(&old);
        assert_eq!(response.status, 426);
        assert_eq!(response.headers, vec![("Sec-WebSocket-Version", "13")]);
        assert_eq!(
            refused(&upgrade_request("/").replace(KEY, "short")).status,
            400
        );
        assert_eq!(
            refused(&upgrade_request("/").replace("HTTP/1.1", "HTTP/1.0")).status,
            400
        );
    }

    #[test]
    fn bad_query_values_are_400_with_a_reason() {
        for (target, needle) in [
            ("/?user=", "user must not be empty"),
            ("/?user=bad%20name", "user contains ' '"),
            ("/?user=a&user=b", "more than once"),
            ("/?channel=a:b", "channel contains ':'"),
            ("/?events=bogus", "events must be"),
            ("/?user=%zz", "percent-encoding"),
            ("/?user=%ff", "percent-encoding"),
        ] {
            let response = refused(&upgrade_request(target));
            assert_eq!(response.status, 400, "{target}");
            assert!(
                response.body.contains(needle),
                "{target}: {}",
                response.body
            );
        }
        let long = format!("/?user={}", "u".repeat(65));
        assert!(refused(&upgrade_request(&long))
            .body
            .contains("limit is 64"));
    }

    #[test]
    fn garbage_and_oversized_heads() {
        assert_eq!(refused("\x16\x03\x01garbage\r\n\r\n").status, 400);
        let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
        huge.resize(MAX_HEAD, b'a');
        assert_eq!(examine(&huge), Head::Refuse(too_large()));
        let mut many = String::from("GET / HTTP/1.1\r\n");
        for index in 0..=MAX_HEADERS {
            many.push_str(&format!("X-{index}: 1\r\n"));
        }
        many.push_str("\r\n");
        assert_eq!(refused(&many).status, 431);
    }

    #[test]
    fn response_bytes_are_complete_http() {
        let bytes = Response::error(405, "no")
            .with_header("Allow", "GET")
            .to_bytes();
        let text = String::from_utf8(bytes).expect("ascii");
        assert_eq!(
            text,
            "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\nConnection: close\r\nAllow: GET\r\n\r\nno\n"
        );
    }
}
