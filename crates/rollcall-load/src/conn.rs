//! One client connection and its phases, moved by value on readiness:
//! `Connecting` (TCP connect in flight) → `Requesting` (our request written, the response head
//! read) → `Open` (a tungstenite client `WebSocket`) or, for a one-shot HTTP request,
//! `Reading` the response to the server's close.
//!
//! Invariants:
//! - every step drains the socket until `WouldBlock`, as mio's edge-triggered readiness
//!   requires; the bytes that arrived behind the `101` head are handed to tungstenite
//!   (`from_partially_read`), so a `welcome` in the same segment is not lost;
//! - reading never stops while the connection is open, which is what makes tungstenite answer
//!   the server's Pings with Pongs (RFC 6455 section 5.5.2), as a browser does;
//! - the request bytes and the response head are dropped once the WebSocket is open: an open
//!   connection costs its `WebSocket` (read buffer of [`READ_BUFFER`] bytes) and nothing else.

use std::io::{self, ErrorKind, Read, Write};
use std::mem;

use mio::net::TcpStream;
use tungstenite::handshake::derive_accept_key;
use tungstenite::protocol::{frame::coding::CloseCode, CloseFrame, Role, WebSocketConfig};
use tungstenite::{Message, Utf8Bytes, WebSocket};

use crate::stats::Failure;

/// tungstenite's read buffer per connection (its default is 128 KiB): rollcall's messages in
/// these runs are a few hundred bytes, and a larger message just grows the buffer.
pub const READ_BUFFER: usize = 2048;

/// Largest response head we accept (the server's own request-head limit).
const MAX_HEAD: usize = 8192;

/// What a connection is for.
pub enum Purpose {
    /// A WebSocket upgrade; the `Sec-WebSocket-Key` sent, to check the accept header.
    Upgrade { key: String },
    /// A one-shot HTTP request whose whole response is wanted.
    Http,
}

/// Something a connection reports to the pool.
pub enum Output {
    /// The `101` arrived and was valid.
    Upgraded,
    /// A text message.
    Text(Utf8Bytes),
    /// A Ping from the server (tungstenite queued the Pong).
    Ping,
    /// A one-shot HTTP request's response.
    Response { status: u16, body: Vec<u8> },
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// It never got open (or the HTTP request got no response).
    Failed(Failure),
    /// Open, then ended by a close handshake, or after our Close (whoever closed TCP first).
    Closed,
    /// Open, then broken without a close handshake (EOF, reset, protocol error).
    Lost(Failure),
}

/// A connection before its WebSocket opens: the socket, what it is for, the request and how
/// much of it is written, and the response bytes so far.
struct Exchange {
    stream: TcpStream,
    purpose: Purpose,
    request: Vec<u8>,
    sent: usize,
    response: Vec<u8>,
}

enum Phase {
    /// The TCP connect is in flight.
    Connecting(Exchange),
    /// The request is being written, the response read.
    Requesting(Exchange),
    /// The WebSocket is open (boxed: the phases before are short-lived and small).
    Open {
        ws: Box<WebSocket<TcpStream>>,
        closing: bool,
    },
    Done,
}

/// A connection: its phase (the purpose lives in the phases before `Open`).
pub struct Conn {
    phase: Phase,
}

/// The result of a step: still going, or ended.
pub type Step = Result<(), Ending>;

fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        // Write each frame at once: we only send small commands, pongs and closes.
        .write_buffer_size(0)
}

impl Conn {
    /// A connection whose TCP connect was started; `request` is sent once it completes.
    pub fn new(stream: TcpStream, purpose: Purpose, request: Vec<u8>) -> Conn {
        Conn {
            phase: Phase::Connecting(Exchange {
                stream,
                purpose,
                request,
                sent: 0,
                response: Vec::new(),
            }),
        }
    }

