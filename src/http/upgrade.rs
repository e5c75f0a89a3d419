//! The WebSocket upgrade (RFC 6455 §4.2): validating the request, reading its query
//! (`user`, `channel`, `events`, `watch`, `admin`) and building the `101` response.

use super::{constant_time_eq, percent, Request, Response};
use crate::model::{EventsMode, Meta};
use crate::names;
use crate::token::{self, ChannelGrant, Claims};

/// Who may upgrade: the operator's access settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct Access<'a> {
    /// When not empty, a request carrying an `Origin` must carry one of these.
    pub allowed_origins: &'a [String],
    /// When set, watching needs `admin=TOKEN` in the query.
    pub admin_token: Option<&'a str>,
    /// When set, the upgrade needs a signed token (`token=JWT`) naming the user.
    pub tokens: Option<TokenPolicy<'a>>,
}

/// How to check connection tokens.
#[derive(Debug, Clone, Copy)]
pub struct TokenPolicy<'a> {
    /// The HS256 secret.
    pub secret: &'a [u8],
    /// The current time, in Unix milliseconds.
    pub now_ms: u64,
    /// Tolerated clock skew, in seconds.
    pub leeway: u64,
    /// Bound of the `meta` claim, serialized.
    pub max_meta_size: usize,
}

/// The `watch` query value that means every channel.
pub const WATCH_ALL: &str = "*";

/// What a valid upgrade request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// `user` from the query, if given (validated).
    pub user: Option<String>,
    /// `channel` values from the query, in order, without repeats (validated).
    pub channels: Vec<String>,
    /// `events` from the query (default `all`).
    pub events: EventsMode,
    /// `watch` values, in order, without repeats: channel names or [`WATCH_ALL`].
    pub watch: Vec<String>,
    /// True when the connection presented the server's admin token: it may watch every
    /// channel, whatever its token grants.
    pub admin: bool,
    /// The verified token's claims, when tokens are required.
    pub claims: Option<Claims>,
    /// The meta for its joins, when the host's handler chose one.
    pub meta: Option<Meta>,
    /// False when the host's handler chose the channels: then none means none, not the
    /// default channel.
    pub default_channel: bool,
    /// The `Sec-WebSocket-Accept` value for the response.
    pub accept_key: String,
    /// For a Pusher connection, its app (an index into the configured apps).
    pub pusher_app: Option<u16>,
    /// A refusal that must follow the upgrade rather than replace it, as close code and
    /// reason: pusher-js retries forever after an HTTP refusal, but not after a close 4001.
    pub close_at_once: Option<(u16, String)>,
}

impl Upgrade {
    /// The `101 Switching Protocols` response (RFC 6455 §4.2.2).
    pub fn response(&self) -> Vec<u8> {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            self.accept_key
        )
        .into_bytes()
    }
}

/// Validates an upgrade request (already routed to the WebSocket endpoint).
pub fn validate(request: &Request, access: Access<'_>) -> Result<Upgrade, Response> {
    let accept_key = check_handshake(request, access.allowed_origins)?;
    let mut query = parse_query(&request.query).map_err(|reason| Response::error(400, reason))?;
    let admin = match (access.admin_token, query.admin.as_deref()) {
        (Some(token), Some(given)) => constant_time_eq(given.as_bytes(), token.as_bytes()),
        _ => false,
    };
    if access.admin_token.is_some() && !admin && !query.watch.is_empty() {
        return Err(Response::error(
            401,
            "watching needs admin=TOKEN with the server's admin token",
        ));
    }
    let claims = match access.tokens {
        None => None,
        // The admin token is enough to watch (the dashboard is no user): such a connection
        // has no token, so it joins nothing (`ChannelGrant::none`, set when it opens).
        Some(_) if admin && query.token.is_none() && !query.watch.is_empty() => {
            admin_watcher_only(&query)?;
            None
        }
        Some(policy) => Some(check_token(&mut query, policy)?),
    };
    // Without the admin token, a token's grant bounds what its connection watches too.
    if let Some(grant) = claims
        .as_ref()
        .map(|claims| &claims.channels)
        .filter(|_| !admin)
    {
        if let Some(target) = query.watch.iter().find(|target| !may_watch(grant, target)) {
            return Err(Response::error(
                403,
                format!("watch {target} is not allowed by the token"),
            ));
        }
    }
    Ok(Upgrade {
        user: query.user,
        channels: query.channels,
        events: query.events,
        watch: query.watch,
        admin,
        claims,
        meta: None,
        default_channel: true,
        accept_key,
        pusher_app: None,
        close_at_once: None,
    })
}

