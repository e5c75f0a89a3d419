//! Server configuration: one struct with documented defaults, shared by the binary's flags
//! and by hosts that embed the library.
//!
//! Defaults are sized for many idle connections; each field that costs memory per connection
//! says how much. [`Config::validate`] is the one place that checks ranges and relations.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::cluster::RedisAddress;
use crate::names::{self, NameError};
use crate::pusher::PusherSettings;
use crate::rate::RateLimit;
use crate::units::format_duration;
use crate::webhook::WebhookSettings;

/// Everything the server needs to know before it binds.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Address to listen on. Default `127.0.0.1:8080` (loopback: put a proxy in front to expose it).
    pub listen: SocketAddr,
    /// Silence after which the server sends a WebSocket Ping. Default 30 s.
    pub heartbeat_interval: Duration,
    /// Silence after which a connection is dropped with reason `timeout`. Default 60 s.
    pub heartbeat_timeout: Duration,
    /// Time a new connection has to complete its HTTP upgrade. Default 10 s.
    pub handshake_timeout: Duration,
    /// How long a user whose last connection dropped stays present. Default 0 s.
    pub leave_grace: Duration,
    /// The least time between two `diff`s of one channel (`events=diff`): changes within it
    /// are coalesced into the next. Default 100 ms. Costs one pending diff per busy channel
    /// (a map from user to its latest change), never anything per connection.
    pub diff_interval: Duration,
    /// Largest message accepted from a client; a larger one closes it with 1009. Default 16 KiB.
    /// Costs nothing until a message that large arrives.
    pub max_message_size: usize,
    /// Bytes allowed to pile up unsent for one connection before it is dropped with reason
    /// `slow_consumer`; a single larger message (a big channel's `state`) still goes to a
    /// connection with nothing waiting, and the backlog counts beside it while it waits.
    /// Default 256 KiB. Costs nothing for a connection that keeps up.
    pub max_backlog: usize,
    /// Largest `meta` object, serialized. Default 1 KiB. Stored once per user per channel.
    pub max_meta_size: usize,
    /// Most connections (open or handshaking) at once; `None` means the open-file soft limit
    /// minus a margin for the listener and the poll.
    pub max_connections: Option<usize>,
    /// Channel joined when a connection names none. Default `lobby`.
    pub default_channel: String,
    /// Whether clients may `publish` to their channels. Default false.
    pub client_publish: bool,
    /// Bytes tungstenite allocates per open connection for input and reads per system call.
    /// Default 128: a Pong, a `ping`, `who`, `leave` or a `join` with a small meta arrive in
    /// one read; a larger message takes one read per 128 bytes (a 16 KiB one, 128 reads).
    /// It is the largest item of an idle connection's footprint that we choose, so it is kept
    /// small: 256 costs 121 more bytes per idle connection (measured at N = 15,000).
    pub read_buffer_size: usize,
    /// When set, `/presence*`, `/publish` and watching require this token
    /// (`Authorization: Bearer TOKEN`, or `admin=TOKEN` on a watching upgrade). Default none.
    pub admin_token: Option<String>,
    /// When not empty, a WebSocket upgrade whose `Origin` is not listed gets 403. Default
    /// empty (any origin).
    pub allowed_origins: Vec<String>,
    /// How long a graceful shutdown waits for peers to answer their Close. Default 5 s.
    pub shutdown_timeout: Duration,
    /// Largest HTTP request body (`POST /publish`); larger gets 413. Default 64 KiB, held
    /// only while the request is read.
    pub max_body_size: usize,
    /// Conformance testing only: echo every data message back instead of speaking the
    /// presence protocol (no welcome, no channels). `examples/echo.rs` runs the Autobahn
    /// test suite's cases against the server's own loop and connection handling this way.
    /// Default false.
    pub echo: bool,
    /// Commands each connection may send: `per_second` on average, `burst` at once; `None`
    /// for no limit. Default 100/s with bursts of 200. Excess commands get `rate_limited`;
    /// more than a burst of refusals in a row closes the connection (1008). 8 bytes per
    /// connection.
    pub rate_limit: Option<RateLimit>,
    /// Channels one connection may be subscribed to. Default 32.
    pub max_channels_per_conn: usize,
    /// Users one channel may hold; `None` for no limit (the default).
    pub max_members_per_channel: Option<usize>,
    /// Connections whose HTTP request is still arriving, at most; at the limit accepting
    /// pauses and new connections wait in the kernel's listen backlog. Default 4096, as deep
    /// as that backlog: a pause at a reconnect storm's peak overflows the kernel's queue,
    /// whose overflow then waits for TCP's retransmission (1 s and more), while a slow-loris
    /// attack holds at most this many request heads (8 KiB each) and is cut (408) meanwhile.
    pub max_pending_handshakes: usize,
    /// When set, an upgrade must carry a JWT signed with this secret (HS256) in its `token`
    /// query parameter; the token's `sub` is the user and its `channels` bound what the
    /// connection may join. Default none (anyone may claim any user id).
    pub token_secret: Option<String>,
    /// Clock skew tolerated on a token's `exp`, `nbf` and `iat`. Default 5 s.
    pub token_leeway: Duration,
    /// When set, the server is a node of the cluster sharing this Redis: presence is the
    /// union over nodes and publications reach every node (see the crate's cluster module).
    /// Default none (a single node). Costs nothing per connection; about 100 bytes per
    /// cluster-wide member for the node's copy of the presence.
    pub redis: Option<RedisAddress>,
    /// In a cluster: a node that stopped refreshing its liveness (it refreshes every quarter
    /// of this) is declared down within this time, and its users leave with reason
    /// `node_down`. Default 15 s.
    pub node_ttl: Duration,
    /// In a cluster: this node's id, in the characters of a channel name (it goes into
    /// Redis keys and notes as it is). Default: random.
    pub node_id: Option<String>,
    /// Sets `SO_REUSEPORT` on the listener, so several processes (one per core) can bind the
    /// same address and share the incoming connections. Default false.
    pub reuse_port: bool,
    /// The operator endpoints served beside the WebSocket (`/healthz` always is). Default:
    /// every one, and without [`Config::admin_token`] `/presence` and `/publish` are open to
    /// anyone who reaches the port.
    pub endpoints: Endpoints,
    /// Pusher Channels compatibility: the apps served at `/app/{key}` (WebSocket) and
    /// `/apps/{id}/...` (REST API), and their limits. Default: no app (off).
    pub pusher: PusherSettings,
    /// Webhooks: the `http://` (and, with the `webhook-tls` feature, `https://`) URLs told of
    /// presence changes in Pusher's format, their signing and their queue (see the crate's
    /// `webhook` module). Default: none (off, and no cost).
    pub webhooks: WebhookSettings,
    /// Users whose last-seen time is remembered (`GET /users/{id}`), the least recently seen
    /// forgotten first. Default 100,000 (about 150 bytes each, only for users seen).
    pub last_seen_capacity: usize,
    /// In a cluster, how long Redis keeps a user's last-seen time after its last leave
    /// (each key expires on its own). Default 30 days; one key of about 100 bytes per user
    /// seen within it (see docs/webhooks.md).
    pub last_seen_ttl: Duration,
}

