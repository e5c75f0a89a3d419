//! HTTP responses: a status, a content type, a few headers and a body, always closing the
//! connection.

use std::fmt::Write;

/// An HTTP response to send before closing the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// Extra headers besides `Content-Type`, `Content-Length` and `Connection: close`.
    pub headers: Vec<(&'static str, &'static str)>,
    /// The body.
    pub body: Vec<u8>,
}

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";

impl Response {
    /// A plain-text response; a newline is appended to the text.
    pub fn text(status: u16, text: impl Into<String>) -> Response {
        let mut body = text.into().into_bytes();
        body.push(b'\n');
        Response {
            status,
            content_type: TEXT,
            headers: Vec::new(),
            body,
        }
    }

    /// A plain-text error response (the same as [`Response::text`]).
    pub fn error(status: u16, text: impl Into<String>) -> Response {
        Response::text(status, text)
    }

    /// A JSON response with an already encoded body.
    pub fn json(status: u16, body: String) -> Response {
        Response {
            status,
            content_type: JSON,
            headers: Vec::new(),
            body: body.into_bytes(),
        }
    }

    /// A JSON error: `{"error":CODE,"message":TEXT}`.
    pub fn json_error(status: u16, code: &str, message: &str) -> Response {
        let body = serde_json::json!({ "error": code, "message": message }).to_string();
        Response::json(status, body)
    }

    /// A response with any content type.
    pub fn with_type(status: u16, content_type: &'static str, body: Vec<u8>) -> Response {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body,
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &'static str, value: &'static str) -> Response {
        self.headers.push((name, value));
        self
    }

    /// True for statuses that refuse the request (4xx and 5xx).
    pub fn is_refusal(&self) -> bool {
        self.status >= 400
    }

    /// `304 Not Modified` for a conditional `GET` whose copy is current: no body, and no
    /// `Content-Length` or `Content-Type`, which would describe the unsent representation
    /// (RFC 9110 §8.6, §15.4.5).
    pub fn not_modified() -> Response {
        Response::with_type(304, "", Vec::new())
    }

    /// The wire form; the connection is closed after it is written.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\n",
            self.status,
            reason_phrase(self.status)
        );
        if self.status != 304 {
            let _ = write!(
                head,
                "Content-Type: {}\r\nContent-Length: {}\r\n",
                self.content_type,
                self.body.len()
            );
        }
        head.push_str("Connection: close\r\n");
        for (name, value) in &self.headers {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_response_bytes_are_complete_http() {
        let bytes = Response::error(405, "no")
            .with_header("Allow", "GET")
            .to_bytes();
        assert_eq!(
            String::from_utf8(bytes).expect("ascii"),
            "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\nConnection: close\r\nAllow: GET\r\n\r\nno\n"
        );
    }

    #[test]
    fn not_modified_has_no_body_and_no_length() {
        let bytes = Response::not_modified()
            .with_header("ETag", "\"t\"")
            .to_bytes();
        assert_eq!(
            String::from_utf8(bytes).expect("ascii"),
            "HTTP/1.1 304 Not Modified\r\nConnection: close\r\nETag: \"t\"\r\n\r\n"
        );
    }

    #[test]
    fn json_errors_escape_their_message() {
        let response = Response::json_error(400, "bad_request", "say \"hi\"");
        assert_eq!(response.content_type, "application/json");
        let body: serde_json::Value = serde_json::from_slice(&response.body).expect("json");
        assert_eq!(
            body,
            serde_json::json!({"error": "bad_request", "message": "say \"hi\""})
        );
        assert!(response.is_refusal());
        assert!(!Response::text(200, "ok").is_refusal());
    }
}
