//! One non-blocking connection to Redis on the loop's poll: commands are queued and written
//! as far as the socket takes them, replies are read until `WouldBlock` and decoded in order.
//!
//! Invariants: the socket is registered once, edge-triggered, for reading and writing; a
//! readiness event is answered by [`Link::pump`], which writes and reads until `WouldBlock`,
//! so no edge is lost; [`Link::flush`] only writes, so nothing is read that the caller would
//! not decode at once; a reply is never split: [`Link::next_reply`] returns only complete
//! ones.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::SocketAddr;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::cluster::resp::{self, ProtocolError, Reply};

/// Bytes read per system call.
const READ_CHUNK: usize = 64 << 10;

/// Why a link is unusable; the caller drops it and connects again later.
#[derive(Debug)]
pub(super) enum LinkError {
    /// The socket failed (connect refused, reset...).
    Io(io::Error),
    /// Redis closed the connection.
    Closed,
    /// Redis sent something that is not RESP.
    Protocol(ProtocolError),
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkError::Io(error) => write!(f, "{error}"),
            LinkError::Closed => write!(f, "Redis closed the connection"),
            LinkError::Protocol(error) => write!(f, "{error}"),
        }
    }
}

/// A connection to Redis.
pub(super) struct Link {
    stream: TcpStream,
    connected: bool,
    /// Encoded commands not yet written, from `written` on.
    out: Vec<u8>,
    written: usize,
    /// Bytes read and not yet decoded, from `decoded` on.
    input: Vec<u8>,
    decoded: usize,
}

impl Link {
    /// Starts connecting to `address` and registers the socket with `token`.
    pub fn connect(address: SocketAddr, registry: &Registry, token: Token) -> io::Result<Link> {
        let mut stream = TcpStream::connect(address)?;
        registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
        let _ = stream.set_nodelay(true);
        Ok(Link {
            stream,
            connected: false,
            out: Vec::new(),
            written: 0,
            input: Vec::new(),
            decoded: 0,
        })
    }

    /// Takes the socket off the poll (before the link is dropped).
    pub fn deregister(&mut self, registry: &Registry) {
        let _ = registry.deregister(&mut self.stream);
    }

    /// Queues a command; it is written by the next [`Link::pump`].
    pub fn send(&mut self, command: &[Vec<u8>]) {
        resp::encode(&mut self.out, command);
    }

    /// Finishes connecting, writes what is queued and reads what arrived, each until the
    /// socket would block. What it read must then be taken with [`Link::next_reply`]: no
    /// new readiness event comes for it.
    pub fn pump(&mut self) -> Result<(), LinkError> {
        self.flush()?;
        if self.connected {
            self.read()?;
        }
        Ok(())
    }

    /// Finishes connecting and writes what is queued, until the socket would block.
    pub fn flush(&mut self) -> Result<(), LinkError> {
        if !self.connected {
            if let Some(error) = self.stream.take_error().map_err(LinkError::Io)? {
                return Err(LinkError::Io(error));
            }
            match self.stream.peer_addr() {
                Ok(_) => self.connected = true,
                // Still connecting (mio: a spurious event before the connection completes).
                Err(error)
                    if error.kind() == io::ErrorKind::NotConnected
                        || error.raw_os_error() == Some(libc::EINPROGRESS) =>
                {
                    return Ok(());
                }
                Err(error) => return Err(LinkError::Io(error)),
            }
        }
        self.write()
    }

    fn write(&mut self) -> Result<(), LinkError> {
        while self.written < self.out.len() {
            match self.stream.write(&self.out[self.written..]) {
                Ok(0) => return Err(LinkError::Closed),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(LinkError::Io(e)),
            }
        }
        self.out.clear();
        self.written = 0;
        Ok(())
    }

    fn read(&mut self) -> Result<(), LinkError> {
        let mut chunk = vec![0; READ_CHUNK];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(LinkError::Closed),
                Ok(n) => self.input.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(LinkError::Io(e)),
            }
        }
    }

    /// The next complete reply, if one has arrived.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, LinkError> {
        match resp::decode(&self.input[self.decoded..]).map_err(LinkError::Protocol)? {
            Some((reply, used)) => {
                self.decoded += used;
                Ok(Some(reply))
            }
            None => {
                // Everything complete is consumed: drop it, keep the partial rest.
                self.input.drain(..self.decoded);
                self.decoded = 0;
                Ok(None)
            }
        }
    }
}
