//! The operator endpoints served on the WebSocket port: health, metrics, presence, publish
//! and the live dashboard. Each turns a routed request into a [`Response`]; nothing here
//! blocks or waits (the request, body included, is complete before it is served).

use std::time::UNIX_EPOCH;

use serde_json::error::Category;
use serde_json::Value;

use super::Server;
use crate::http::route::is_api_path;
use crate::http::{constant_time_eq, Request, Response, Route};
use crate::metrics::{self, ClusterGauges, Gauges};
use crate::model::{Json, JsonStr};
use crate::names;
use crate::protocol::event;
use crate::protocol::fields::Fields;
use crate::roster::ConnId;
use crate::wheel::Millis;

/// The live dashboard: one self-contained page (no CDN, no build step). Feature `dashboard`:
/// without it `GET /` is an unknown path (404).
#[cfg(feature = "dashboard")]
const DASHBOARD: Option<&str> = Some(include_str!("../dashboard.html"));
#[cfg(not(feature = "dashboard"))]
const DASHBOARD: Option<&str> = None;

/// The browser client (clients/js/rollcall.js), served at `GET /rollcall.js`. Feature
/// `js-client` (which `dashboard` implies: the page imports it): without it the path is
/// unknown (404), and the compiler drops the script's bytes with their one reader.
const CLIENT: &str = include_str!("../../clients/js/rollcall.js");

/// The client's strong ETag (RFC 9110 §8.8.3), a hash of its bytes computed at compile time:
/// it changes with the content and with nothing else (not with restarts or nodes).
const CLIENT_ETAG: &str = match std::str::from_utf8(&etag(CLIENT.as_bytes())) {
    Ok(tag) => tag,
    Err(_) => panic!("an ETag is ASCII"),
};

