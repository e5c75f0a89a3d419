//! Reading one HTTP/1.1 request from the bytes received so far: complete, not yet, or
//! refused. Bounded: the head by [`MAX_HEAD`] and [`MAX_HEADERS`], the body by the caller's
//! cap (`Content-Length` over it is refused as soon as the head is in).

use super::{Response, MAX_HEAD, MAX_HEADERS};

/// A complete request, copied out of the receive buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query string (after `?`), possibly empty.
    pub query: String,
    /// The minor HTTP version (`1` for HTTP/1.1).
    pub version: u8,
    /// Header fields as sent (names keep their case; look them up with [`Request::header`]).
    pub headers: Vec<(String, String)>,
    /// `Content-Length`, when the request had one.
    pub content_length: Option<usize>,
    /// The body (`Content-Length` bytes).
    pub body: Vec<u8>,
    /// Bytes of head and body; what follows in the buffer belongs to the next protocol.
    pub len: usize,
}

impl Request {
    /// The first header of that name (ASCII case-insensitive), if valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// True when the comma-separated header `name` lists `token` (case-insensitive).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.header(name)
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }

    /// True when `If-None-Match` names `etag` (or is `*`): the client's copy is current and
    /// gets `304`. The comparison is weak (RFC 9110 §13.1.2): a `W/` prefix is ignored.
    pub fn none_match(&self, etag: &str) -> bool {
        self.header("If-None-Match").is_some_and(|list| {
            list.split(',')
                .map(str::trim)
                .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
        })
    }

    /// True for a WebSocket upgrade request (RFC 6455 §4.1: `Upgrade: websocket` and
    /// `Connection: Upgrade`).
    pub fn is_upgrade(&self) -> bool {
        self.has_token("Upgrade", "websocket") && self.has_token("Connection", "upgrade")
    }
}

/// The result of looking at the bytes received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Examined {
    /// Not complete yet: read more.
    Partial,
    /// A complete request.
    Complete(Request),
    /// Answer with this response and close.
    Refuse(Response),
}

/// Examines the bytes received so far on a new connection; bodies over `max_body` are refused.
pub fn examine(buffer: &[u8], max_body: usize) -> Examined {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let head_len = match parsed.parse(buffer) {
        Ok(httparse::Status::Complete(head_len)) if head_len > MAX_HEAD => {
            return Examined::Refuse(head_too_large())
        }
        Ok(httparse::Status::Complete(head_len)) => head_len,
        Ok(httparse::Status::Partial) if buffer.len() >= MAX_HEAD => {
            return Examined::Refuse(head_too_large())
        }
        Ok(httparse::Status::Partial) => return Examined::Partial,
        Err(httparse::Error::TooManyHeaders) => return Examined::Refuse(head_too_large()),
        Err(error) => {
            return Examined::Refuse(Response::error(
                400,
                format!("malformed HTTP request: {error}"),
            ))
        }
    };
    let target = parsed.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut request = Request {
        method: parsed.method.unwrap_or("").to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        version: parsed.version.unwrap_or(0),
        headers: parsed
            .headers
            .iter()
            .filter_map(|h| {
                Some((
                    h.name.to_owned(),
                    std::str::from_utf8(h.value).ok()?.to_owned(),
                ))
            })
            .collect(),
        content_length: None,
        body: Vec::new(),
        len: head_len,
    };
    let refuse = |status, code, message: String| {
        Examined::Refuse(refusal(&request.path, status, code, &message))
    };
    if request.header("Transfer-Encoding").is_some() {
        let message = "chunked request bodies are not supported: send Content-Length".to_owned();
        return refuse(411, "length_required", message);
    }
    let Some(length) = request.header("Content-Length") else {
        return Examined::Complete(request);
    };
    let Ok(length) = length.trim().parse::<usize>() else {
        return refuse(400, "bad_request", "malformed Content-Length".to_owned());
    };
    // A length whose end does not fit in memory is over any limit.
    let end = head_len.checked_add(length).filter(|_| length <= max_body);
    let Some(end) = end else {
        let message = format!("request body of {length} bytes is over the limit of {max_body}");
        return refuse(413, "payload_too_large", message);
    };
    let Some(body) = buffer.get(head_len..end) else {
        return Examined::Partial;
    };
    request.content_length = Some(length);
    request.body = body.to_vec();
    request.len = end;
    Examined::Complete(request)
}

