//! HTTP/1.1 for webhooks, pure: the bytes of a signed `POST` and the reading of the answer
//! with `httparse` (RFC 9112). Only the status matters; the body is skipped by its
//! `Content-Length`. An answer framed otherwise (chunked, or until the close) is decided by its
//! status at once and its connection is not reused.
//!
//! Invariants: a reader holds at most [`MAX_HEAD`] bytes of a response head, and never the
//! body; anything that is not HTTP/1.x is [`Read::Garbage`], never a panic.

use super::target::WebhookUrl;
use super::Signer;

/// The largest response head read; a longer one is garbage.
pub const MAX_HEAD: usize = 16 << 10;

/// Header fields read from a response head.
const MAX_HEADERS: usize = 32;

/// The bytes of one `POST` of `body` to `url`, signed by `signer` (protocol §6: the key, and
/// the hex HMAC-SHA256 of the exact body; `Content-Type` exactly `application/json`).
pub fn request(url: &WebhookUrl, signer: &Signer, body: &str) -> Vec<u8> {
    let signature = crate::pusher::auth::sign(&signer.secret, body);
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: rollcall/{version}\r\n\
         Content-Type: application/json\r\nX-Pusher-Key: {key}\r\n\
         X-Pusher-Signature: {signature}\r\nContent-Length: {length}\r\n\r\n",
        path = url.path,
        host = url.host_header(),
        version = env!("CARGO_PKG_VERSION"),
        key = signer.key,
        length = body.len(),
    );
    let mut bytes = Vec::with_capacity(head.len() + body.len());
    bytes.extend_from_slice(head.as_bytes());
    bytes.extend_from_slice(body.as_bytes());
    bytes
}

/// What the bytes so far say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// More is needed.
    Partial,
    /// The answer is complete (or its status is all that will be read): `reusable` when the
    /// connection may carry the next request.
    Done {
        /// The status code.
        status: u16,
        /// True when the body was framed by its length and the server keeps the connection.
        reusable: bool,
    },
    /// Not an HTTP/1.x response, or a head over [`MAX_HEAD`].
    Garbage,
}

/// Reads one response from the bytes as they arrive.
#[derive(Debug, Default)]
pub struct ResponseReader {
    head: Vec<u8>,
    /// Once the head is read: its status, whether the connection is kept, and the body bytes
    /// still to skip.
    body: Option<(u16, bool, u64)>,
}