/// Which operator endpoint groups a server answers; the others are 404.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoints {
    /// `GET /presence` and `GET /presence/CHANNEL`.
    pub presence: bool,
    /// `POST /publish`.
    pub publish: bool,
    /// The live dashboard at `GET /` (the page is in builds with the `dashboard` feature
    /// only: without it `/` is a 404 either way).
    pub dashboard: bool,
    /// `GET /metrics`.
    pub metrics: bool,
}

impl Endpoints {
    /// Every endpoint (the default).
    pub const ALL: Endpoints = Endpoints {
        presence: true,
        publish: true,
        dashboard: true,
        metrics: true,
    };

    /// None but `/healthz` (a host that answers presence questions itself).
    pub const NONE: Endpoints = Endpoints {
        presence: false,
        publish: false,
        dashboard: false,
        metrics: false,
    };

    /// Parses a comma-separated list of `presence`, `publish`, `dashboard`, `metrics`, or
    /// `all` or `none`.
    pub fn parse(text: &str) -> Result<Endpoints, String> {
        match text {
            "all" => return Ok(Endpoints::ALL),
            "none" => return Ok(Endpoints::NONE),
            _ => {}
        }
        let mut endpoints = Endpoints::NONE;
        for name in text.split(',') {
            let flag = match name.trim() {
                "presence" => &mut endpoints.presence,
                "publish" => &mut endpoints.publish,
                "dashboard" => &mut endpoints.dashboard,
                "metrics" => &mut endpoints.metrics,
                other => {
                    return Err(format!(
                        "unknown endpoint {other:?}: expected presence, publish, dashboard, metrics, all or none"
                    ))
                }
            };
            *flag = true;
        }
        Ok(endpoints)
    }
}

