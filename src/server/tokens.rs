//! Connection tokens in the loop: the expiry deadline on the wheel, the `refresh` command,
//! and the closing of a connection whose token ran out (Close 4001).
//!
//! Time: token claims are Unix seconds; the loop's time is milliseconds since
//! [`Server::bind`], whose wall-clock time is the only other clock reading involved.
//! Invariant: an open connection with a grant has a `TokenExpiry` entry on the wheel at or
//! before its current expiry; a refresh only moves the expiry later, so the entry, when it
//! fires early, is simply put back (lazy re-arm).

use std::time::UNIX_EPOCH;

use tungstenite::protocol::frame::coding::CloseCode;

use super::conn::{Conn, Phase};
use super::{Server, Timer};
use crate::protocol::{event, CommandError, ErrorCode, Json, LeaveReason};
use crate::roster::ConnId;
use crate::token::{self, TokenError};
use crate::wheel::Millis;

/// The application close code for an expired token (RFC 6455 §7.4.2: 4000–4999 are ours).
const TOKEN_EXPIRED: u16 = 4001;

impl Server {
    /// The loop's time `now` as Unix milliseconds.
    pub(super) fn unix_millis(&self, now: Millis) -> u64 {
        self.unix_origin_ms() + now
    }

    /// The loop time at which a token expiring at `expires_at` (Unix seconds) stops being
    /// honoured, leeway included.
    pub(super) fn token_deadline(&self, expires_at: u64) -> Millis {
        let leeway = self.config.token_leeway.as_secs();
        expires_at
            .saturating_add(leeway)
            .saturating_mul(1000)
            .saturating_sub(self.unix_origin_ms())
    }

    fn unix_origin_ms(&self) -> u64 {
        self.started
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    /// `{"type":"refresh","token":T}`: the same user's newer token takes over.
    pub(super) fn refresh(
        &mut self,
        id: ConnId,
        token: &str,
        reference: Option<&Json>,
        now: Millis,
    ) -> Result<(), CommandError> {
        let Some(secret) = self.config.token_secret.as_deref() else {
            return Err(CommandError::new(
                ErrorCode::BadRequest,
                "this server does not use connection tokens",
            ));
        };
        let refused = |error: TokenError| {
            CommandError::new(
                ErrorCode::Forbidden,
                format!("{error}: the refresh token was refused"),
            )
        };
        let claims = token::verify(
            token,
            secret.as_bytes(),
            self.unix_millis(now),
            self.config.token_leeway.as_secs(),
            self.config.max_meta_size,
        )
        .map_err(refused)?;
        let Some(conn) = self.conns.get_mut(id) else {
            return Ok(());
        };
        if conn.user.as_deref() != Some(claims.subject.as_str()) {
            return Err(refused(TokenError::WrongSubject));
        }
        let expires_at = claims.expires_at;
        conn.grant = Some(Box::new(claims));
        let deadline = self.token_deadline(expires_at);
        self.wheel.insert(Timer::TokenExpiry(id), deadline);
        self.send(id, event::refreshed(expires_at, reference));
        Ok(())
    }

    /// A token deadline fired: close the connection if its token is still the expired one.
    pub(super) fn token_deadline_passed(&mut self, id: ConnId, now: Millis) {
        let Some(Conn {
            phase: Phase::Open(_),
            grant: Some(grant),
            ..
        }) = self.conns.get(id)
        else {
            return;
        };
        let deadline = self.token_deadline(grant.expires_at);
        if now < deadline {
            // Refreshed since this entry was made: wait for the new deadline.
            self.wheel.insert(Timer::TokenExpiry(id), deadline);
            return;
        }
        self.fail(
            id,
            CloseCode::from(TOKEN_EXPIRED),
            "token expired",
            LeaveReason::Expired,
            now,
        );
    }
}
