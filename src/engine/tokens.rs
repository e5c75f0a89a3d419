//! Connection tokens in the loop: the expiry deadline on the wheel, the `refresh` command,
//! and the closing of a connection whose token ran out (Close 4001).
//!
//! Time: token claims are Unix seconds; the loop's time is milliseconds since its origin,
//! whose Unix time the socket layer read once and gave the engine ([`Engine::new`]).
//! Invariant: an open connection whose grant came from a token has a `TokenExpiry` entry on
//! the wheel at or before its current expiry. A refresh to a later expiry adds no entry: the
//! old one, firing early, is simply put back (lazy re-arm); a refresh to an earlier expiry
//! arms one. A grant that joins nothing (an admin watcher let in without a token) has none.

use super::session::Session;
use super::{Engine, Timer, TOKEN_EXPIRED};
use crate::model::{CommandError, ErrorCode, Event, Json, LeaveReason};
use crate::roster::ConnId;
use crate::token::{self, Refusal, TokenError};
use crate::wheel::Millis;

impl Engine {
    /// The loop's time `now` as Unix milliseconds.
    pub fn unix_millis(&self, now: Millis) -> u64 {
        self.unix_origin_ms + now
    }

    /// The loop time at which a token expiring at `expires_at` (Unix seconds) stops being
    /// honoured, leeway included.
    pub(super) fn token_deadline(&self, expires_at: u64) -> Millis {
        let leeway = self.config.token_leeway.as_secs();
        expires_at
            .saturating_add(leeway)
            .saturating_mul(1000)
            .saturating_sub(self.unix_origin_ms)
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
        let refused = |error: Refusal| {
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
        let Some(session) = self.sessions.get_mut(id) else {
            return Ok(());
        };
        if *session.user != *claims.subject {
            return Err(refused(TokenError::WrongSubject.into()));
        }
        let expires_at = claims.expires_at;
        let armed = session.grant().map(|g| g.expires_at);
        session.set_grant(claims);
        // The entry on the wheel re-arms itself when a later expiry replaced its own; only
        // an earlier one (or a first one, after a grant that joins nothing) needs an entry.
        if armed.is_none_or(|armed| expires_at < armed) {
            let deadline = self.token_deadline(expires_at);
            self.arm(Timer::TokenExpiry(id), deadline);
        }
        let refreshed = Event::Refreshed {
            expires_at,
            reference,
        };
        self.send(id, &refreshed);
        Ok(())
    }

    /// A token deadline fired: close the connection if its token is still the expired one.
    pub(super) fn token_deadline_passed(&mut self, id: ConnId, now: Millis) {
        let Some(grant) = self.sessions.get(id).and_then(Session::grant) else {
            return;
        };
        let deadline = self.token_deadline(grant.expires_at);
        if now < deadline {
            // Refreshed since this entry was made: wait for the new deadline.
            self.arm(Timer::TokenExpiry(id), deadline);
            return;
        }
        self.fail(
            id,
            TOKEN_EXPIRED,
            "token expired",
            LeaveReason::Expired,
            now,
        );
    }
}
