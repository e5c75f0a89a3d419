//! Socket options for accepted connections, chosen for many long-lived, mostly idle peers.
//! They are set once, on the listener: Linux copies them to every connection it accepts
//! (`sk_clone_lock` clones the listener's socket), which saves four system calls per
//! handshake. A test checks that an accepted socket carries them.
//!
//! - `TCP_NODELAY`: presence events are small and latency-sensitive.
//! - `TCP_USER_TIMEOUT` (the heartbeat timeout): the kernel gives up on data a vanished peer
//!   never acknowledges in about the time the heartbeat would, instead of retransmitting for
//!   ~15 minutes (RFC 5482).
//! - `SO_SNDBUF` and `TCP_NOTSENT_LOWAT`: the kernel holds little unsent data per connection,
//!   so a peer that stops reading shows up in our own queue, where `--max-backlog` bounds it,
//!   rather than in kernel memory that nothing bounds.
//!
//! - `TCP_DEFER_ACCEPT` on the listener: the kernel hands a connection over once its first
//!   bytes (the request) arrived, or after about a second (one SYN-ACK retransmission; then
//!   the handshake timeout runs as for any connection). Every accepted connection then
//!   answers its first read: a crowd connecting costs one read and no readiness event per
//!   handshake instead of a read that would block, a poll and a read (measured over 15,000
//!   connections: 5.7 -> 4.1 system calls and 0.3 -> 0.07 sleeps per handshake, 15-20 % less
//!   server CPU), and a connection that never speaks (a browser's speculative preconnect, a
//!   port scan) takes no handshake slot.
//!   Every protocol served here has the client speak first.
//! - `SO_REUSEPORT` (`--reuse-port`) on the listener: one process per core on one address.
//!
//! Failing to set an option is not fatal: connections work with the kernel's defaults.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use log::debug;

/// Kernel send buffer per connection (the kernel doubles it for bookkeeping).
const SEND_BUFFER: libc::c_int = 64 << 10;

/// Unsent bytes past which the socket reports itself not writable.
const NOT_SENT_LOW_WATER: libc::c_int = 16 << 10;

/// How long the kernel keeps a connection that has sent nothing from the accept queue, in
/// seconds (Linux rounds it to SYN-ACK retransmissions: one, at the initial 1 s timeout).
const DEFER_ACCEPT_SECONDS: libc::c_int = 1;

/// Applies the options to the listener, for every connection it will accept.
pub(crate) fn tune_listener(listener: &impl AsRawFd, heartbeat_timeout: Duration) {
    set(
        listener,
        libc::IPPROTO_TCP,
        libc::TCP_NODELAY,
        1,
        "TCP_NODELAY",
    );
    let user_timeout =
        libc::c_int::try_from(heartbeat_timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    set(
        listener,
        libc::IPPROTO_TCP,
        libc::TCP_USER_TIMEOUT,
        user_timeout,
        "TCP_USER_TIMEOUT",
    );
    set(
        listener,
        libc::SOL_SOCKET,
        libc::SO_SNDBUF,
        SEND_BUFFER,
        "SO_SNDBUF",
    );
    set(
        listener,
        libc::IPPROTO_TCP,
        libc::TCP_NOTSENT_LOWAT,
        NOT_SENT_LOW_WATER,
        "TCP_NOTSENT_LOWAT",
    );
    set(
        listener,
        libc::IPPROTO_TCP,
        libc::TCP_DEFER_ACCEPT,
        DEFER_ACCEPT_SECONDS,
        "TCP_DEFER_ACCEPT",
    );
}

/// Connections waiting in the listener's accept queue, as Linux reports it for a listening
/// socket (`TCP_INFO`'s `tcpi_unacked` is the queue's length there, `tcp_get_info` in
/// net/ipv4/tcp.c): one system call, made only at scrape time. `None` if it fails.
pub(crate) fn accept_queue(listener: &impl AsRawFd) -> Option<u32> {
    // SAFETY: tcp_info is plain integers, for which all zeroes is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into the live struct on an open socket.
    let status = unsafe {
        libc::getsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    (status == 0).then_some(info.tcpi_unacked)
}

fn set(
    socket: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
    what: &str,
) {
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a live c_int on an open socket.
    let status = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
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

/// A listening socket bound to `address` with `SO_REUSEADDR` and `SO_REUSEPORT`: several
/// processes may bind the same address, and the kernel spreads new connections over them.
pub(crate) fn bind_reusing_port(address: SocketAddr) -> io::Result<std::net::TcpListener> {
    let domain = match address {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: socket() takes no pointers; the descriptor is owned at once below.
    let fd = unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    for option in [libc::SO_REUSEADDR, libc::SO_REUSEPORT] {
        let on: libc::c_int = 1;
        // SAFETY: setsockopt reads one c_int from a live variable on an open socket.
        let status = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if status != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let (storage, len) = socket_address(address);
    // SAFETY: `storage` holds a valid sockaddr of `len` bytes for the socket's family.
    if unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&storage as *const libc::sockaddr_storage).cast(),
            len,
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: listen() takes no pointers; the backlog is raised by the caller.
    if unsafe { libc::listen(socket.as_raw_fd(), 128) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(std::net::TcpListener::from(socket))
}

/// `address` as the C library's socket address.
fn socket_address(address: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data for which all zeroes is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match address {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than, and aligned for, sockaddr_in.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than, and aligned for, sockaddr_in6.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(socket: &impl AsRawFd, level: libc::c_int, name: libc::c_int) -> libc::c_int {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into a live c_int.
        let status = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                level,
                name,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(status, 0, "getsockopt: {}", io::Error::last_os_error());
        value
    }

    /// The options are set on the listener only: the kernel must hand them to each
    /// connection it accepts, or connections would run with its defaults.
    #[test]
    fn an_accepted_connection_inherits_the_listeners_options() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        tune_listener(&listener, Duration::from_millis(12_345));
        let _client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (accepted, _) = listener.accept().expect("accept");
        assert_eq!(get(&accepted, libc::IPPROTO_TCP, libc::TCP_NODELAY), 1);
        assert_eq!(
            get(&accepted, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT),
            12_345
        );
        // The kernel doubles SO_SNDBUF for its bookkeeping (socket(7)).
        assert_eq!(
            get(&accepted, libc::SOL_SOCKET, libc::SO_SNDBUF),
            2 * SEND_BUFFER
        );
        assert_eq!(
            get(&accepted, libc::IPPROTO_TCP, libc::TCP_NOTSENT_LOWAT),
            NOT_SENT_LOW_WATER
        );
    }

    /// The accept queue's length is what the kernel holds for us: connections it completed
    /// that we have not accepted (the metric `rollcall_listen_queue`).
    #[test]
    fn the_accept_queue_counts_connections_not_yet_accepted() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        assert_eq!(accept_queue(&listener), Some(0));
        let _clients: Vec<_> = (0..3)
            .map(|_| std::net::TcpStream::connect(addr).expect("connect"))
            .collect();
        assert_eq!(accept_queue(&listener), Some(3));
        let _accepted = listener.accept().expect("accept");
        assert_eq!(accept_queue(&listener), Some(2));
    }
}
