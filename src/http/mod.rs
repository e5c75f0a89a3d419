//! HTTP/1.1 on the WebSocket port, as pure functions: bytes in, a decision out.
//!
//! [`request`] reads one request (head and body) without blocking and bounded in size;
//! [`mod@route`] decides what it asks for (a WebSocket upgrade or an operator endpoint);
//! [`upgrade`] validates an upgrade (RFC 6455 §4.2); [`response`] builds what is sent back;
//! [`percent`] decodes the names a URL carries.
//! One request per connection: every response closes the connection.
//!
//! Nothing a peer sends can make this module allocate more than [`MAX_HEAD`] plus the body
//! cap, or panic. A pending handshake costs only the bytes received so far (tungstenite's own
//! server handshake would allocate a 4 KiB chunk per pending connection).

pub mod percent;
pub mod request;
pub mod response;
pub mod route;
pub mod upgrade;

pub use request::{examine, Examined, Request};
pub use response::Response;
pub use route::{route, Route};
pub use upgrade::Upgrade;

/// Largest accepted request head; a larger one is answered with 431.
pub const MAX_HEAD: usize = 8 << 10;

/// Most header fields in a request; more are answered with 431.
pub const MAX_HEADERS: usize = 32;

/// Compares two secrets in time that depends only on their lengths, so that a wrong guess
/// reveals nothing about how much of it was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn constant_time_eq_compares_whole_secrets() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cret", b"s3creT"));
        assert!(!constant_time_eq(b"s3cret", b"s3cre"));
        assert!(constant_time_eq(b"", b""));
    }
}
