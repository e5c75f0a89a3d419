//! Socket options for accepted connections, chosen for many long-lived, mostly idle peers.
//!
//! - `TCP_NODELAY`: presence events are small and latency-sensitive.
//! - `TCP_USER_TIMEOUT` (the heartbeat timeout): the kernel gives up on data a vanished peer
//!   never acknowledges in about the time the heartbeat would, instead of retransmitting for
//!   ~15 minutes (RFC 5482).
//! - `SO_SNDBUF` and `TCP_NOTSENT_LOWAT`: the kernel holds little unsent data per connection,
//!   so a peer that stops reading shows up in our own queue, where `--max-backlog` bounds it,
//!   rather than in kernel memory that nothing bounds.
//!
//! Failing to set an option is not fatal: the connection works with the kernel's defaults.

use std::os::fd::AsRawFd;
use std::time::Duration;

use log::debug;
use mio::net::TcpStream;

/// Kernel send buffer per connection (the kernel doubles it for bookkeeping).
const SEND_BUFFER: libc::c_int = 64 << 10;

/// Unsent bytes past which the socket reports itself not writable.
const NOT_SENT_LOW_WATER: libc::c_int = 16 << 10;

/// Applies the options to a freshly accepted connection.
pub(crate) fn tune(stream: &TcpStream, heartbeat_timeout: Duration) {
    let _ = stream.set_nodelay(true);
    let user_timeout =
        libc::c_int::try_from(heartbeat_timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    set(
        stream,
        libc::IPPROTO_TCP,
        libc::TCP_USER_TIMEOUT,
        user_timeout,
        "TCP_USER_TIMEOUT",
    );
    set(
        stream,
        libc::SOL_SOCKET,
        libc::SO_SNDBUF,
        SEND_BUFFER,
        "SO_SNDBUF",
    );
    set(
        stream,
        libc::IPPROTO_TCP,
        libc::TCP_NOTSENT_LOWAT,
        NOT_SENT_LOW_WATER,
        "TCP_NOTSENT_LOWAT",
    );
}

fn set(stream: &TcpStream, level: libc::c_int, name: libc::c_int, value: libc::c_int, what: &str) {
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a live c_int on an open socket.
    let status = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if status != 0 {
        debug!("could not set {what}: {}", std::io::Error::last_os_error());
    }
}
