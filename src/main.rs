//! The `rollcall` binary: flags to a [`rollcall::Config`], a logger, and the event loop.
//! A thin layer over the library; the only place that reads the environment.

use std::process::ExitCode;

use lexopt::prelude::*;
use rollcall::rate::RateLimit;
use rollcall::units::{parse_duration, parse_size};
use rollcall::{Config, Endpoints, Server, Stop};

const USAGE: &str = "\
rollcall: a lean WebSocket presence server

USAGE:
    rollcall [OPTIONS]
    rollcall token --user USER --ttl DUR [--channels LIST] [--channel NAME]... [--meta JSON]
                   [--token-secret SECRET]
        print a connection token signed with the secret (for development and tests);
        LIST is comma-separated channel names or prefixes ending in `*` (lobby,chat.*);
        `rollcall token --help` describes each option

OPTIONS:
    --listen ADDR               IP address and port to listen on [default: 127.0.0.1:8080]
    --heartbeat-interval DUR    ping a connection silent this long [default: 30s]
    --heartbeat-timeout DUR     drop a connection silent this long [default: 60s]
    --handshake-timeout DUR     time to complete the upgrade [default: 10s]
    --leave-grace DUR           keep a dropped user present this long [default: 0s]
    --diff-interval DUR         least time between two diffs of a channel (events=diff)
                                [default: 100ms]
    --max-message-size SIZE     largest client message [default: 16KiB]
    --max-backlog SIZE          unsent bytes before a slow consumer is dropped [default: 256KiB]
    --max-meta-size SIZE        largest meta object, serialized [default: 1KiB]
    --read-buffer-size SIZE     input buffer per open connection [default: 128]
    --max-connections N         connection limit [default: open-file limit minus 32]
    --max-pending-handshakes N  connections still sending their request; at the limit, accepting
                                pauses and the rest wait in the listen backlog; while paused, a
                                request still incomplete after half --handshake-timeout is cut
                                (408), oldest first [default: 4096]
    --max-channels-per-conn N   channels one connection may join, and watch [default: 32]
    --max-members-per-channel N users one channel may hold [default: no limit]
    --rate-limit RATE           commands per connection: N/s or N/s:BURST, or off [default: 100/s:200]
    --default-channel NAME      channel joined when none is named [default: lobby]
    --client-publish            let clients publish to their channels
    --admin-token TOKEN         require this bearer token for /presence, /publish and watching
                                [env: ROLLCALL_ADMIN_TOKEN]
    --allowed-origin ORIGIN     accept WebSocket upgrades only from this Origin (repeatable)
    --token-secret SECRET       require a JWT (HS256) signed with SECRET in `token=`; its `sub`
                                is the user [env: ROLLCALL_TOKEN_SECRET]
    --token-leeway DUR          clock skew tolerated on exp/nbf/iat [default: 5s]
    --shutdown-timeout DUR      how long a graceful shutdown waits for peers [default: 5s]
    --max-body-size SIZE        largest HTTP request body [default: 64KiB]
    --redis URL                 join the cluster of nodes sharing this Redis:
                                redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] [env: ROLLCALL_REDIS]
    --node-ttl DUR              a cluster node silent this long is down [default: 15s]
    --node-id NAME              this node's id in the cluster, in channel-name characters
                                [default: random]
    --reuse-port                share the listen address with other processes (SO_REUSEPORT):
                                one process per core, in a cluster
    --endpoints LIST            operator endpoints to serve besides /healthz: a comma list of
                                presence, publish, dashboard, metrics, or all or none [default: all]
    --pusher-app ID:KEY:SECRET  serve this Pusher Channels app: WebSocket at /app/KEY, REST API
                                at /apps/ID (repeatable) [env: ROLLCALL_PUSHER_APPS, a comma list]
    --pusher-client-events on|off
                                client- events on private and presence channels [default: on]
    --pusher-max-presence-members N
                                members of one presence channel [default: 100]
    --pusher-max-user-info SIZE largest user_info of a presence member [default: 2KiB]
    --pusher-activity-timeout DUR
                                the activity_timeout Pusher clients are told [default: 30s]
    --pusher-max-event-data SIZE
                                largest event data, from clients or the REST API [default: 10KiB]
    --pusher-app-limit ID:NAME=VALUE
                                one app's own limit (repeatable): client_events, max_presence_
                                members, max_user_info, activity_timeout or max_event_data
    --webhook URL               post presence changes to this http:// or https:// URL in
                                Pusher's webhook format (repeatable; https:// needs the
                                webhook-tls cargo feature)
    --webhook-ca FILE           PEM CA certificates trusted for https:// webhooks besides the
                                compiled-in Mozilla roots (a private CA)
    --webhook-secret SECRET     signs native channels' webhooks (X-Pusher-Signature); a Pusher
                                app's are signed with its own secret [env: ROLLCALL_WEBHOOK_SECRET]
    --webhook-key KEY           X-Pusher-Key of native channels' webhooks [default: rollcall]
    --webhook-queue N           events one URL's queue holds; more are dropped and counted
                                [default: 10000]
    --last-seen-capacity N      users whose last-seen time is remembered for GET /users/ID, the
                                least recently seen forgotten first [default: 100000]
    --last-seen-ttl DUR         in a cluster, how long Redis keeps a user's last-seen time
                                after its last leave [default: 720h, 30 days]
    -h, --help                  print this help
    -V, --version               print the version