/// A refusal in the format of the endpoint asked for: JSON for the JSON API, else text.
fn refusal(path: &str, status: u16, code: &str, message: &str) -> Response {
    if super::route::is_api_path(path) {
        Response::json_error(status, code, message)
    } else {
        Response::error(status, message)
    }
}

fn head_too_large() -> Response {
    Response::error(
        431,
        format!("request head over {MAX_HEAD} bytes or {MAX_HEADERS} headers"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(bytes: &[u8]) -> Request {
        match examine(bytes, 64) {
            Examined::Complete(request) => request,
            other => panic!("expected a complete request, got {other:?}"),
        }
    }

    fn refused(bytes: &[u8]) -> Response {
        match examine(bytes, 64) {
            Examined::Refuse(response) => response,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn head_path_query_and_headers() {
        let bytes =
            b"GET /presence/lobby?count HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n\r\nrest";
        let request = complete(bytes);
        assert_eq!(request.method, "GET");
        assert_eq!(request.path, "/presence/lobby");
        assert_eq!(request.query, "count");
        assert_eq!(request.version, 1);
        assert_eq!(request.header("authorization"), Some("Bearer t"));
        assert_eq!(request.content_length, None);
        assert_eq!(
            request.len,
            bytes.len() - 4,
            "the trailing bytes are not part of the request"
        );
        assert!(!request.is_upgrade());
    }

    #[test]
    fn if_none_match_lists_weak_tags_and_star() {
        let with = |value: &str| {
            complete(
                format!("GET /rollcall.js HTTP/1.1\r\nIf-None-Match: {value}\r\n\r\n").as_bytes(),
            )
        };
        let tag = "\"0123abcd\"";
        assert!(with(tag).none_match(tag));
        assert!(with("W/\"0123abcd\"").none_match(tag));
        assert!(with("\"old\", \"0123abcd\"").none_match(tag));
        assert!(with("*").none_match(tag));
        assert!(!with("\"old\"").none_match(tag));
        assert!(
            !with("0123abcd").none_match(tag),
            "an unquoted tag is another tag"
        );
        assert!(!with("").none_match(tag));
        assert!(!complete(b"GET / HTTP/1.1\r\n\r\n").none_match(tag));
    }

    #[test]
    fn body_waits_for_content_length_bytes() {
        let head = b"POST /publish HTTP/1.1\r\nContent-Length: 5\r\n\r\n";
        let mut bytes = head.to_vec();
        bytes.extend_from_slice(b"abc");
        assert_eq!(examine(&bytes, 64), Examined::Partial);
        bytes.extend_from_slice(b"de+next");
        let request = complete(&bytes);
        assert_eq!(request.body, b"abcde");
        assert_eq!(request.content_length, Some(5));
        assert_eq!(request.len, head.len() + 5);
    }

    #[test]
    fn bodies_over_the_cap_and_chunked_bodies_are_refused_at_once() {
        let response = refused(b"POST /publish HTTP/1.1\r\nContent-Length: 65\r\n\r\n");
        assert_eq!(response.status, 413);
        assert_eq!(
            response.content_type, "application/json",
            "the JSON API refuses in JSON"
        );
        let response = refused(b"POST /other HTTP/1.1\r\nContent-Length: 65\r\n\r\n");
        assert_eq!(response.content_type, "text/plain; charset=utf-8");
        assert_eq!(
            refused(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").status,
            411
        );
        assert_eq!(
            refused(b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n").status,
            400
        );
    }

    #[test]
    fn garbage_and_oversized_heads() {
        assert_eq!(refused(b"\x16\x03\x01garbage\r\n\r\n").status, 400);
        let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
        huge.resize(MAX_HEAD, b'a');
        assert_eq!(refused(&huge).status, 431);
        huge.extend_from_slice(b"\r\n\r\n");
        assert_eq!(refused(&huge).status, 431, "complete but over the limit");
        let mut many = String::from("GET / HTTP/1.1\r\n");
        for index in 0..=MAX_HEADERS {
            many.push_str(&format!("X-{index}: 1\r\n"));
        }
        many.push_str("\r\n");
        assert_eq!(refused(many.as_bytes()).status, 431);
        assert_eq!(examine(b"GET / HT", 64), Examined::Partial);
    }
}
