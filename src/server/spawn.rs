//! [`Server::spawn`]: a server bound and run on a thread of its own, for hosts that only
//! want to steer it.
//!
//! A `Server` is single-threaded by design (its state is shared through `Rc`, never locked),
//! so it cannot be bound on one thread and moved to another: `spawn` binds it on the new
//! thread and sends back what the host needs, a [`Handle`] and the bound address.

use std::io;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};

use super::{BindError, Handle, Server, Stop};
use crate::config::Config;
use crate::engine::Handler;

/// A server running on its own thread ([`Server::spawn`]).
#[derive(Debug)]
pub struct Spawned {
    /// Steers the server (publish, query, shut down) from any thread.
    pub handle: Handle,
    /// The address actually bound (useful with port 0).
    pub local_addr: SocketAddr,
    /// The loop's thread: joins with how the loop ended, once a shutdown completes.
    pub thread: JoinHandle<io::Result<Stop>>,
}

impl Server {
    /// Binds `config` on a new thread named `rollcall` and runs it there with `handler`
    /// until a shutdown completes (`spawned.handle.shutdown()`, or a signal if the handler's
    /// thread asked for them). Returns once the address is bound, or why it could not be.
    pub fn spawn(
        config: Config,
        handler: impl Handler + Send + 'static,
    ) -> Result<Spawned, BindError> {
        let (bound, outcome) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("rollcall".into())
            .spawn(move || {
                let mut server = match Server::bind(config) {
                    Ok(server) => server,
                    Err(error) => {
                        let _ = bound.send(Err(error));
                        return Ok(Stop::Graceful);
                    }
                };
                let _ = bound.send(Ok((server.handle(), server.local_addr())));
                server.run_with(handler)
            })
            .map_err(BindError::Poll)?;
        match outcome.recv() {
            Ok(Ok((handle, local_addr))) => Ok(Spawned {
                handle,
                local_addr,
                thread,
            }),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(BindError::Poll(io::Error::other(
                "the server's thread ended before it bound",
            ))),
        }
    }
}
