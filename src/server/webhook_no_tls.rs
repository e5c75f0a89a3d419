//! `webhook_tls` in a build without the `webhook-tls` feature: no TLS client or session can
//! exist. `WebhookSettings::validate` refuses `https://` URLs and `--webhook-ca` at start with
//! the feature's name, so the loop never asks for one; a host that skipped the check gets
//! the same refusal at bind time.

use std::convert::Infallible;
use std::io;
use std::path::Path;

use mio::net::TcpStream;

use crate::webhook::http::{Read as Answer, ResponseReader};

/// Uninhabited: [`TlsClient::new`] always refuses.
pub(super) struct TlsClient {
    never: Infallible,
}

impl TlsClient {
    /// Refuses: this build has no TLS.
    pub fn new(_ca: Option<&Path>) -> Result<TlsClient, String> {
        Err(
            "https:// webhooks need the cargo feature `webhook-tls`, which this build was \
             compiled without"
                .into(),
        )
    }

    /// Unreachable: no client exists.
    pub fn session(&self, _host: &str) -> io::Result<TlsSession> {
        match self.never {}
    }
}

/// Uninhabited: no session exists.
pub(super) enum TlsSession {}

impl TlsSession {
    /// Unreachable: no session exists.
    pub fn pump(
        &mut self,
        _stream: &mut TcpStream,
        _out: &[u8],
        _written: &mut usize,
        _asking: bool,
        _reader: &mut ResponseReader,
    ) -> io::Result<Option<Answer>> {
        match *self {}
    }
}
