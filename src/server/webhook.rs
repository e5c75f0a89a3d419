//! Webhooks in the loop: one HTTP/1.1 connection per URL on the loop's own poll, as sockets
//! only (an `https://` URL's bytes pass through its TLS session, `webhook_tls`).
//!
//! The pure `webhook::Outbox` decides everything (what to post, when, retries, the order,
//! the queue's bound); this file takes the engine's webhook events at the end of each turn,
//! opens a connection when a request must go and none is open (a non-blocking connect),
//! writes the request as far as the socket takes it, feeds what comes back to the response
//! reader, and reports each request's outcome. The outbox's next deadline bounds the poll's
//! sleep ([`Server::next_deadline`]).
//!
//! Invariants: the loop never waits for a receiver; a connection is registered once,
//! edge-triggered, and each readiness event writes and reads until `WouldBlock`; a connection
//! that failed, closed, answered garbage or was not framed for reuse is dropped, and the next
//! request opens a new one; bytes from an idle connection (nothing asked) end it. A TLS
//! failure is a failed request like a refused connection: counted, retried, logged (as a
//! warning, with rustls's reason: a certificate that does not verify needs the operator).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};

use log::{debug, warn};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::webhook_tls::{TlsClient, TlsSession};
use super::Server;
use crate::config::{Config, ConfigError};
use crate::webhook::http::{Read as Answer, ResponseReader};
use crate::webhook::{Action, Notice, Outbox, Outcome, Stats};
use crate::wheel::Millis;

/// Bytes read per system call.
const READ_CHUNK: usize = 4 << 10;

/// The webhook URLs' outbox and connections.
pub(super) struct Webhooks {
    outbox: Outbox,
    /// Each URL's address, resolved once at bind time.
    targets: Vec<SocketAddr>,
    /// Each URL's host name, for TLS (SNI and the certificate's name); `None` for `http://`.
    tls_hosts: Vec<Option<String>>,
    /// The TLS configuration, when an `https://` URL is among them.
    tls: Option<TlsClient>,
    links: Vec<Option<HttpLink>>,
    /// The engine's events of the turn (kept to reuse its allocation).
    notices: Vec<Notice>,
}

/// One connection to a receiver.
struct HttpLink {
    stream: TcpStream,
    connected: bool,
    /// The TLS session of an `https://` URL.
    tls: Option<TlsSession>,
    /// The request being written, from `written` on.
    out: Vec<u8>,
    written: usize,
    /// True from the request's first byte until its answer is read.
    asking: bool,
    reader: ResponseReader,
}