impl Default for Endpoints {
    fn default() -> Self {
        Endpoints::ALL
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            heartbeat_interval: Duration::from_secs(30),
            heartbeat_timeout: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(10),
            leave_grace: Duration::ZERO,
            diff_interval: Duration::from_millis(100),
            max_message_size: 16 << 10,
            max_backlog: 256 << 10,
            max_meta_size: 1 << 10,
            max_connections: None,
            default_channel: "lobby".to_owned(),
            client_publish: false,
            read_buffer_size: 128,
            admin_token: None,
            allowed_origins: Vec::new(),
            shutdown_timeout: Duration::from_secs(5),
            max_body_size: 64 << 10,
            echo: false,
            rate_limit: Some(RateLimit {
                per_second: 100,
                burst: 200,
            }),
            max_channels_per_conn: 32,
            max_members_per_channel: None,
            max_pending_handshakes: 4096,
            token_secret: None,
            token_leeway: Duration::from_secs(5),
            redis: None,
            node_ttl: Duration::from_secs(15),
            node_id: None,
            reuse_port: false,
            endpoints: Endpoints::ALL,
            pusher: PusherSettings::default(),
            webhooks: WebhookSettings::default(),
            last_seen_capacity: 100_000,
            last_seen_ttl: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty),* $(,)?) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, value: $ty) -> Self {
                self.$name = value;
                self
            }
        )*
    };
}

impl Config {
    setters! {
        /// Sets [`Config::listen`].
        listen: SocketAddr,
        /// Sets [`Config::heartbeat_interval`].
        heartbeat_interval: Duration,
        /// Sets [`Config::heartbeat_timeout`].
        heartbeat_timeout: Duration,
        /// Sets [`Config::handshake_timeout`].
        handshake_timeout: Duration,
        /// Sets [`Config::leave_grace`].
        leave_grace: Duration,
        /// Sets [`Config::diff_interval`].
        diff_interval: Duration,
        /// Sets [`Config::max_message_size`].
        max_message_size: usize,
        /// Sets [`Config::max_backlog`].
        max_backlog: usize,
        /// Sets [`Config::max_meta_size`].
        max_meta_size: usize,
        /// Sets [`Config::max_connections`].
        max_connections: Option<usize>,
        /// Sets [`Config::default_channel`].
        default_channel: String,
        /// Sets [`Config::client_publish`].
        client_publish: bool,
        /// Sets [`Config::read_buffer_size`].
        read_buffer_size: usize,
        /// Sets [`Config::admin_token`].
        admin_token: Option<String>,
        /// Sets [`Config::allowed_origins`].
        allowed_origins: Vec<String>,
        /// Sets [`Config::shutdown_timeout`].
        shutdown_timeout: Duration,
        /// Sets [`Config::max_body_size`].
        max_body_size: usize,
        /// Sets [`Config::echo`].
        echo: bool,
        /// Sets [`Config::rate_limit`].
        rate_limit: Option<RateLimit>,
        /// Sets [`Config::max_channels_per_conn`].
        max_channels_per_conn: usize,
        /// Sets [`Config::max_members_per_channel`].
        max_members_per_channel: Option<usize>,
        /// Sets [`Config::max_pending_handshakes`].
        max_pending_handshakes: usize,
        /// Sets [`Config::token_secret`].
        token_secret: Option<String>,
        /// Sets [`Config::token_leeway`].
        token_leeway: Duration,
        /// Sets [`Config::redis`].
        redis: Option<RedisAddress>,
        /// Sets [`Config::node_ttl`].
        node_ttl: Duration,
        /// Sets [`Config::node_id`].
        node_id: Option<String>,
        /// Sets [`Config::reuse_port`].
        reuse_port: bool,
        /// Sets [`Config::endpoints`].
        endpoints: Endpoints,
        /// Sets [`Config::pusher`].
        pusher: PusherSettings,
        /// Sets [`Config::webhooks`].
        webhooks: WebhookSettings,
        /// Sets [`Config::last_seen_capacity`].
        last_seen_capacity: usize,
        /// Sets [`Config::last_seen_ttl`].
        last_seen_ttl: Duration,
    }

