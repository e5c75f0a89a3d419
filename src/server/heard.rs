//! The socket under an open WebSocket, noting whether the peer sent anything.
//!
//! tungstenite only hands over complete messages, but liveness must count every byte: a
//! client slowly sending one large fragmented message is not silent. Reading through this
//! wrapper sets a flag the loop takes after each read pass (one store per read call, no
//! wheel operation). It adds 4 bytes to the connection (within the padding of the socket).

use std::io::{self, Read, Write};

use mio::net::TcpStream;

/// A `TcpStream` that remembers whether any bytes were read since the last [`Heard::take`].
pub(crate) struct HeardStream {
    stream: TcpStream,
    heard: bool,
}

impl HeardStream {
    pub fn new(stream: TcpStream) -> Self {
        HeardStream {
            stream,
            heard: false,
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

impl Read for HeardStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stream.read(buf)?;
        self.heard |= n > 0;
        Ok(n)
    }
}

impl Write for HeardStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}