    /// The socket, for (de)registration.
    pub fn stream(&mut self) -> Option<&mut TcpStream> {
        match &mut self.phase {
            Phase::Connecting(x) | Phase::Requesting(x) => Some(&mut x.stream),
            Phase::Open { ws, .. } => Some(ws.get_mut()),
            Phase::Done => None,
        }
    }

    /// Moves the connection on after a readiness event.
    pub fn on_ready(&mut self, out: &mut impl FnMut(Output)) -> Step {
        loop {
            let phase = mem::replace(&mut self.phase, Phase::Done);
            let (next, again) = Conn::step(phase, out)?;
            self.phase = next;
            if !again {
                return Ok(());
            }
        }
    }

    /// One phase's work; `again` when the next phase must run at once (it has data waiting).
    fn step(phase: Phase, out: &mut impl FnMut(Output)) -> Result<(Phase, bool), Ending> {
        match phase {
            Phase::Connecting(x) => {
                if let Some(error) = x.stream.take_error().map_err(fail)? {
                    return Err(fail(error));
                }
                match x.stream.peer_addr() {
                    Ok(_) => Ok((Phase::Requesting(x), true)),
                    // Still connecting (mio's documented check): wait for the next event.
                    Err(e) if e.kind() == ErrorKind::NotConnected => {
                        Ok((Phase::Connecting(x), false))
                    }
                    Err(e) => Err(fail(e)),
                }
            }
            Phase::Requesting(mut x) => {
                while x.sent < x.request.len() {
                    match x.stream.write(&x.request[x.sent..]) {
                        Ok(0) => return Err(Ending::Failed(Failure::Eof)),
                        Ok(n) => x.sent += n,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            return Ok((Phase::Requesting(x), false));
                        }
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => return Err(fail(e)),
                    }
                }
                let eof = read_available(&mut x.stream, &mut x.response).map_err(fail)?;
                let Purpose::Upgrade { key } = &x.purpose else {
                    return finish_http(x, eof, out);
                };
                let Some(head_len) = head_length(&x.response) else {
                    if eof {
                        return Err(Ending::Failed(Failure::Eof));
                    }
                    if x.response.len() > MAX_HEAD {
                        return Err(Ending::Failed(Failure::BadHandshake));
                    }
                    return Ok((Phase::Requesting(x), false));
                };
                check_upgrade(&x.response[..head_len], key)?;
                out(Output::Upgraded);
                let rest = x.response[head_len..].to_vec();
                let ws =
                    WebSocket::from_partially_read(x.stream, rest, Role::Client, Some(config()));
                let open = Phase::Open {
                    ws: Box::new(ws),
                    closing: false,
                };
                Ok((open, true))
            }
            Phase::Open { mut ws, closing } => {
                if let Err(error) = ws.flush() {
                    ws_error(error, closing)?;
                }
                loop {
                    match ws.read() {
                        Ok(Message::Text(text)) => out(Output::Text(text)),
                        Ok(Message::Ping(_)) => out(Output::Ping),
                        Ok(_) => {}
                        Err(error) => {
                            ws_error(error, closing)?;
                            return Ok((Phase::Open { ws, closing }, false));
                        }
                    }
                }
            }
            Phase::Done => Ok((Phase::Done, false)),
        }
    }

    /// Sends a text message (written at once, or on the next writable event).
    pub fn send_text(&mut self, text: &str) -> Step {
        if let Phase::Open { ws, closing } = &mut self.phase {
            if let Err(error) = ws.send(Message::text(text)) {
                ws_error(error, *closing)?;
            }
        }
        Ok(())
    }

    /// Starts the close handshake with code 1000 (normal closure).
    pub fn close(&mut self) -> Step {
        if let Phase::Open { ws, closing } = &mut self.phase {
            *closing = true;
            let frame = CloseFrame {
                code: CloseCode::Normal,
                reason: Utf8Bytes::from_static(""),
            };
            if let Err(error) = ws.close(Some(frame)).and_then(|()| ws.flush()) {
                ws_error(error, true)?;
            }
        }
        Ok(())
    }
}