    /// Checks every range and relation; the server refuses to start on an error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.heartbeat_interval.is_zero() {
            return Err(ConfigError::ZeroDuration("heartbeat interval"));
        }
        if self.handshake_timeout.is_zero() {
            return Err(ConfigError::ZeroDuration("handshake timeout"));
        }
        if self.diff_interval.is_zero() {
            return Err(ConfigError::ZeroDuration("diff interval"));
        }
        if self.heartbeat_timeout <= self.heartbeat_interval {
            return Err(ConfigError::TimeoutNotAfterInterval {
                interval: self.heartbeat_interval,
                timeout: self.heartbeat_timeout,
            });
        }
        for (what, value, min) in [
            ("max message size", self.max_message_size, 128),
            ("max backlog", self.max_backlog, 1 << 10),
            ("max meta size", self.max_meta_size, 2),
            ("read buffer size", self.read_buffer_size, 64),
        ] {
            if value < min {
                return Err(ConfigError::TooSmall { what, value, min });
            }
        }
        if self.admin_token.as_deref() == Some("") || self.token_secret.as_deref() == Some("") {
            return Err(ConfigError::EmptySecret);
        }
        for (what, value) in [
            (
                "max channels per connection",
                Some(self.max_channels_per_conn),
            ),
            ("max members per channel", self.max_members_per_channel),
            ("max pending handshakes", Some(self.max_pending_handshakes)),
        ] {
            if value == Some(0) {
                return Err(ConfigError::TooSmall {
                    what,
                    value: 0,
                    min: 1,
                });
            }
        }
        if self.max_connections == Some(0) {
            return Err(ConfigError::TooSmall {
                what: "max connections",
                value: 0,
                min: 1,
            });
        }
        if self.node_ttl < MIN_NODE_TTL {
            return Err(ConfigError::NodeTtlTooShort(self.node_ttl));
        }
        if let Some(node) = &self.node_id {
            // A node id goes into Redis keys and notes: the channel alphabet keeps it plain.
            names::validate_channel(node).map_err(ConfigError::NodeId)?;
        }
        self.check_features()?;
        self.pusher.validate().map_err(ConfigError::Pusher)?;
        // Without the feature `check_features` has refused any webhook URL, and settings
        // without a URL are never checked: the checks would be dead code in a host.
        if cfg!(feature = "webhooks") {
            self.webhooks
                .validate(!self.pusher.apps.is_empty())
                .map_err(ConfigError::Webhook)?;
        }
        names::validate_channel(&self.default_channel).map_err(ConfigError::DefaultChannel)
    }

    /// Refuses the settings whose feature this build leaves out (a host's
    /// `default-features = false`), rather than ignoring them.
    fn check_features(&self) -> Result<(), ConfigError> {
        let wanted = [
            (
                "Pusher apps",
                "pusher",
                cfg!(feature = "pusher"),
                !self.pusher.apps.is_empty(),
            ),
            (
                "webhook URLs",
                "webhooks",
                cfg!(feature = "webhooks"),
                self.webhooks.enabled(),
            ),
            (
                "a Redis address",
                "cluster",
                cfg!(feature = "cluster"),
                self.redis.is_some(),
            ),
            (
                "a token secret",
                "tokens",
                cfg!(feature = "tokens"),
                self.token_secret.is_some(),
            ),
        ];
        match wanted.iter().find(|(_, _, built, used)| *used && !*built) {
            Some(&(setting, feature, ..)) => Err(ConfigError::FeatureLeftOut { setting, feature }),
            None => Ok(()),
        }
    }
}

/// The shortest `node_ttl`: a node refreshes every quarter of it, and a refresh must fit in
/// one Redis round trip with room to spare.
pub const MIN_NODE_TTL: Duration = Duration::from_millis(300);