DUR is a whole number with ms, s, m or h (500ms, 30s, 2m). SIZE is bytes, KiB or MiB
(65536, 64KiB). Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=debug) to change the level.
The protocol is described in docs/protocol.md.
";

const TOKEN_USAGE: &str = "\
rollcall token: print a connection token (a JWT signed with HS256), for development and tests

USAGE:
    rollcall token --user USER --ttl DUR [--channels LIST] [--meta JSON] [--token-secret SECRET]

OPTIONS:
    --user USER             the user the token admits (its `sub`): any text of 1 to 128
                            bytes without control characters (auth0|123, Jane Doe)
    --ttl DUR               how long the token is valid, at least 1s; `exp` is in whole
                            seconds, so a part of a second rounds up (1500ms gives 2s)
    --channels LIST         the channels it may join: comma-separated names or prefixes
                            ending in `*` (lobby,room:*) [default: every channel]
    --channel NAME          one more entry, as it is: for a name holding a comma
                            (private-a=b,c); may be repeated, and given with --channels
    --meta JSON             a JSON object: the user's meta when a join gives none
    --token-secret SECRET   the secret the server checks tokens with
                            [env: ROLLCALL_TOKEN_SECRET]
    -h, --help              print this help

DUR is a whole number with ms, s, m or h (1500ms, 30s, 2m, 1h). Claims: docs/protocol.md §14.
";