impl ResponseReader {
    /// Feeds `bytes` (everything read since the last call).
    pub fn feed(&mut self, bytes: &[u8]) -> Read {
        if let Some((status, keep, left)) = self.body.as_mut() {
            let skipped = (bytes.len() as u64).min(*left);
            *left -= skipped;
            // Bytes beyond the body: the server sent more than it framed.
            if bytes.len() as u64 > skipped {
                return Read::Garbage;
            }
            return match *left {
                0 => Read::Done {
                    status: *status,
                    reusable: *keep,
                },
                _ => Read::Partial,
            };
        }
        self.head.extend_from_slice(bytes);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let used = match response.parse(&self.head) {
            Ok(httparse::Status::Complete(used)) => used,
            Ok(httparse::Status::Partial) if self.head.len() > MAX_HEAD => return Read::Garbage,
            Ok(httparse::Status::Partial) => return Read::Partial,
            Err(_) => return Read::Garbage,
        };
        let Some(status) = response.code else {
            return Read::Garbage;
        };
        // 1xx: an interim answer (RFC 9110 §15.2); the final one follows.
        if (100..200).contains(&status) {
            self.head.drain(..used);
            return self.feed(&[]);
        }
        let field = |name: &str| {
            response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .and_then(|h| std::str::from_utf8(h.value).ok())
                .map(str::trim)
        };
        let closes = field("connection").is_some_and(|v| {
            v.split(',')
                .any(|token| token.trim().eq_ignore_ascii_case("close"))
        }) || response.version == Some(0);
        let chunked = field("transfer-encoding").is_some();
        let length = match field("content-length") {
            Some(text) => match text.parse::<u64>() {
                Ok(length) => Some(length),
                Err(_) => return Read::Garbage,
            },
            // RFC 9112 §6.3: 204 and 304 have no body.
            None if status == 204 || status == 304 => Some(0),
            None => None,
        };
        let rest = self.head.split_off(used);
        self.head = Vec::new();
        match length {
            Some(length) if !chunked => {
                self.body = Some((status, !closes, length));
                self.feed(&rest)
            }
            // Framed otherwise: the status decides, the connection is not reused.
            _ => Read::Done {
                status,
                reusable: false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url() -> WebhookUrl {
        "http://127.0.0.1:9/hook".parse().expect("url")
    }

    #[test]
    fn the_request_is_signed_over_the_exact_body() {
        let signer = Signer {
            key: "k".into(),
            secret: "s".into(),
        };
        let body = "{\"time_ms\":1,\"events\":[]}";
        let bytes = request(&url(), &signer, body);
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut parsed = httparse::Request::new(&mut headers);
        let Ok(httparse::Status::Complete(used)) = parsed.parse(&bytes) else {
            panic!("not a complete request");
        };
        assert_eq!((parsed.method, parsed.path), (Some("POST"), Some("/hook")));
        let field = |name: &str| {
            parsed
                .headers
                .iter()
                .find(|h| h.name == name)
                .map(|h| std::str::from_utf8(h.value).expect("utf-8"))
        };
        assert_eq!(field("Content-Type"), Some("application/json"));
        assert_eq!(field("X-Pusher-Key"), Some("k"));
        assert_eq!(field("Host"), Some("127.0.0.1:9"));
        let expected = crate::pusher::auth::sign("s", body);
        assert_eq!(field("X-Pusher-Signature"), Some(expected.as_str()));
        assert_eq!(&bytes[used..], body.as_bytes());
    }

    #[test]
    fn a_response_split_anywhere_reads_the_same() {
        let text = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        for cut in 0..text.len() {
            let mut reader = ResponseReader::default();
            let first = reader.feed(&text[..cut]);
            assert_eq!(first, Read::Partial, "cut at {cut}");
            assert_eq!(
                reader.feed(&text[cut..]),
                Read::Done {
                    status: 200,
                    reusable: true
                },
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn framing_decides_reuse() {
        let read = |text: &[u8]| ResponseReader::default().feed(text);
        let done = |status, reusable| Read::Done { status, reusable };
        assert_eq!(read(b"HTTP/1.1 204 No Content\r\n\r\n"), done(204, true));
        assert_eq!(
            read(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok"),
            done(200, false)
        );
        assert_eq!(read(b"HTTP/1.1 500 Oops\r\n\r\nbody"), done(500, false));
        assert_eq!(
            read(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"),
            done(200, false)
        );
        assert_eq!(
            read(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"),
            done(200, false)
        );
        assert_eq!(
            read(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 OK\r\nContent-Length: 0\r\n\r\n"),
            done(202, true)
        );
    }

    #[test]
    fn garbage_is_garbage() {
        let read = |text: &[u8]| ResponseReader::default().feed(text);
        assert_eq!(read(b"SSH-2.0-OpenSSH\r\n\r\n"), Read::Garbage);
        assert_eq!(read(b"\x00\xff\xfe garbage"), Read::Garbage);
        assert_eq!(
            read(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"),
            Read::Garbage
        );
        assert_eq!(
            read(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nab"),
            Read::Garbage
        );
        let mut reader = ResponseReader::default();
        let mut endless = b"HTTP/1.1 200 OK\r\n".to_vec();
        endless.extend(std::iter::repeat_n(b'a', MAX_HEAD + 1));
        assert_eq!(reader.feed(&endless), Read::Garbage);
    }
}
