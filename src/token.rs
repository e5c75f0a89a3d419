//! Signed connection tokens: JSON Web Tokens (RFC 7519) signed with HMAC-SHA256 (JWS,
//! RFC 7515, `alg: HS256`), by which a web app vouches for a connection's user and the
//! channels it may join, without a round trip per connection.
//!
//! Pure: the caller passes the time (Unix seconds). Verification accepts only `HS256`
//! (never `none`, never another algorithm named by the token itself), compares signatures
//! in constant time (the `hmac` crate's `verify_slice`), and checks `exp`, `nbf` and `iat`
//! with a leeway. Every failure has a short reason code for the HTTP 401 or the error.
//!
//! The codec ([`verify`], [`sign`]) is the `tokens` feature's; the grant and claim types are
//! always here, since sessions and upgrades carry them.

use std::fmt;

use crate::model::Meta;
use crate::names;

#[cfg(feature = "tokens")]
mod jwt;
#[cfg(feature = "tokens")]
pub use jwt::{sign, verify};

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// No token was given.
    Missing,
    /// Not a well-formed JWT with the required claims.
    Malformed,
    /// The header names an algorithm other than `HS256`.
    BadAlgorithm,
    /// The signature does not match (another key, or a changed header or payload).
    BadSignature,
    /// `exp` has passed.
    Expired,
    /// `nbf` (or `iat`) is in the future.
    NotYetValid,
    /// A refresh token names another user.
    WrongSubject,
}

impl TokenError {
    /// The reason code sent to clients.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenError::Missing => "missing",
            TokenError::Malformed => "malformed",
            TokenError::BadAlgorithm => "bad_algorithm",
            TokenError::BadSignature => "bad_signature",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::WrongSubject => "wrong_subject",
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for TokenError {}

/// A refused token: the reason code, and for a malformed claim, which one and why (a client
/// moving its grants over needs to know which entry was refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The reason code.
    pub reason: TokenError,
    /// What was wrong, when the reason alone does not say.
    pub detail: Option<String>,
}

impl From<TokenError> for Refusal {
    fn from(reason: TokenError) -> Refusal {
        Refusal {
            reason,
            detail: None,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.detail {
            Some(detail) => write!(f, "{} ({detail})", self.reason),
            None => write!(f, "{}", self.reason),
        }
    }
}

impl std::error::Error for Refusal {}

/// Which channels a token allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelGrant {
    /// `None`: every channel. Otherwise names, and prefixes for entries that ended in `*`.
    patterns: Option<Vec<Pattern>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(Box<str>),
    Prefix(Box<str>),
}

impl ChannelGrant {
    /// Every channel.
    pub fn all() -> ChannelGrant {
        ChannelGrant { patterns: None }
    }

    /// No channel at all (an admin watcher without a token, which joins nothing).
    pub fn none() -> ChannelGrant {
        ChannelGrant {
            patterns: Some(Vec::new()),
        }
    }

    /// True when every channel is allowed (`*` or no `channels` claim): what watching every
    /// channel needs.
    pub fn allows_all(&self) -> bool {
        self.patterns.is_none()
    }

    /// Parses `channels` entries: names, or prefixes followed by `*`.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<ChannelGrant, String> {
        let mut patterns = Vec::new();
        for entry in entries {
            let pattern = match entry.strip_suffix('*') {
                Some("") => return Ok(ChannelGrant::all()),
                Some(prefix) => {
                    // The prefix of a valid name is made of name characters too.
                    names::validate_channel(prefix)
                        .map_err(|e| format!("channel pattern {entry:?}: {e}"))?;
                    Pattern::Prefix(prefix.into())
                }
                None => {
                    names::validate_channel(entry)
                        .map_err(|e| format!("channel {entry:?}: {e}"))?;
                    Pattern::Exact(entry.into())
                }
            };
            patterns.push(pattern);
        }
        Ok(ChannelGrant {
            patterns: Some(patterns),
        })
    }

    /// True when the token allows joining `channel`.
    pub fn allows(&self, channel: &str) -> bool {
        self.patterns.as_ref().is_none_or(|patterns| {
            patterns.iter().any(|pattern| match pattern {
                Pattern::Exact(name) => **name == *channel,
                Pattern::Prefix(prefix) => channel.starts_with(&**prefix),
            })
        })
    }
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// `sub`: the user id.
    pub subject: String,
    /// `exp`, in Unix seconds.
    pub expires_at: u64,
    /// `channels`.
    pub channels: ChannelGrant,
    /// `meta`, when present.
    pub meta: Option<Meta>,
}

impl Claims {
    /// The grant of a connection that joins no channel (an admin watcher on a server that
    /// requires tokens, admitted without one). It never expires: nothing is armed for it.
    pub fn joining_nothing(subject: &str) -> Claims {
        Claims {
            subject: subject.to_owned(),
            expires_at: u64::MAX,
            channels: ChannelGrant::none(),
            meta: None,
        }
    }
}

/// Without the `tokens` feature no token is valid. No server gets here:
/// `Config::check_features` refuses a token secret in such a build, and without one the
/// upgrade and the `refresh` command never verify.
#[cfg(not(feature = "tokens"))]
pub(crate) fn verify(
    _token: &str,
    _secret: &[u8],
    _now_ms: u64,
    _leeway: u64,
    _max_meta_size: usize,
) -> Result<Claims, Refusal> {
    Err(TokenError::BadSignature.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants() {
        assert!(ChannelGrant::all().allows("anything"));
        assert!(ChannelGrant::all().allows_all());
        assert!(!ChannelGrant::none().allows("anything") && !ChannelGrant::none().allows_all());
        let some = ChannelGrant::parse(["lobby", "chat.*"]).expect("grant");
        assert!(!some.allows_all());
        assert!(ChannelGrant::parse(["*"]).expect("all").allows("x"));
        let patterns = ChannelGrant::parse(["chat:*", "private-App.Models.User.*", "a/b"]);
        let patterns = patterns.expect("patterns on the channel alphabet");
        assert!(patterns.allows("chat:lobby") && patterns.allows("private-App.Models.User.42"));
        assert!(patterns.allows("a/b") && !patterns.allows("a/bc") && !patterns.allows("chat"));
        let refused = ChannelGrant::parse(["lobby", "chat|*"]).expect_err("'|' is refused");
        assert!(
            refused.contains(r#""chat|*""#),
            "names the entry: {refused}"
        );
        let none = ChannelGrant::parse([]).expect("an empty list");
        assert!(!none.allows("lobby"), "an empty list allows nothing");
    }
}
