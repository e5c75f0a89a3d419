//! TLS for `https://` webhooks (the `webhook-tls` feature): a rustls client session driven
//! sans-IO on the webhook connection's non-blocking socket, on the loop's own poll. No thread,
//! no runtime: rustls only turns records into plaintext and back, this file moves the bytes.
//!
//! - Trust: Mozilla's roots (webpki-roots, compiled in) plus `--webhook-ca`'s certificates.
//! - The name: SNI carries the URL's host name (none for an address, RFC 6066 §3) and the
//!   certificate must name the host (RFC 6125 as webpki applies it); no option turns it off.
//! - TLS 1.3 and 1.2, rustls's safe defaults, the ring provider.
//!
//! Invariants: a TLS error (a certificate that does not verify, a wrong name, records that are
//! not TLS, an alert) ends the connection as an [`io::Error`] carrying rustls's reason, which
//! the caller counts as a failed request; nothing here panics on the peer's bytes. Each pump
//! drains the socket until it would block in both directions that have work (edge-triggered
//! poll), and the plaintext rustls holds is read out before the socket is read again (rustls
//! refuses more records while its plaintext buffer is full).

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use crate::webhook::http::{Read as Answer, ResponseReader};

/// Plaintext bytes read out of the session per call.
const PLAIN_CHUNK: usize = 4 << 10;

/// The client configuration every `https://` URL shares: built once at bind time.
pub(super) struct TlsClient {
    config: Arc<ClientConfig>,
}

impl TlsClient {
    /// Mozilla's roots plus the PEM certificates of `ca`, if any.
    pub fn new(ca: Option<&Path>) -> Result<TlsClient, String> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = ca {
            let shown = path.display();
            let mut added = 0;
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("--webhook-ca {shown}: {e}"))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("--webhook-ca {shown}: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("--webhook-ca {shown}: {e}"))?;
                added += 1;
            }
            if added == 0 {
                return Err(format!("--webhook-ca {shown}: no CERTIFICATE in the file"));
            }
        }
        // ring, not aws-lc-rs (Cargo.toml says why). rustls 0.23.48 deprecates it for lacking
        // post-quantum key exchange (X25519MLKEM768); X25519 and the P-curves remain sound.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsClient {
            config: Arc::new(config),
        })
    }

    /// A new session with the server named `host` (a name or an address).
    pub fn session(&self, host: &str) -> io::Result<TlsSession> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| io::Error::other(format!("TLS: {host} is no server name: {e}")))?;
        let connection = ClientConnection::new(self.config.clone(), name)
            .map_err(|e| io::Error::other(format!("TLS: {e}")))?;
        Ok(TlsSession {
            connection: Box::new(connection),
        })
    }
}

/// One connection's TLS session (boxed: rustls's state is a few KiB).
pub(super) struct TlsSession {
    connection: Box<ClientConnection>,
}

impl TlsSession {
    /// Moves the request `out[*written..]` into the session and its records to `stream`, and
    /// the receiver's records back into plaintext for `reader`, until the socket would block
    /// (or an answer is read). `asking` false: plaintext is unasked, and ends the connection.
    /// Errors end the connection (a TLS error says `TLS: ` and rustls's reason).
    pub fn pump(
        &mut self,
        stream: &mut TcpStream,
        out: &[u8],
        written: &mut usize,
        asking: bool,
        reader: &mut ResponseReader,
    ) -> io::Result<Option<Answer>> {
        let tls = &mut *self.connection;
        loop {
            let mut moved = false;
            // rustls holds the plaintext until the handshake is done, up to its buffer limit:
            // what it does not take now is offered again once records have left.
            while *written < out.len() {
                let n = tls.writer().write(&out[*written..])?;
                if n == 0 {
                    break;
                }
                *written += n;
                moved = true;
            }
            while tls.wants_write() {
                match tls.write_tls(stream) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(_) => moved = true,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            match tls.read_tls(stream) {
                Ok(0) => return Err(io::Error::other("the receiver closed the connection")),
                Ok(_) => {
                    if let Err(error) = tls.process_new_packets() {
                        // The alert that tells the receiver why, if the socket takes it now.
                        let _ = tls.write_tls(stream);
                        return Err(io::Error::other(format!("TLS: {error}")));
                    }
                    if let Some(answer) = read_plaintext(tls, asking, reader)? {
                        return Ok(Some(answer));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !moved {
                        return Ok(None);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Feeds the plaintext the session holds to `reader`.
fn read_plaintext(
    tls: &mut ClientConnection,
    asking: bool,
    reader: &mut ResponseReader,
) -> io::Result<Option<Answer>> {
    let mut chunk = [0; PLAIN_CHUNK];
    loop {
        match tls.reader().read(&mut chunk) {
            // close_notify (RFC 8446 §6.1): the receiver ended the connection cleanly.
            Ok(0) => return Err(io::Error::other("the receiver closed the connection")),
            Ok(_) if !asking => return Err(io::Error::other("unasked bytes")),
            Ok(n) => match reader.feed(&chunk[..n]) {
                Answer::Partial => {}
                answer => return Ok(Some(answer)),
            },
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}
