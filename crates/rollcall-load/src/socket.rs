//! Sockets as the kernel sees them: a non-blocking TCP connect from a chosen loopback source
//! address, the rotation over source addresses, and the open-file limit.
//!
//! Why bind a source: the kernel picks the client port from one range (about 28k ports here)
//! per (source, destination) pair, so more connections than that to one server need several
//! source addresses. `127.0.0.2`, `127.0.0.3`, ... all belong to the loopback interface on
//! Linux without any configuration.
//!
//! Invariant: `unsafe` is confined to small functions here and in `procfs.rs`; the one that
//! creates a descriptor ([`bound_connect`]) owns it in an [`OwnedFd`] from its first line on,
//! so every early return closes it.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{FromRawFd, OwnedFd};

use mio::net::TcpStream;

/// The source addresses connections are spread over, in turn.
#[derive(Debug, Clone)]
pub struct Sources {
    /// Empty: the kernel chooses (`--sources 1`).
    addrs: Vec<Ipv4Addr>,
    next: usize,
}

impl Sources {
    /// `count` addresses `127.0.0.2 ..= 127.0.0.(count + 1)`; `count <= 1` lets the kernel
    /// choose. `first` is the index of the first connection (a `--procs` child starts its
    /// rotation where its slice starts, so that the slices together stay balanced).
    pub fn new(count: u32, first: u64) -> Sources {
        let addrs: Vec<Ipv4Addr> = if count <= 1 {
            Vec::new()
        } else {
            (0..count)
                .map(|k| Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 2)) + k))
                .collect()
        };
        let next = if addrs.is_empty() {
            0
        } else {
            (first % addrs.len() as u64) as usize
        };
        Sources { addrs, next }
    }

    /// The source for the next connection, `None` when the kernel chooses.
    pub fn next_source(&mut self) -> Option<Ipv4Addr> {
        let addr = *self.addrs.get(self.next)?;
        self.next = (self.next + 1) % self.addrs.len();
        Some(addr)
    }
}

/// Starts a non-blocking connect to `server`, from `source` when given. The connect completes
/// later: the stream becomes writable, then `take_error` / `peer_addr` tell how it went.
///
/// With a source, the socket is bound to `(source, 0)` with `IP_BIND_ADDRESS_NO_PORT`, so the
/// kernel picks the port at connect time, per destination, and a source is not limited to one
/// port range shared with every other destination.
pub fn connect_from(source: Option<Ipv4Addr>, server: SocketAddr) -> io::Result<TcpStream> {
    let stream = match (source, server) {
        (None, _) => TcpStream::connect(server)?,
        (Some(source), SocketAddr::V4(server)) => {
            TcpStream::from_std(std::net::TcpStream::from(bound_connect(source, server)?))
        }
        (Some(_), SocketAddr::V6(_)) => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "source addresses need an IPv4 server address",
            ))
        }
    };
    // Small frames (pongs, commands, the close) must not wait for an ACK (Nagle).
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// `socket`, `setsockopt(IP_BIND_ADDRESS_NO_PORT)`, `bind`, `connect` (`EINPROGRESS` is the
/// expected answer of a non-blocking connect).
fn bound_connect(source: Ipv4Addr, server: SocketAddrV4) -> io::Result<OwnedFd> {
    let check = |rc: libc::c_int| {
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(rc)
        }
    };
    // SAFETY: plain system calls on a descriptor this function owns (in `fd` as soon as it
    // exists); the pointers passed point to live, correctly sized values on this stack frame.
    unsafe {
        let raw = check(libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        ))?;
        let fd = OwnedFd::from_raw_fd(raw);
        let one: libc::c_int = 1;
        check(libc::setsockopt(
            raw,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        ))?;
        let local = sockaddr_in(SocketAddrV4::new(source, 0));
        check(libc::bind(
            raw,
            (&local as *const libc::sockaddr_in).cast(),
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        ))?;
        let remote = sockaddr_in(server);
        let rc = libc::connect(
            raw,
            (&remote as *const libc::sockaddr_in).cast(),
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        if rc < 0 {
            let error = io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(error);
            }
        }
        Ok(fd)
    }
}

fn sockaddr_in(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// Raises the soft open-file limit to the hard one; returns the soft limit now in force.
pub fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write/read the one struct passed, which lives on this frame.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_max;
            }
        }
    }
    limit.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_rotate_from_the_slice_start() {
        let mut sources = Sources::new(3, 4);
        let seen: Vec<_> = (0..4).map(|_| sources.next_source().unwrap()).collect();
        assert_eq!(
            seen,
            [
                Ipv4Addr::new(127, 0, 0, 3),
                Ipv4Addr::new(127, 0, 0, 4),
                Ipv4Addr::new(127, 0, 0, 2),
                Ipv4Addr::new(127, 0, 0, 3)
            ]
        );
        assert_eq!(Sources::new(1, 0).next_source(), None);
    }
}