/// The WebSocket part of an upgrade, whatever the dialect: HTTP/1.1, version 13, a key
/// (RFC 6455 §4.2.1), an allowed origin (§10.2). Returns the `Sec-WebSocket-Accept` value.
pub fn check_handshake(request: &Request, allowed_origins: &[String]) -> Result<String, Response> {
    if request.version != 1 {
        return Err(Response::error(400, "a WebSocket upgrade needs HTTP/1.1"));
    }
    // RFC 6455 §4.4: answer an unsupported version with the versions we speak.
    if request.header("Sec-WebSocket-Version").map(str::trim) != Some("13") {
        return Err(Response::error(
            426,
            "unsupported Sec-WebSocket-Version: this server speaks 13",
        )
        .with_header("Sec-WebSocket-Version", "13"));
    }
    // RFC 6455 §4.1: the key is 16 random bytes, base64-encoded (24 characters).
    let key = request
        .header("Sec-WebSocket-Key")
        .map(str::trim)
        .filter(|key| key.len() == 24);
    let Some(key) = key else {
        return Err(Response::error(
            400,
            "missing or malformed Sec-WebSocket-Key",
        ));
    };
    check_origin(request, allowed_origins)?;
    Ok(tungstenite::handshake::derive_accept_key(key.as_bytes()))
}

#[derive(Default)]
struct Query {
    user: Option<String>,
    channels: Vec<String>,
    events: EventsMode,
    watch: Vec<String>,
    admin: Option<String>,
    token: Option<String>,
}

fn parse_query(query: &str) -> Result<Query, String> {
    let mut parsed = Query::default();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, raw) = pair.split_once('=').unwrap_or((pair, ""));
        if !matches!(
            name,
            "user" | "channel" | "events" | "watch" | "admin" | "token"
        ) {
            // Unknown parameters (cache busters, a proxy's additions) are not ours to judge.
            continue;
        }
        let value = percent::decode_query_value(raw).map_err(|error| format!("{name}: {error}"))?;
        match name {
            "user" if parsed.user.is_some() => return Err("user: given more than once".into()),
            "user" => {
                names::validate_user(&value).map_err(|error| format!("user {error}"))?;
                parsed.user = Some(value);
            }
            "channel" => {
                names::validate_channel(&value).map_err(|error| format!("channel {error}"))?;
                push_once(&mut parsed.channels, value);
            }
            "watch" => {
                if value != WATCH_ALL {
                    names::validate_channel(&value).map_err(|error| format!("watch {error}"))?;
                }
                push_once(&mut parsed.watch, value);
            }
            "events" => {
                parsed.events = EventsMode::parse(&value).ok_or_else(|| {
                    format!("events must be all, diff, count or none, not {value:?}")
                })?;
            }
            "token" => parsed.token = Some(value),
            _ => parsed.admin = Some(value),
        }
    }
    Ok(parsed)
}

/// With tokens required: the token names the user (so `user=` is refused) and must allow
/// every channel of the URL.
fn check_token(query: &mut Query, policy: TokenPolicy<'_>) -> Result<Claims, Response> {
    refuse_user_parameter(query)?;
    let token = query.token.as_deref().unwrap_or("");
    let claims = token::verify(
        token,
        policy.secret,
        policy.now_ms,
        policy.leeway,
        policy.max_meta_size,
    )
    .map_err(|error| Response::error(401, format!("{error}: the connection token was refused")))?;
    if let Some(channel) = query
        .channels
        .iter()
        .find(|channel| !claims.channels.allows(channel))
    {
        return Err(Response::error(
            403,
            format!("channel {channel} is not allowed by the token"),
        ));
    }
    query.user = Some(claims.subject.clone());
    Ok(claims)
}