/// A configuration the server cannot run with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// A duration that must be positive is zero.
    ZeroDuration(&'static str),
    /// The heartbeat timeout must exceed the interval, or no Ping is ever sent before a drop.
    TimeoutNotAfterInterval {
        /// The configured interval.
        interval: Duration,
        /// The configured timeout.
        timeout: Duration,
    },
    /// A size or count below its minimum.
    TooSmall {
        /// Which setting.
        what: &'static str,
        /// The configured value.
        value: usize,
        /// The smallest value allowed.
        min: usize,
    },
    /// The default channel is not a valid channel name.
    DefaultChannel(NameError),
    /// An empty admin token or token secret would protect nothing.
    EmptySecret,
    /// The node TTL is below [`MIN_NODE_TTL`].
    NodeTtlTooShort(Duration),
    /// The node id is not a valid name.
    NodeId(NameError),
    /// The Pusher apps or limits are invalid.
    Pusher(String),
    /// The webhook settings are invalid.
    Webhook(String),
    /// A setting needs a cargo feature this build of rollcall leaves out.
    FeatureLeftOut {
        /// The setting, as a person names it (`Pusher apps`).
        setting: &'static str,
        /// The feature (`pusher`, `webhooks`, `cluster`).
        feature: &'static str,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::ZeroDuration(what) => write!(f, "{what} must be greater than 0"),
            ConfigError::TimeoutNotAfterInterval { interval, timeout } => write!(
                f,
                "heartbeat timeout ({}) must be longer than the heartbeat interval ({})",
                format_duration(*timeout),
                format_duration(*interval)
            ),
            ConfigError::TooSmall { what, value, min } => {
                write!(f, "{what} is {value}, the minimum is {min}")
            }
            ConfigError::DefaultChannel(error) => write!(f, "default channel: {error}"),
            ConfigError::EmptySecret => {
                write!(f, "the admin token and the token secret must not be empty")
            }
            ConfigError::NodeTtlTooShort(ttl) => write!(
                f,
                "node TTL is {}, the minimum is {}",
                format_duration(*ttl),
                format_duration(MIN_NODE_TTL)
            ),
            ConfigError::NodeId(error) => write!(f, "node id: {error}"),
            ConfigError::Pusher(error) => write!(f, "pusher: {error}"),
            ConfigError::Webhook(error) => write!(f, "webhook: {error}"),
            ConfigError::FeatureLeftOut { setting, feature } => write!(
                f,
                "{setting} need rollcall's `{feature}` feature, which this build leaves out"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let config = Config::default();
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.max_backlog, 256 * 1024);
        assert_eq!(config.max_message_size, 16 * 1024);
        assert!(config.read_buffer_size <= 1024);
    }

    #[test]
    fn timeout_must_exceed_interval() {
        let config = Config::default()
            .heartbeat_interval(Duration::from_secs(5))
            .heartbeat_timeout(Duration::from_secs(5));
        let error = config.validate().expect_err("equal durations");
        assert_eq!(
            error.to_string(),
            "heartbeat timeout (5s) must be longer than the heartbeat interval (5s)"
        );
    }

    #[test]
    fn sizes_have_minimums() {
        let error = Config::default()
            .max_backlog(10)
            .validate()
            .expect_err("tiny backlog");
        assert_eq!(error.to_string(), "max backlog is 10, the minimum is 1024");
        assert!(Config::default()
            .max_connections(Some(0))
            .validate()
            .is_err());
    }

    #[test]
    fn default_channel_follows_name_rules() {
        let error = Config::default()
            .default_channel("no spaces".into())
            .validate();
        assert!(matches!(error, Err(ConfigError::DefaultChannel(_))));
    }

    #[test]
    fn a_feature_left_out_is_refused_at_start_by_its_name() {
        let pusher = Config::default().pusher(PusherSettings {
            apps: PusherSettings::parse_list("1:key:secret").expect("apps"),
            ..PusherSettings::default()
        });
        let webhooks = Config::default().webhooks(WebhookSettings {
            urls: vec!["http://127.0.0.1:9/hooks".parse().expect("url")],
            secret: Some("s".into()),
            ..WebhookSettings::default()
        });
        let cluster = Config::default().redis(Some("redis://127.0.0.1:9".parse().expect("url")));
        let tokens = Config::default().token_secret(Some("s".into()));
        for (config, feature, built) in [
            (pusher, "pusher", cfg!(feature = "pusher")),
            (webhooks, "webhooks", cfg!(feature = "webhooks")),
            (cluster, "cluster", cfg!(feature = "cluster")),
            (tokens, "tokens", cfg!(feature = "tokens")),
        ] {
            match config.validate() {
                Ok(()) => assert!(built, "{feature} accepted without its feature"),
                Err(error) => {
                    assert!(!built, "{feature}: {error}");
                    let told = error.to_string();
                    assert!(told.contains(&format!("`{feature}` feature")), "{told}");
                }
            }
        }
    }
}
