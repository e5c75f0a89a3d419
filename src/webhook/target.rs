//! A webhook URL, read once at start: `http://HOST[:PORT][/PATH]` or `https://...`. Whether
//! this build can post to an `https://` one (the `webhook-tls` feature) is decided by
//! [`super::WebhookSettings::validate`], not here: the reading is the same in every build.
//!
//! Invariant: the host, port and path can go into a request line and a `Host` header as they
//! are (no space, no control character, no userinfo, no fragment).

use std::fmt;
use std::str::FromStr;

/// A parsed `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    /// True for `https://`: the request goes over TLS, and the certificate must name `host`.
    pub tls: bool,
    /// The host name or address (IPv6 without its brackets).
    pub host: String,
    /// The port (80, or 443 for `https://`, unless given).
    pub port: u16,
    /// The path and query, starting with `/`.
    pub path: String,
}

/// Why a URL is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetError {
    /// Another scheme, or none.
    Scheme,
    /// The host or port is missing or malformed.
    Authority,
    /// The URL holds a space, a control character, userinfo or a fragment.
    Characters,
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TargetError::Scheme => "a webhook URL starts with http:// or https://",
            TargetError::Authority => "a webhook URL needs a host and, if given, a port 1-65535",
            TargetError::Characters => {
                "a webhook URL may hold no space, control character, user:password@ or #fragment"
            }
        })
    }
}

impl std::error::Error for TargetError {}

impl FromStr for WebhookUrl {
    type Err = TargetError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let lower = text
            .chars()
            .take(8)
            .collect::<String>()
            .to_ascii_lowercase();
        let (tls, rest) = if lower.starts_with("https://") {
            (true, &text[8..])
        } else if lower.starts_with("http://") {
            (false, &text[7..])
        } else {
            return Err(TargetError::Scheme);
        };
        if rest
            .bytes()
            .any(|b| b.is_ascii_control() || b == b' ' || b == b'#' || b >= 0x80)
        {
            return Err(TargetError::Characters);
        }
        let (authority, path) = match rest.find(['/', '?']) {
            Some(at) if rest.as_bytes()[at] == b'?' => (&rest[..at], format!("/{}", &rest[at..])),
            Some(at) => (&rest[..at], rest[at..].to_owned()),
            None => (rest, "/".to_owned()),
        };
        if authority.contains('@') {
            return Err(TargetError::Characters);
        }
        let (host, port) = split_port(authority, if tls { 443 } else { 80 })?;
        Ok(WebhookUrl {
            tls,
            host: host.to_owned(),
            port,
            path,
        })
    }
}

/// `host[:port]` or `[v6][:port]`; the port is `default` unless given.
fn split_port(authority: &str, default: u16) -> Result<(&str, u16), TargetError> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or(TargetError::Authority)?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or(TargetError::Authority)?),
        };
        (host, port)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => default,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or(TargetError::Authority)?,
    };
    if host.is_empty() {
        return Err(TargetError::Authority);
    }
    Ok((host, port))
}

impl WebhookUrl {
    /// The scheme's own port: 443 for `https://`, 80 for `http://`.
    pub fn default_port(&self) -> u16 {
        if self.tls {
            443
        } else {
            80
        }
    }

    /// The `Host` header's value (RFC 9110 §7.2: the port only when not the scheme's own).
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == self.default_port() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.host_header(), self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_urls_are_read() {
        let url: WebhookUrl = "http://127.0.0.1:9000/hooks?x=1".parse().expect("url");
        assert_eq!(
            (url.host.as_str(), url.port, url.path.as_str()),
            ("127.0.0.1", 9000, "/hooks?x=1")
        );
        let url: WebhookUrl = "HTTP://example.com".parse().expect("url");
        assert_eq!((url.port, url.path.as_str()), (80, "/"));
        assert_eq!(url.host_header(), "example.com");
        let url: WebhookUrl = "http://[::1]:81?a".parse().expect("url");
        assert_eq!((url.host.as_str(), url.path.as_str()), ("::1", "/?a"));
        assert_eq!(url.to_string(), "http://[::1]:81/?a");
        assert!(!url.tls);
    }

    #[test]
    fn https_urls_are_read_with_their_own_port() {
        let url: WebhookUrl = "HTTPS://hooks.example.com/in".parse().expect("url");
        assert!(url.tls);
        assert_eq!((url.host.as_str(), url.port), ("hooks.example.com", 443));
        assert_eq!(url.host_header(), "hooks.example.com");
        assert_eq!(url.to_string(), "https://hooks.example.com/in");
        let url: WebhookUrl = "https://localhost:8443".parse().expect("url");
        assert_eq!(url.host_header(), "localhost:8443");
        let url: WebhookUrl = "https://h:80/".parse().expect("url");
        assert_eq!(url.host_header(), "h:80", "80 is not https's own port");
    }

    #[test]
    fn other_urls_are_refused_with_their_reason() {
        for (text, error) in [
            ("ftp://x", TargetError::Scheme),
            ("https:/x", TargetError::Scheme),
            ("https://", TargetError::Authority),
            ("https://u@h/", TargetError::Characters),
            ("example.com", TargetError::Scheme),
            ("http://", TargetError::Authority),
            ("http://h:0/", TargetError::Authority),
            ("http://h:99999/", TargetError::Authority),
            ("http://[::1/", TargetError::Authority),
            ("http://u:p@h/", TargetError::Characters),
            ("http://h/a b", TargetError::Characters),
            ("http://h/a\r\nX: y", TargetError::Characters),
            ("http://h/#f", TargetError::Characters),
        ] {
            assert_eq!(text.parse::<WebhookUrl>(), Err(error), "{text}");
        }
    }
}
