//! A server under test: a URL (`--url`, and the other nodes of a cluster given by
//! `--observe-url` / `--subscribe-url`) parsed once, and the bytes of every request sent to it
//! (WebSocket upgrades, `GET /presence`, `POST /publish`).
//!
//! Invariant: every request made from a `Target` goes to the one address resolved from its
//! URL; nothing here opens a socket.

use std::net::{SocketAddr, ToSocketAddrs};

/// Where the server is and how to address it.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL as given, for reports.
    url: String,
    /// The resolved address (IPv4 preferred, for `--sources`).
    pub addr: SocketAddr,
    /// `HOST:PORT` as written, for the `Host` header.
    host: String,
    /// The path of the URL (`/` when absent).
    path: String,
    /// The URL's own query, without `?` (may be empty).
    query: String,
}

impl Target {
    /// Parses `ws://HOST[:PORT][/PATH][?QUERY]` (port 80 when absent) and resolves `HOST`.
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("ws://")
            .ok_or_else(|| format!("{url:?} is not a ws:// URL (wss is not supported)"))?;
        let (authority, path_and_query) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(format!("{url:?} has no host"));
        }
        let (path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path, query),
            None => (path_and_query, ""),
        };
        let path = if path.is_empty() { "/" } else { path };
        let with_port = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| !p.contains(']'))
        {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let addrs: Vec<SocketAddr> = with_port
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {authority:?}: {e}"))?
            .collect();
        let addr = addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or(addrs.first())
            .copied()
            .ok_or_else(|| format!("{authority:?} resolves to no address"))?;
        Ok(Target {
            url: url.to_string(),
            addr,
            host: authority.to_string(),
            path: path.to_string(),
            query: query.to_string(),
        })
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The request target (path and query) for a connection: the URL's own query, then
    /// `params` (already encoded `k=v` pairs joined by `&`), then `extra` (`--query`).
    pub fn ws_target(&self, params: &str, extra: &str) -> String {
        let parts: Vec<&str> = [self.query.as_str(), params, extra]
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect();
        if parts.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, parts.join("&"))
        }
    }

    /// A WebSocket upgrade request (RFC 6455 section 4.1) for `target` with `key`.
    pub fn upgrade_request(&self, target: &str, key: &str) -> Vec<u8> {
        format!(
            "GET {target} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n",
            self.host
        )
        .into_bytes()
    }

    /// A one-shot HTTP/1.1 request (`Connection: close`), with the bearer token if any.
    pub fn http_request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
    ) -> Vec<u8> {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.host
        );
        if let Some(token) = token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        if let Some(body) = body {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        let mut request = head.into_bytes();
        request.extend_from_slice(body.unwrap_or_default());
        request
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_path_and_query() {
        let target = Target::parse("ws://127.0.0.1:9000/ws?events=none").unwrap();
        assert_eq!(target.addr, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(target.url(), "ws://127.0.0.1:9000/ws?events=none");
        assert_eq!(
            target.ws_target("user=a", "channel=b"),
            "/ws?events=none&user=a&channel=b"
        );
        let bare = Target::parse("ws://127.0.0.1:9000").unwrap();
        assert_eq!(bare.ws_target("", ""), "/");
        assert!(Target::parse("http://127.0.0.1/").is_err());
    }

    #[test]
    fn requests_carry_host_and_token() {
        let target = Target::parse("ws://127.0.0.1:9000/").unwrap();
        let request = target.http_request("POST", "/publish", Some("t"), Some(b"{}"));
        let text = String::from_utf8(request).unwrap();
        assert!(text.starts_with("POST /publish HTTP/1.1\r\nHost: 127.0.0.1:9000\r\n"));
        assert!(text.contains("Authorization: Bearer t\r\n"));
        assert!(text.ends_with("Content-Length: 2\r\n\r\n{}"));
    }
}