impl Webhooks {
    /// The outbox of `config`'s URLs, resolved now; `None` without webhooks.
    pub fn from_config(
        config: &Config,
        unix_origin_ms: u64,
    ) -> Result<Option<Webhooks>, ConfigError> {
        let settings = &config.webhooks;
        if !settings.enabled() {
            return Ok(None);
        }
        let targets = settings
            .urls
            .iter()
            .map(|url| {
                (url.host.as_str(), url.port)
                    .to_socket_addrs()
                    .ok()
                    .and_then(|mut addresses| addresses.next())
                    .ok_or_else(|| {
                        ConfigError::Webhook(format!("cannot resolve the host of {url}"))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let tls_hosts: Vec<_> = settings
            .urls
            .iter()
            .map(|url| url.tls.then(|| url.host.clone()))
            .collect();
        let needs_tls = tls_hosts.iter().any(Option::is_some) || settings.ca.is_some();
        let tls = if needs_tls {
            Some(TlsClient::new(settings.ca.as_deref()).map_err(ConfigError::Webhook)?)
        } else {
            None
        };
        let outbox = Outbox::new(settings, &config.pusher.apps, unix_origin_ms);
        Ok(Some(Webhooks {
            links: targets.iter().map(|_| None).collect(),
            targets,
            tls_hosts,
            tls,
            outbox,
            notices: Vec::new(),
        }))
    }

    /// The delivery's figures.
    pub fn stats(&self) -> Stats {
        self.outbox.stats()
    }

    /// When the outbox has something to do next.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.outbox.next_deadline()
    }
}

impl Server {
    /// The end of a turn: the engine's webhook events are queued and whatever the outbox
    /// has due is carried out.
    pub(super) fn webhooks_turn(&mut self, now: Millis) {
        let Some(hooks) = self.webhooks.as_mut() else {
            return;
        };
        self.engine.take_notices(&mut hooks.notices);
        for notice in hooks.notices.drain(..) {
            hooks.outbox.push(&notice, now);
        }
        self.webhooks_pump(now);
    }

    /// Carries out the outbox's actions until it has none.
    fn webhooks_pump(&mut self, now: Millis) {
        let Some(hooks) = self.webhooks.as_mut() else {
            return;
        };
        while let Some(action) = hooks.outbox.poll(now) {
            match action {
                Action::Post { url, request } => {
                    let link = match hooks.links[url].take() {
                        Some(link) => Ok(link),
                        None => hooks.connect(url, &self.poll_registry, self.tokens.webhook(url)),
                    };
                    match link {
                        Ok(mut link) => {
                            link.out = request;
                            link.written = 0;
                            link.asking = true;
                            link.reader = ResponseReader::default();
                            hooks.links[url] = Some(link);
                            drive(hooks, url, &self.poll_registry, now);
                        }
                        Err(error) => {
                            log_failure(url, &format!("cannot connect: {error}"));
                            hooks.outbox.on_outcome(url, Outcome::Failed, now);
                        }
                    }
                }
                Action::Abort { url } => {
                    if let Some(mut link) = hooks.links[url].take() {
                        link.deregister(&self.poll_registry);
                    }
                }
            }
        }
    }

    /// A readiness event on URL `url`'s connection.
    pub(super) fn on_webhook(&mut self, url: usize, now: Millis) {
        let Some(hooks) = self.webhooks.as_mut() else {
            return;
        };
        if url < hooks.links.len() {
            drive(hooks, url, &self.poll_registry, now);
        }
        self.webhooks_pump(now);
    }
}

/// Moves URL `url`'s connection as far as it goes; reports the answer or the failure.
fn drive(hooks: &mut Webhooks, url: usize, registry: &Registry, now: Millis) {
    let Some(link) = hooks.links[url].as_mut() else {
        return;
    };
    let outcome = match link.pump() {
        Ok(None) => return,
        Ok(Some(Answer::Done { status, reusable })) => {
            hooks.outbox.on_outcome(url, Outcome::Answered(status), now);
            if reusable {
                link.asking = false;
                return;
            }
            None
        }
        Ok(Some(Answer::Partial)) => return,
        Ok(Some(Answer::Garbage)) => {
            debug!("webhook {url}: the receiver's answer is not HTTP/1.1");
            Some(Outcome::Failed)
        }
        Err(error) => {
            let asking = link.asking;
            if asking {
                log_failure(url, &error.to_string());
            }
            asking.then_some(Outcome::Failed)
        }
    };
    if let Some(mut link) = hooks.links[url].take() {
        link.deregister(registry);
    }
    if let Some(outcome) = outcome {
        hooks.outbox.on_outcome(url, outcome, now);
    }
}

/// Logs why URL `url`'s request failed: a TLS failure as a warning (a certificate or a name
/// that does not verify will not mend by itself), others at debug level (the outbox counts
/// them and retries).
fn log_failure(url: usize, reason: &str) {
    if reason.starts_with("TLS: ") {
        warn!("webhook {url}: {reason}");
    } else {
        debug!("webhook {url}: {reason}");
    }
}

impl Webhooks {
    /// Starts connecting to URL `url` (a TLS session for `https://`) and registers the socket
    /// with `token`.
    fn connect(&self, url: usize, registry: &Registry, token: Token) -> io::Result<HttpLink> {
        let tls = match (&self.tls_hosts[url], &self.tls) {
            (Some(host), Some(client)) => Some(client.session(host)?),
            _ => None,
        };
        HttpLink::connect(self.targets[url], registry, token, tls)
    }
}

impl HttpLink {
    /// Starts connecting to `address` and registers the socket with `token`; the bytes pass
    /// through `tls` if given.
    fn connect(
        address: SocketAddr,
        registry: &Registry,
        token: Token,
        tls: Option<TlsSession>,
    ) -> io::Result<HttpLink> {
        let mut stream = TcpStream::connect(address)?;
        registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
        let _ = stream.set_nodelay(true);
        Ok(HttpLink {
            stream,
            connected: false,
            tls,
            out: Vec::new(),
            written: 0,
            asking: false,
            reader: ResponseReader::default(),
        })
    }

    fn deregister(&mut self, registry: &Registry) {
        let _ = registry.deregister(&mut self.stream);
    }

    /// Finishes connecting, writes the request and reads its answer, each until the socket
    /// would block. `Ok(None)`: nothing to report yet; an error ends the connection (a
    /// closed one included).
    fn pump(&mut self) -> io::Result<Option<Answer>> {
        if !self.connected {
            if let Some(error) = self.stream.take_error()? {
                return Err(error);
            }
            match self.stream.peer_addr() {
                Ok(_) => self.connected = true,
                Err(error)
                    if error.kind() == io::ErrorKind::NotConnected
                        || error.raw_os_error() == Some(libc::EINPROGRESS) =>
                {
                    return Ok(None);
                }
                Err(error) => return Err(error),
            }
        }
        if let Some(tls) = self.tls.as_mut() {
            return tls.pump(
                &mut self.stream,
                &self.out,
                &mut self.written,
                self.asking,
                &mut self.reader,
            );
        }
        while self.written < self.out.len() {
            match self.stream.write(&self.out[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let mut chunk = [0; READ_CHUNK];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(io::Error::other("the receiver closed the connection")),
                // Bytes nobody asked for: the connection is not HTTP as we speak it.
                Ok(_) if !self.asking => return Err(io::Error::other("unasked bytes")),
                Ok(n) => match self.reader.feed(&chunk[..n]) {
                    Answer::Partial => {}
                    answer => return Ok(Some(answer)),
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}
