//! Byte accounting for client sockets, and the "heard from" flag of liveness.
//!
//! [`Traffic`] holds the server's byte totals; every socket read or write, before and after
//! the upgrade, adds to it. [`MeteredStream`] is the socket under an open WebSocket: it adds
//! to the totals and notes that the peer sent something, because tungstenite only hands over
//! complete messages while liveness must count every byte (a client slowly sending a large
//! fragmented message is not silent). Cost: 12 bytes per open connection.

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::rc::Rc;

use mio::net::TcpStream;

/// Bytes moved on client sockets since the server started.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    received: Cell<u64>,
    sent: Cell<u64>,
}

impl Traffic {
    pub fn add_received(&self, bytes: usize) {
        self.received.set(self.received.get() + bytes as u64);
    }

    pub fn add_sent(&self, bytes: usize) {
        self.sent.set(self.sent.get() + bytes as u64);
    }

    pub fn received(&self) -> u64 {
        self.received.get()
    }

    pub fn sent(&self) -> u64 {
        self.sent.get()
    }
}

/// The socket of an open WebSocket: counts bytes and remembers whether any arrived since
/// the last [`MeteredStream::take_heard`].
pub(crate) struct MeteredStream {
    stream: TcpStream,
    heard: bool,
    traffic: Rc<Traffic>,
}

impl MeteredStream {
    pub fn new(stream: TcpStream, traffic: Rc<Traffic>) -> Self {
        MeteredStream {
            stream,
            heard: false,
            traffic,
        }
    }

    /// True when bytes arrived since the last call.
    pub fn take_heard(&mut self) -> bool {
        std::mem::take(&mut self.heard)
    }

    pub fn get_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    pub fn into_inner(self) -> TcpStream {
        self.stream
    }
}

impl Read for MeteredStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stream.read(buf)?;
        self.heard |= n > 0;
        self.traffic.add_received(n);
        Ok(n)
    }
}

impl Write for MeteredStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.stream.write(buf)?;
        self.traffic.add_sent(n);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}