enum Invocation {
    Serve(Box<Config>),
    /// `rollcall token ...`: print a signed connection token.
    Mint(String),
    /// Print this usage text (the server's, or a subcommand's).
    Help(&'static str),
    Version,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let config = match parse_args() {
        Ok(Invocation::Serve(config)) => *config,
        Ok(Invocation::Mint(token)) => {
            println!("{token}");
            return ExitCode::SUCCESS;
        }
        Ok(Invocation::Help(usage)) => {
            print!("{usage}");
            return ExitCode::SUCCESS;
        }
        Ok(Invocation::Version) => {
            println!("rollcall {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("rollcall: {error}\nTry 'rollcall --help'.");
            return ExitCode::from(2);
        }
    };
    let mut server = match Server::bind(config) {
        Ok(server) => server,
        Err(error) => {
            eprintln!("rollcall: {error}");
            return ExitCode::from(1);
        }
    };
    if let Err(error) = server.shutdown_on_signals() {
        eprintln!("rollcall: cannot install the signal handlers: {error}");
        return ExitCode::from(1);
    }
    match server.run() {
        Ok(Stop::Graceful) => ExitCode::SUCCESS,
        // 128 + SIGINT: the conventional status of a process stopped by a signal.
        Ok(Stop::Forced) => ExitCode::from(130),
        Err(error) => {
            eprintln!("rollcall: event loop failed: {error}");
            ExitCode::from(1)
        }
    }
}

fn parse_args() -> Result<Invocation, String> {
    let admin_token = std::env::var("ROLLCALL_ADMIN_TOKEN").ok();
    let token_secret = std::env::var("ROLLCALL_TOKEN_SECRET").ok();
    let redis = match std::env::var("ROLLCALL_REDIS") {
        Ok(url) if !url.is_empty() => {
            Some(url.parse().map_err(|e| format!("ROLLCALL_REDIS: {e}"))?)
        }
        _ => None,
    };
    let mut pusher = rollcall::pusher::PusherSettings::default();
    if let Ok(list) = std::env::var("ROLLCALL_PUSHER_APPS") {
        pusher.apps = rollcall::pusher::PusherSettings::parse_list(&list)
            .map_err(|e| format!("ROLLCALL_PUSHER_APPS: {e}"))?;
    }
    let mut config = Config::default()
        .admin_token(admin_token)
        .token_secret(token_secret)
        .redis(redis);
    let mut allowed_origins = Vec::new();
    let mut app_limits = Vec::new();
    let mut webhooks = rollcall::webhook::WebhookSettings {
        secret: std::env::var("ROLLCALL_WEBHOOK_SECRET")
            .ok()
            .filter(|s| !s.is_empty()),
        ..Default::default()
    };
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        let flag = match arg {
            Long(name) => format!("--{name}"),
            Short(c) => format!("-{c}"),
            Value(value) if value == "token" => return mint(&mut parser, config.token_secret),
            Value(value) => return Err(format!("unexpected argument {value:?}")),
        };
        let mut value = || -> Result<String, String> {
            let value = parser.value().map_err(|e| e.to_string())?;
            value
                .into_string()
                .map_err(|v| format!("{flag}: {v:?} is not valid UTF-8"))
        };
        let invalid = |e: &dyn std::fmt::Display| format!("{flag}: {e}");
        config = match flag.as_str() {
            "-h" | "--help" => return Ok(Invocation::Help(USAGE)),
            "-V" | "--version" => return Ok(Invocation::Version),
            "--listen" => {
                let text = value()?;
                let address = text.parse().map_err(|_| {
                    invalid(&format!("{text:?} is not an address like 127.0.0.1:8080"))
                })?;
                config.listen(address)
            }
            "--heartbeat-interval" => {
                config.heartbeat_interval(parse_duration(&value()?).map_err(|e| invalid(&e))?)
            }
            "--heartbeat-timeout" => {
                config.heartbeat_timeout(parse_duration(&value()?).map_err(|e| invalid(&e))?)
            }
            "--handshake-timeout" => {
                config.handshake_timeout(parse_duration(&value()?).map_err(|e| invalid(&e))?)
            }
            "--leave-grace" => {
                config.leave_grace(parse_duration(&value()?).map_err(|e| invalid(&e))?)
            }
            "--diff-interval" => {
                config.diff_interval(parse_duration(&value()?).map_err(|e| invalid(&e))?)
            }
            "--max-message-size" => {
                config.max_message_size(parse_size(&value()?).map_err(|e| invalid(&e))?)
            }
            "--max-backlog" => config.max_backlog(parse_size(&value()?).map_err(|e| invalid(&e))?),
            "--read-buffer-size" => {
                config.read_buffer_size(parse_size(&value()?).map_err(|e| invalid(&e))?)
            }
            "--max-meta-size" => {
                config.max_meta_size(parse_size(&value()?).map_err(|e| invalid(&e))?)
            }
            "--max-connections" => config.max_connections(Some(count(&flag, value()?)?)),
            "--default-channel" => config.default_channel(value()?),
            "--client-publish" => config.client_publish(true),
            "--max-pending-handshakes" => config.max_pending_handshakes(count(&flag, value()?)?),
            "--max-channels-per-conn" => config.max_channels_per_conn(count(&flag, value()?)?),
            "--max-members-per-channel" => {
                config.max_members_per_channel(Some(count(&flag, value()?)?))
            }
            "--rate-limit" => match value()?.as_str() {
                "off" => config.rate_limit(None),
                text => config.rate_limit(Some(RateLimit::parse(text).map_err(|e| invalid(&e))?)),
            },
            "--admin-token" => config.admin_token(Some(value()?)),
            "--endpoints" => {
                config.endpoints(Endpoints::parse(&value()?).map_err(|e| invalid(&e))?)
            }
            "--token-secret" => config.token_secret(Some(value()?)),
            "--token-leeway" => {
                config.token_leeway(parse_duration(&value()?).map_err(|e| invalid(&e))?)
            }
            "--allowed-origin" => {
                allowed_origins.push(value()?);
                config
            }
            "--shutdown-timeout" => {
                config.shutdown_timeout(parse_duration(&value()?).map_err(|e| invalid(&e))?)
            }
            "--max-body-size" => {
                config.max_body_size(parse_size(&value()?).map_err(|e| invalid(&e))?)
            }
            "--redis" => config.redis(Some(value()?.parse().map_err(|e| invalid(&e))?)),
            "--node-ttl" => config.node_ttl(parse_duration(&value()?).map_err(|e| invalid(&e))?),
            "--node-id" => config.node_id(Some(value()?)),
            "--reuse-port" => config.reuse_port(true),
            "--pusher-app" => {
                let app = rollcall::pusher::App::parse(&value()?).map_err(|e| invalid(&e))?;
                pusher.apps.push(app);
                config
            }
            "--pusher-client-events" => {
                pusher_default(&mut pusher, "client_events", value()?)?;
                config
            }
            "--pusher-max-presence-members" => {
                pusher_default(&mut pusher, "max_presence_members", value()?)?;
                config
            }
            "--pusher-max-user-info" => {
                pusher_default(&mut pusher, "max_user_info", value()?)?;
                config
            }
            "--pusher-activity-timeout" => {
                pusher_default(&mut pusher, "activity_timeout", value()?)?;
                config
            }
            "--pusher-max-event-data" => {
                pusher_default(&mut pusher, "max_event_data", value()?)?;
                config
            }
            "--pusher-app-limit" => {
                app_limits.push(value()?);
                config
            }
            "--last-seen-capacity" => config.last_seen_capacity(count(&flag, value()?)?),
            "--last-seen-ttl" => {
                config.last_seen_ttl(parse_duration(&value()?).map_err(|e| invalid(&e))?)
            }
            "--webhook" => {
                let url = value()?.parse().map_err(|e| invalid(&e))?;
                webhooks.urls.push(url);
                config
            }
            "--webhook-ca" => {
                webhooks.ca = Some(value()?.into());
                config
            }
            "--webhook-secret" => {
                webhooks.secret = Some(value()?);
                config
            }
            "--webhook-key" => {
                webhooks.key = value()?;
                config
            }
            "--webhook-queue" => {
                webhooks.queue = count(&flag, value()?)?;
                config
            }
            _ => return Err(format!("unknown option {flag}")),
        };
    }
    if !allowed_origins.is_empty() {
        config = config.allowed_origins(allowed_origins);
    }
    // An app's own limits start from the defaults, wherever the flags came.
    for limit in app_limits {
        pusher
            .set_app_limit(&limit)
            .map_err(|e| format!("--pusher-app-limit: {e}"))?;
    }
    config = config.pusher(pusher).webhooks(webhooks);
    config.validate().map_err(|e| e.to_string())?;
    Ok(Invocation::Serve(Box::new(config)))
}

/// Sets a default limit of the Pusher apps (`--pusher-*`).
fn pusher_default(
    pusher: &mut rollcall::pusher::PusherSettings,
    name: &str,
    value: String,
) -> Result<(), String> {
    pusher
        .defaults
        .set(name, &value)
        .map_err(|e| format!("--pusher-{}: {e}", name.replace('_', "-")))
}

/// A whole number for `flag`.
fn count(flag: &str, text: String) -> Result<usize, String> {
    text.parse()
        .map_err(|_| format!("{flag}: {text:?} is not a whole number"))
}

/// The `--ttl` of `rollcall token`, in whole seconds: `exp` is a whole second, so a TTL
/// under one second would make `exp == iat`, and a part of a second rounds up, never down,
/// so the token lives at least as long as asked.
fn token_ttl(text: &str) -> Result<u64, String> {
    let ttl = parse_duration(text).map_err(|e| format!("--ttl: {e}"))?;
    if ttl.as_secs() == 0 {
        return Err(format!(
            "--ttl: {text:?} is under one second; a token's `exp` is in whole seconds"
        ));
    }
    Ok(ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0))
}