fn fail(error: io::Error) -> Ending {
    Ending::Failed(Failure::from_io(&error))
}

/// Turns a tungstenite error of an open connection into "nothing yet" (`Ok`) or its ending.
fn ws_error(error: tungstenite::Error, closing: bool) -> Step {
    use tungstenite::Error;
    match error {
        Error::Io(e) if e.kind() == ErrorKind::WouldBlock => Ok(()),
        Error::ConnectionClosed | Error::AlreadyClosed => Err(Ending::Closed),
        // After our Close, whatever ends the connection ends it as asked.
        _ if closing => Err(Ending::Closed),
        Error::Io(e) => Err(Ending::Lost(Failure::from_io(&e))),
        Error::Protocol(tungstenite::error::ProtocolError::ResetWithoutClosingHandshake) => {
            Err(Ending::Lost(Failure::Eof))
        }
        _ => Err(Ending::Lost(Failure::Protocol)),
    }
}

/// Reads until `WouldBlock` or EOF into `buffer`; `true` on EOF.
fn read_available(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> io::Result<bool> {
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(true),
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The length of the response head including its blank line, once complete.
fn head_length(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}

/// Checks a `101` head: status and `Sec-WebSocket-Accept` (RFC 6455 section 4.2.2).
fn check_upgrade(head: &[u8], key: &str) -> Step {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = response.parse(head) else {
        return Err(Ending::Failed(Failure::BadHandshake));
    };
    match response.code {
        Some(101) => {}
        Some(status) => return Err(Ending::Failed(Failure::HttpStatus(status))),
        None => return Err(Ending::Failed(Failure::BadHandshake)),
    }
    let expected = derive_accept_key(key.as_bytes());
    let accepted = response.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("sec-websocket-accept") && h.value == expected.as_bytes()
    });
    if accepted {
        Ok(())
    } else {
        Err(Ending::Failed(Failure::BadHandshake))
    }
}

/// Completes a one-shot HTTP request once the response is whole (by `Content-Length`, or at
/// the server's close).
fn finish_http(
    x: Exchange,
    eof: bool,
    out: &mut impl FnMut(Output),
) -> Result<(Phase, bool), Ending> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Response::new(&mut headers);
    let complete = match parsed.parse(&x.response) {
        Ok(httparse::Status::Complete(head_len)) => {
            let length = parsed
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| {
                    std::str::from_utf8(h.value)
                        .ok()?
                        .trim()
                        .parse::<usize>()
                        .ok()
                });
            match length {
                Some(length) if x.response.len() >= head_len + length => {
                    Some((head_len, head_len + length))
                }
                None if eof => Some((head_len, x.response.len())),
                _ => None,
            }
        }
        Ok(httparse::Status::Partial) => None,
        Err(_) => return Err(Ending::Failed(Failure::BadHandshake)),
    };
    match complete {
        Some((start, end)) => {
            out(Output::Response {
                status: parsed.code.unwrap_or(0),
                body: x.response[start..end].to_vec(),
            });
            // The request is answered: the connection has no more use.
            Err(Ending::Closed)
        }
        None if eof => Err(Ending::Failed(Failure::Eof)),
        None => Ok((Phase::Requesting(x), false)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_heads_are_checked() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let good =
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                     Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert_eq!(check_upgrade(good, key), Ok(()));
        let wrong_key = check_upgrade(good, "AAAAAAAAAAAAAAAAAAAAAA==");
        assert_eq!(wrong_key, Err(Ending::Failed(Failure::BadHandshake)));
        let busy = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            check_upgrade(busy, key),
            Err(Ending::Failed(Failure::HttpStatus(503)))
        );
        assert_eq!(head_length(b"HTTP/1.1 101 OK\r\n\r\nxx"), Some(19));
        assert_eq!(head_length(b"HTTP/1.1 101 OK\r\n"), None);
    }
}