/// True when a connection granted `grant` may watch `target` (a channel, or `*`, which needs
/// a grant of every channel).
pub fn may_watch(grant: &ChannelGrant, target: &str) -> bool {
    if target == WATCH_ALL {
        grant.allows_all()
    } else {
        grant.allows(target)
    }
}

/// When tokens are required, a `user` parameter is refused: the token names the user.
fn refuse_user_parameter(query: &Query) -> Result<(), Response> {
    match query.user {
        Some(_) => Err(Response::error(
            400,
            "user: not allowed when tokens are required (the token's sub is the user)",
        )),
        None => Ok(()),
    }
}

/// An admin connection without a token only watches: it names no user and joins no channel.
fn admin_watcher_only(query: &Query) -> Result<(), Response> {
    refuse_user_parameter(query)?;
    if let Some(channel) = query.channels.first() {
        return Err(Response::error(
            403,
            format!("channel {channel}: joining needs a token; the admin token only watches"),
        ));
    }
    Ok(())
}

/// RFC 6455 §10.2: browsers send `Origin`; refusing unknown ones stops cross-site WebSocket
/// hijacking. Clients that are not browsers send none and are let through, and the server's
/// own pages (the dashboard: an `Origin` naming the request's own `Host`) always are.
fn check_origin(request: &Request, allowed: &[String]) -> Result<(), Response> {
    let Some(origin) = request.header("Origin").map(str::trim) else {
        return Ok(());
    };
    if allowed.is_empty()
        || is_same_origin(origin, request.header("Host"))
        || allowed.iter().any(|a| a.eq_ignore_ascii_case(origin))
    {
        return Ok(());
    }
    Err(Response::error(
        403,
        format!("origin {origin} is not allowed"),
    ))
}

/// True when `origin` is `http://HOST` or `https://HOST` for the request's `Host` (a proxy
/// in front may terminate TLS, hence both schemes).
fn is_same_origin(origin: &str, host: Option<&str>) -> bool {
    let Some(host) = host.map(str::trim).filter(|host| !host.is_empty()) else {
        return false;
    };
    ["http://", "https://"].iter().any(|scheme| {
        let (given_scheme, given_host) = (origin.get(..scheme.len()), origin.get(scheme.len()..));
        given_scheme.is_some_and(|given| given.eq_ignore_ascii_case(scheme))
            && given_host.is_some_and(|given| given.eq_ignore_ascii_case(host))
    })
}