const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Server {
    /// Serves a routed request (any route but the WebSocket one) from connection `id`;
    /// `None` when the request is parked until Redis answers (see `users`).
    pub(super) fn serve(
        &mut self,
        id: ConnId,
        route: &Route,
        request: &Request,
        now: Millis,
    ) -> Option<Response> {
        if !route.is_served(&self.config.endpoints) {
            let message = "this endpoint is switched off on this server (--endpoints)";
            return Some(if is_api_path(&request.path) {
                Response::json_error(404, "not_found", message)
            } else {
                Response::error(404, message)
            });
        }
        if route.needs_admin() && !self.authorized(request) {
            let refusal = Response::json_error(
                401,
                "unauthorized",
                "this endpoint needs Authorization: Bearer <admin token>",
            );
            return Some(refusal.with_header("WWW-Authenticate", "Bearer"));
        }
        Some(match route {
            Route::Health if self.shutdown.is_some() => Response::text(503, "shutting down"),
            Route::Health => Response::text(200, "ok"),
            Route::Client => client_script(request),
            Route::Metrics => {
                let text = metrics::render(&self.counters_now(), &self.gauges());
                Response::with_type(200, PROMETHEUS_TEXT, text.into_bytes())
            }
            Route::Dashboard => match DASHBOARD {
                Some(page) => {
                    Response::with_type(200, "text/html; charset=utf-8", page.as_bytes().to_vec())
                }
                None => Response::error(404, "no such path: /"),
            },
            Route::Presence => Response::json(200, self.presence_json()),
            Route::PresenceChannel {
                channel,
                count_only,
            } => self.channel_presence(channel, *count_only),
            Route::Publish => self.publish_request(request, now),
            Route::User { user } => return self.user_status(id, user, now),
            Route::UsersStatus => return self.users_status(id, request, now),
            #[cfg(feature = "pusher")]
            Route::PusherApi => self.pusher_api(request, now),
            Route::WebSocket => Response::error(400, "a WebSocket upgrade is not an endpoint"),
        })
    }

    /// True when no admin token is configured or the request carries it as a bearer token.
    fn authorized(&self, request: &Request) -> bool {
        let Some(token) = self.config.admin_token.as_deref() else {
            return true;
        };
        let presented = request.header("Authorization").and_then(|value| {
            let (scheme, credentials) = value.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("Bearer")
                .then(|| credentials.trim())
        });
        presented.is_some_and(|given| constant_time_eq(given.as_bytes(), token.as_bytes()))
    }

    fn gauges(&self) -> Gauges {
        let census = self.census();
        Gauges {
            connections: census.open,
            handshakes_pending: census.pending,
            connections_awake: census.awake,
            users_online: self.engine.roster().users_online(),
            watchers: census.watchers,
            channels: self.engine.roster().channel_count(),
            timers: self.wheel.len(),
            listen_queue: super::sockopt::accept_queue(&self.listener),
            resident_memory_bytes: resident_memory_bytes(),
            start_time_ms: self
                .started
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            cluster: self.engine.cluster_status().map(|status| ClusterGauges {
                degraded: !status.live,
                nodes: status.nodes,
                redis_commands: status.commands_sent,
            }),
            webhooks: self.webhooks.as_ref().map(|hooks| hooks.stats()),
        }
    }

    /// The connections by state: sockets from the slab, watchers from the engine.
    fn census(&self) -> Census {
        let mut census = Census::default();
        for (_, conn) in self.conns.iter() {
            census.pending += usize::from(conn.is_pending());
            census.open += usize::from(conn.is_open());
            census.awake += usize::from(conn.is_awake());
        }
        // A watcher is no user (§12): counted apart.
        census.watchers = self.engine.watchers();
        census
    }

    /// `{"connections":N,"users":N,"watchers":N,"channels":{C:{"seq":N,"users":{...}}}}`:
    /// connections (watchers included), users (watchers excluded) and watchers are this
    /// node's; channels are cluster-wide in a live cluster.
    pub(super) fn presence_json(&self) -> String {
        let census = self.census();
        let mut out = format!(
            r#"{{"connections":{},"users":{},"watchers":{},"channels":{{"#,
            census.open,
            self.engine.roster().users_online(),
            census.watchers
        );
        let mut names = self.engine.channels_with_members();
        names.sort_unstable();
        for (index, name) in names.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            out.push_str(&format!("{}:", JsonStr(name)));
            self.channel_json(name, &mut out);
        }
        out.push_str("}}");
        out
    }

    /// `{"seq":N,"users":{...}}`
    fn channel_json(&self, name: &str, out: &mut String) {
        let seq = self.engine.seq_named(name);
        out.push_str(&format!(r#"{{"seq":{seq},"users":"#));
        event::write_users(out, self.engine.members_named(name));
        out.push('}');
    }

    fn channel_presence(&self, name: &str, count_only: bool) -> Response {
        let counts = self.engine.channel_counts_named(name);
        if counts.users == 0 {
            return Response::json_error(
                404,
                "not_found",
                &format!("channel {name} has no members"),
            );
        }
        if count_only {
            let body = format!(
                r#"{{"users":{},"connections":{},"seq":{}}}"#,
                counts.users, counts.connections, counts.seq
            );
            return Response::json(200, body);
        }
        let mut body = String::new();
        self.channel_json(name, &mut body);
        Response::json(200, body)
    }

    /// `POST /publish` with `{"channel":C,"data":ANY}` or `{"channels":[C,...],"data":ANY}`.
    fn publish_request(&mut self, request: &Request, now: Millis) -> Response {
        if request.content_length.is_none() {
            return Response::json_error(
                411,
                "length_required",
                "send the body with a Content-Length",
            );
        }
        let (channels, data) = match parse_publication(&request.body) {
            Ok(publication) => publication,
            Err(message) => return Response::json_error(400, "bad_request", &message),
        };
        let mut delivered = 0;
        for name in &channels {
            delivered += self.engine.publish(name, None, &data, now);
        }
        Response::json(200, format!(r#"{{"delivered":{delivered}}}"#))
    }
}

/// How many connections are in which state.
#[derive(Default)]
struct Census {
    /// Open WebSockets (watchers included).
    open: usize,
    /// Connections whose request or upgrade is not decided yet.
    pending: usize,
    /// Open WebSockets holding a frame parser.
    awake: usize,
    /// Open WebSockets watching at least one channel.
    watchers: usize,
}

/// Reads a publication body: its channels (validated, without repeats) and its data.
fn parse_publication(body: &[u8]) -> Result<(Vec<String>, Json), String> {
    // Fields stay as text: `data` is canonicalized from it, numbers exactly as sent (§2).
    let text = std::str::from_utf8(body).map_err(|_| "invalid JSON: not UTF-8".to_owned())?;
    let fields = Fields::parse(text).map_err(|e| match e.classify() {
        Category::Data => "the body must be a JSON object".to_owned(),
        _ => format!("invalid JSON: {e}"),
    })?;
    let data = fields
        .get("data")
        .map(|data| Json::parse(data.get()).ok_or("invalid JSON in \"data\""))
        .ok_or("missing \"data\"")??;
    let field = |name: &str| -> Option<Value> {
        fields
            .get(name)
            .map(|raw| serde_json::from_str(raw.get()).unwrap_or(Value::Null))
    };
    let names: Vec<Value> = match (field("channel"), field("channels")) {
        (Some(channel), None) => vec![channel],
        (None, Some(Value::Array(channels))) if !channels.is_empty() => channels,
        (None, Some(_)) => return Err("\"channels\" must be a non-empty array of names".into()),
        (Some(_), Some(_)) => return Err("give \"channel\" or \"channels\", not both".into()),
        (None, None) => return Err("missing \"channel\" or \"channels\"".into()),
    };
    let mut channels = Vec::with_capacity(names.len());
    for name in names {
        let Value::String(name) = name else {
            return Err("channel names must be strings".into());
        };
        names::validate_channel(&name).map_err(|error| format!("channel {error}"))?;
        if !channels.contains(&name) {
            channels.push(name);
        }
    }
    Ok((channels, data))
}

/// `GET /rollcall.js`: the client, or `304` when the browser's copy is current. `no-cache`
/// makes browsers revalidate every time, so a new server version is picked up at once; `*`
/// lets pages of any origin import it (module scripts are fetched with CORS), as it is public
/// static code. Without the `js-client` feature, an unknown path like any other.
fn client_script(request: &Request) -> Response {
    if !cfg!(feature = "js-client") {
        return Response::error(404, "no such path: /rollcall.js");
    }
    let response = if request.none_match(CLIENT_ETAG) {
        Response::not_modified()
    } else {
        Response::with_type(
            200,
            "text/javascript; charset=utf-8",
            CLIENT.as_bytes().to_vec(),
        )
    };
    response
        .with_header("ETag", CLIENT_ETAG)
        .with_header("Cache-Control", "no-cache")
        .with_header("Access-Control-Allow-Origin", "*")
}

/// `"` + the FNV-1a 64-bit hash of `bytes` in hexadecimal + `"`: an entity tag (RFC 9110
/// §8.8.3). Not a cryptographic hash: it only has to change when the file does.
const fn etag(bytes: &[u8]) -> [u8; 18] {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    let digits = b"0123456789abcdef";
    let mut tag = [b'"'; 18];
    let mut d = 0;
    while d < 16 {
        tag[1 + d] = digits[((hash >> (60 - 4 * d)) & 0xf) as usize];
        d += 1;
    }
    tag
}

/// Resident set size from `/proc/self/statm` (its second field, in pages); 0 elsewhere.
fn resident_memory_bytes() -> u64 {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf only reads a system constant.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page_size).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::{client_script, etag, parse_publication, CLIENT, CLIENT_ETAG};
    use crate::http::{examine, Examined};

    #[test]
    fn the_client_etag_is_a_quoted_hash_of_the_content() {
        assert_eq!(CLIENT_ETAG.len(), 18);
        assert!(CLIENT_ETAG.starts_with('"') && CLIENT_ETAG.ends_with('"'));
        // FNV-1a's published test vectors: "" and "a".
        assert_eq!(&etag(b""), b"\"cbf29ce484222325\"");
        assert_eq!(&etag(b"a"), b"\"af63dc4c8601ec8c\"");
        assert_ne!(etag(b"export const a = 1;"), etag(b"export const a = 2;"));
    }

    #[test]
    fn the_client_is_served_with_its_feature_only() {
        let Examined::Complete(request) =
            examine(b"GET /rollcall.js HTTP/1.1\r\nHost: x\r\n\r\n", 0)
        else {
            panic!("a complete request");
        };
        let response = client_script(&request);
        if cfg!(feature = "js-client") {
            assert_eq!(response.status, 200);
            assert_eq!(response.body, CLIENT.as_bytes());
        } else {
            assert_eq!(response.status, 404);
        }
    }

    #[test]
    fn publications_name_channels_once() {
        let (channels, data) =
            parse_publication(br#"{"channels":["a","b","a"],"data":{"x":1}}"#).expect("valid");
        assert_eq!(channels, vec!["a", "b"]);
        assert_eq!(data.as_str(), r#"{"x":1}"#);
        let (channels, data) = parse_publication(br#"{"channel":"a","data":null}"#).expect("valid");
        assert_eq!((channels, data.as_str()), (vec!["a".to_owned()], "null"));
    }

    #[test]
    fn bad_publications_say_why() {
        for (body, needle) in [
            (&b"nope"[..], "invalid JSON"),
            (b"[1]", "JSON object"),
            (br#"{"channel":"a"}"#, "missing \"data\""),
            (br#"{"data":1}"#, "missing \"channel\""),
            (br#"{"channel":"a","channels":["b"],"data":1}"#, "not both"),
            (br#"{"channels":[],"data":1}"#, "non-empty"),
            (br#"{"channels":[1],"data":1}"#, "strings"),
            (br#"{"channel":"a b","data":1}"#, "channel contains"),
        ] {
            let error = parse_publication(body).expect_err(needle);
            assert!(error.contains(needle), "{error}");
        }
    }
}