/// `rollcall token --user U --ttl DUR [--channels LIST] [--meta JSON] [--token-secret S]`.
fn mint(parser: &mut lexopt::Parser, env_secret: Option<String>) -> Result<Invocation, String> {
    let (mut user, mut ttl, mut meta, mut secret) = (None, None, None, env_secret);
    let mut entries: Option<Vec<String>> = None;
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        let flag = match arg {
            Long(name) => format!("--{name}"),
            Short(c) => format!("-{c}"),
            Value(value) => return Err(format!("token: unexpected argument {value:?}")),
        };
        // Every other option takes a value: asking for one would call `--help` "missing".
        if flag == "-h" || flag == "--help" {
            return Ok(Invocation::Help(TOKEN_USAGE));
        }
        let value = parser.value().map_err(|e| e.to_string())?;
        let value = value
            .into_string()
            .map_err(|v| format!("{flag}: {v:?} is not valid UTF-8"))?;
        match flag.as_str() {
            "--user" => user = Some(value),
            "--ttl" => ttl = Some(token_ttl(&value)?),
            "--channels" => entries.get_or_insert_default().extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|e| !e.is_empty())
                    .map(str::to_owned),
            ),
            "--channel" => entries.get_or_insert_default().push(value),
            "--meta" => meta = Some(value),
            "--token-secret" => secret = Some(value),
            _ => return Err(format!("token: unknown option {flag}")),
        }
    }
    let secret = secret
        .filter(|s| !s.is_empty())
        .ok_or("token: no secret: give --token-secret or set ROLLCALL_TOKEN_SECRET")?;
    let user = user.ok_or("token: --user is required")?;
    rollcall::names::validate_user(&user).map_err(|e| format!("--user: user {e}"))?;
    let ttl = ttl.ok_or("token: --ttl is required (e.g. 1h)")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let mut claims = serde_json::json!({"sub": user, "iat": now, "exp": now + ttl});
    if let Some(entries) = entries {
        // An empty grant allows nothing: a token no join accepts is a mistake, not a wish.
        if entries.is_empty() {
            return Err(
                "--channels: names no channel; give names or prefixes ending in `*` \
                 (lobby,room:*), or leave --channels out to allow every channel"
                    .into(),
            );
        }
        rollcall::token::ChannelGrant::parse(entries.iter().map(String::as_str))
            .map_err(|e| format!("--channels: {e}"))?;
        claims["channels"] = serde_json::json!(entries);
    }
    if let Some(meta) = meta {
        let value: serde_json::Value =
            serde_json::from_str(&meta).map_err(|e| format!("--meta: {e}"))?;
        if !value.is_object() {
            return Err("--meta: must be a JSON object".into());
        }
        claims["meta"] = value;
    }
    Ok(Invocation::Mint(rollcall::token::sign(
        &claims,
        secret.as_bytes(),
    )))
}