fn push_once(list: &mut Vec<String>, value: String) {
    if !list.contains(&value) {
        list.push(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{examine, Examined};

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn request(target: &str, extra: &str) -> Request {
        let text = format!(
            "GET {target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n{extra}\r\n"
        );
        match examine(text.as_bytes(), 0) {
            Examined::Complete(request) => request,
            other => panic!("{other:?}"),
        }
    }

    fn upgrade(target: &str) -> Upgrade {
        validate(&request(target, ""), Access::default()).expect(target)
    }

    fn refused(request: &Request, access: Access<'_>) -> Response {
        validate(request, access).expect_err("refused")
    }

    #[test]
    fn upgrade_with_query() {
        let upgrade = upgrade(
            "/ws?user=alice%40example.com&channel=a&channel=b&channel=a&events=count&x=%zz",
        );
        assert!(request("/", "").is_upgrade());
        assert_eq!(upgrade.user.as_deref(), Some("alice@example.com"));
        assert_eq!(upgrade.channels, vec!["a", "b"]);
        assert_eq!(upgrade.events, EventsMode::Count);
        assert!(!upgrade.admin, "no admin token configured: none presented");
        // The example from RFC 6455 §1.3.
        assert_eq!(upgrade.accept_key, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let response = String::from_utf8(upgrade.response()).expect("ascii");
        assert!(response.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(response.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    }

    #[test]
    fn names_arrive_percent_encoded_or_raw() {
        let names = upgrade(
            "/?user=auth0%7C5f7c%20%E5%B1%B1+%F0%9F%A6%80%22%5C&channel=room:lobby&channel=room%3Aindex&channel=studio/1/live&watch=chat%3A1",
        );
        assert_eq!(names.user.as_deref(), Some("auth0|5f7c 山 🦀\"\\"));
        assert_eq!(
            names.channels,
            ["room:lobby", "room:index", "studio/1/live"]
        );
        assert_eq!(names.watch, ["chat:1"]);
        let plus = upgrade("/?user=a%2Bb");
        assert_eq!(plus.user.as_deref(), Some("a+b"), "%2B is a literal plus");
    }

    #[test]
    fn version_and_key_errors() {
        let old = request("/", "").clone();
        let mut old_version = old.clone();
        old_version
            .headers
            .retain(|(n, _)| n != "Sec-WebSocket-Version");
        old_version
            .headers
            .push(("Sec-WebSocket-Version".into(), "8".into()));
        let response = refused(&old_version, Access::default());
        assert_eq!(response.status, 426);
        assert_eq!(response.headers, vec![("Sec-WebSocket-Version", "13")]);
        let mut short_key = old.clone();
        short_key.headers.retain(|(n, _)| n != "Sec-WebSocket-Key");
        short_key
            .headers
            .push(("Sec-WebSocket-Key".into(), "short".into()));
        assert_eq!(refused(&short_key, Access::default()).status, 400);
        let mut http10 = old;
        http10.version = 0;
        assert_eq!(refused(&http10, Access::default()).status, 400);
    }

    #[test]
    fn bad_query_values_are_400_with_a_reason() {
        let long_user = format!("/?user={}", "u".repeat(129));
        let long_channel = format!("/?channel={}", "c".repeat(201));
        for (target, needle) in [
            ("/?user=", "user must not be empty"),
            (
                "/?user=bad%0Aname",
                "user contains the control character U+000A",
            ),
            ("/?user=a%7Fb", "U+007F"),
            (&long_user, "user is 129 bytes long, the limit is 128 bytes"),
            ("/?user=a&user=b", "more than once"),
            ("/?channel=a|b", "channel contains '|'"),
            ("/?channel=a*", "reserved for grant patterns"),
            ("/?channel=a%23b", "reserved for server-to-user channels"),
            (
                &long_channel,
                "channel is 201 bytes long, the limit is 200 bytes",
            ),
            ("/?watch=a%20b", "watch contains ' '"),
            ("/?events=bogus", "events must be"),
            (
                "/?user=%zz",
                "user: malformed percent-encoding \"%zz\" at byte 0",
            ),
            ("/?user=ab%4", "\"%4\" at byte 2"),
            ("/?user=%ff", "not UTF-8"),
        ] {
            let response = refused(&request(target, ""), Access::default());
            assert_eq!(response.status, 400, "{target}");
            let body = String::from_utf8_lossy(&response.body);
            assert!(body.contains(needle), "{target}: {body}");
        }
    }

    #[test]
    fn origins_are_checked_only_when_configured_and_sent() {
        let allowed = ["http://good.example".to_owned()];
        let access = Access {
            allowed_origins: &allowed,
            ..Access::default()
        };
        assert!(validate(&request("/", "Origin: http://good.example\r\n"), access).is_ok());
        assert!(validate(&request("/", "Origin: HTTP://GOOD.example\r\n"), access).is_ok());
        assert!(
            validate(&request("/", ""), access).is_ok(),
            "no Origin: not a browser"
        );
        let response = refused(&request("/", "Origin: http://evil.example\r\n"), access);
        assert_eq!(response.status, 403);
        assert!(validate(
            &request("/", "Origin: http://evil.example\r\n"),
            Access::default()
        )
        .is_ok());
    }

    #[test]
    fn watching_needs_the_admin_token_when_one_is_set() {
        let upgrade = upgrade("/?watch=*&watch=lobby&watch=*");
        assert_eq!(upgrade.watch, vec!["*", "lobby"]);
        let access = Access {
            admin_token: Some("s3cret"),
            ..Access::default()
        };
        assert_eq!(refused(&request("/?watch=*", ""), access).status, 401);
        assert_eq!(
            refused(&request("/?watch=*&admin=wrong", ""), access).status,
            401
        );
        let upgrade = validate(&request("/?watch=*&admin=s3cret", ""), access).expect("admin");
        assert!(upgrade.admin);
        let plain =
            validate(&request("/?user=bob", ""), access).expect("no watch, no token needed");
        assert!(!plain.admin);
    }

    #[test]
    fn same_origin_is_the_requests_own_host() {
        for (origin, host, same) in [
            ("http://127.0.0.1:8080", Some("127.0.0.1:8080"), true),
            ("HTTPS://Rollcall.Example", Some("rollcall.example"), true),
            ("http://127.0.0.1:8081", Some("127.0.0.1:8080"), false),
            ("http://127.0.0.1:8080.evil", Some("127.0.0.1:8080"), false),
            ("ws://127.0.0.1:8080", Some("127.0.0.1:8080"), false),
            ("http://", Some(""), false),
            ("http://x", None, false),
            ("http://é", Some("é"), true),
            ("é", Some("x"), false),
        ] {
            assert_eq!(is_same_origin(origin, host), same, "{origin} {host:?}");
        }
    }

    #[cfg(feature = "tokens")]
    #[test]
    fn with_tokens_the_grant_bounds_watching_unless_admin() {
        let secret = b"s3cret";
        let now = 1_800_000_000;
        let grant = serde_json::json!({"sub": "g", "exp": now + 60, "channels": ["lobby"]});
        let token = crate::token::sign(&grant, secret);
        let tokens = Some(TokenPolicy {
            secret,
            now_ms: now * 1000,
            leeway: 5,
            max_meta_size: 1024,
        });
        let access = Access {
            tokens,
            ..Access::default()
        };
        let attempt = |target: String, access| validate(&request(&target, ""), access);
        assert!(attempt(format!("/?token={token}&watch=lobby"), access).is_ok());
        for watch in ["other", "*"] {
            let refused = attempt(format!("/?token={token}&watch={watch}"), access);
            assert_eq!(refused.expect_err(watch).status, 403, "{watch}");
        }
        let admin = Access {
            admin_token: Some("A"),
            ..access
        };
        let upgrade = attempt(format!("/?token={token}&watch=*&admin=A"), admin).expect("admin");
        assert!(upgrade.admin && upgrade.claims.is_some());
        // The admin token alone: a watcher without claims, joining nothing.
        let upgrade = attempt("/?watch=*&admin=A".into(), admin).expect("admin watcher");
        assert!(upgrade.admin && upgrade.claims.is_none() && upgrade.user.is_none());
        for (target, status) in [
            ("/?admin=A", 401),
            ("/?watch=*&admin=A&channel=x", 403),
            ("/?watch=*&admin=A&user=u", 400),
        ] {
            let refused = attempt(target.into(), admin).expect_err(target);
            assert_eq!(refused.status, status, "{target}");
        }
    }

    #[cfg(feature = "tokens")]
    #[test]
    fn with_tokens_the_token_names_the_user_and_bounds_the_url_channels() {
        let secret = b"s3cret";
        let now = 1_800_000_000;
        let token = crate::token::sign(
            &serde_json::json!({"sub": "alice", "exp": now + 60, "channels": ["lobby"]}),
            secret,
        );
        let policy = TokenPolicy {
            secret,
            now_ms: now * 1000,
            leeway: 5,
            max_meta_size: 1024,
        };
        let access = Access {
            tokens: Some(policy),
            ..Access::default()
        };
        let upgrade = validate(
            &request(&format!("/?token={token}&channel=lobby"), ""),
            access,
        )
        .expect("valid");
        assert_eq!(upgrade.user.as_deref(), Some("alice"));
        assert!(upgrade.claims.is_some());
        let refused_with = |target: String| refused(&request(&target, ""), access);
        assert_eq!(
            refused_with(format!("/?token={token}&channel=chat")).status,
            403
        );
        assert_eq!(
            refused_with(format!("/?token={token}&user=bob")).status,
            400
        );
        let missing = refused_with("/?channel=lobby".into());
        assert_eq!(missing.status, 401);
        assert!(String::from_utf8_lossy(&missing.body).starts_with("missing"));
        let forged = refused_with(format!("/?token={token}x"));
        assert!(
            String::from_utf8_lossy(&forged.body).starts_with("bad_signature")
                || forged.status == 401
        );
    }
}
