//! The `--redis` URL: `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`, as Redis clients write it.
//! Pure: the host name is resolved by the server when it binds.

use std::fmt;

/// Where the cluster's Redis is and how to log in.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisAddress {
    /// Host name or IP address (without brackets for IPv6).
    pub host: String,
    /// TCP port (default 6379).
    pub port: u16,
    /// ACL user name, when the URL gives one.
    pub user: Option<String>,
    /// Password, when the URL gives one (sent with `AUTH`).
    pub password: Option<String>,
    /// Database number (default 0), selected with `SELECT`.
    pub db: u32,
}

/// Why a `--redis` URL was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRedisUrl(pub String);

impl fmt::Display for BadRedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (expected redis://[[USER]:PASSWORD@]HOST[:PORT][/DB])",
            self.0
        )
    }
}

impl std::error::Error for BadRedisUrl {}

// The password never appears in logs or debug output.
impl fmt::Debug for RedisAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisAddress({self})")
    }
}

impl fmt::Display for RedisAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(f, "redis://{host}:{}/{}", self.port, self.db)
    }
}

impl std::str::FromStr for RedisAddress {
    type Err = BadRedisUrl;

    fn from_str(url: &str) -> Result<RedisAddress, BadRedisUrl> {
        let bad = |why: &str| BadRedisUrl(format!("invalid Redis URL: {why}"));
        let rest = url
            .strip_prefix("redis://")
            .ok_or_else(|| bad("it must start with redis:// (TLS is not supported)"))?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (credentials, host_port) = match authority.rsplit_once('@') {
            Some((credentials, host_port)) => (Some(credentials), host_port),
            None => (None, authority),
        };
        let (user, password) = match credentials {
            None => (None, None),
            Some(credentials) => match credentials.split_once(':') {
                Some((user, password)) => (
                    (!user.is_empty()).then(|| user.to_owned()),
                    Some(password.to_owned()),
                ),
                None => (Some(credentials.to_owned()), None),
            },
        };
        let (host, port) = split_host_port(host_port).ok_or_else(|| bad("bad host or port"))?;
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let db = match path {
            "" => 0,
            db => db
                .parse()
                .map_err(|_| bad("the database must be a number"))?,
        };
        Ok(RedisAddress {
            host: host.to_owned(),
            port,
            user,
            password,
            db,
        })
    }
}

/// `HOST`, `HOST:PORT`, `[V6]` or `[V6]:PORT`.
fn split_host_port(text: &str) -> Option<(&str, u16)> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        match after {
            "" => (host, None),
            after => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    let port = match port {
        None => 6379,
        Some(port) => port.parse().ok().filter(|&port| port != 0)?,
    };
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<RedisAddress, BadRedisUrl> {
        url.parse()
    }

    #[test]
    fn urls_as_redis_clients_write_them() {
        let plain = parse("redis://127.0.0.1").expect("plain");
        assert_eq!(
            (plain.host.as_str(), plain.port, plain.db),
            ("127.0.0.1", 6379, 0)
        );
        let full = parse("redis://app:s3cr:et@cache.local:7000/3").expect("full");
        assert_eq!(full.user.as_deref(), Some("app"));
        assert_eq!(full.password.as_deref(), Some("s3cr:et"));
        assert_eq!(
            (full.host.as_str(), full.port, full.db),
            ("cache.local", 7000, 3)
        );
        let password_only = parse("redis://:pw@[::1]:6380/").expect("v6");
        assert_eq!(password_only.user, None);
        assert_eq!(password_only.password.as_deref(), Some("pw"));
        assert_eq!(password_only.host, "::1");
        assert_eq!(password_only.to_string(), "redis://[::1]:6380/0");
    }

    #[test]
    fn bad_urls_say_what_is_expected() {
        for url in [
            "",
            "rediss://127.0.0.1",
            "http://127.0.0.1",
            "redis://",
            "redis://host:port",
            "redis://host:0",
            "redis://host:70000",
            "redis://host/db",
            "redis://[::1",
        ] {
            let error = parse(url).expect_err(url);
            assert!(error.to_string().contains("redis://[[USER]"), "{error}");
        }
    }

    #[test]
    fn the_password_stays_out_of_logs() {
        let address = parse("redis://:hunter2@h:1/0").expect("url");
        assert!(!format!("{address} {address:?}").contains("hunter2"));
    }
}
