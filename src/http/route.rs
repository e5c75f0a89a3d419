//! What a request asks for: the WebSocket endpoint or one of the operator endpoints, or a
//! 404 / 405 / 426 refusal. Errors of the JSON API (`/presence*`, `/publish`) are JSON.

use super::{percent, Request, Response};
use crate::config::Endpoints;
use crate::names;

/// An endpoint a request is routed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// A WebSocket upgrade on `/` or `/ws`, or on `/app/{key}` (Pusher).
    WebSocket,
    /// `GET /` without an upgrade: the live dashboard.
    Dashboard,
    /// `GET /healthz`.
    Health,
    /// `GET /rollcall.js`: the browser client (clients/js/), public static code.
    Client,
    /// `GET /metrics`.
    Metrics,
    /// `GET /presence`: every channel.
    Presence,
    /// `GET /presence/CHANNEL` (`?count` for the counts only).
    PresenceChannel {
        /// The channel (validated).
        channel: String,
        /// True for `?count`.
        count_only: bool,
    },
    /// `POST /publish`.
    Publish,
    /// `GET /users/{id}`: one user's status and last seen.
    User {
        /// The user id (validated).
        user: String,
    },
    /// `POST /users/status`: many users' statuses at once.
    UsersStatus,
    /// `/apps/{id}/...`: the Pusher REST API (signed by the app's secret, not the admin
    /// token). Feature `pusher`.
    #[cfg(feature = "pusher")]
    PusherApi,
}

impl Route {
    /// True when `endpoints` has this route's group switched on (`/healthz` and the
    /// WebSocket always are).
    pub fn is_served(&self, endpoints: &Endpoints) -> bool {
        match self {
            Route::WebSocket | Route::Health | Route::Client => true,
            Route::Dashboard => endpoints.dashboard,
            Route::Metrics => endpoints.metrics,
            Route::Presence
            | Route::PresenceChannel { .. }
            | Route::User { .. }
            | Route::UsersStatus => endpoints.presence,
            Route::Publish => endpoints.publish,
            #[cfg(feature = "pusher")]
            Route::PusherApi => true,
        }
    }

    /// True for the endpoints that `--admin-token` protects.
    pub fn needs_admin(&self) -> bool {
        matches!(
            self,
            Route::Presence
                | Route::PresenceChannel { .. }
                | Route::Publish
                | Route::User { .. }
                | Route::UsersStatus
        )
    }
}

/// True for the paths of the JSON API, whose errors are JSON.
pub fn is_api_path(path: &str) -> bool {
    path == "/presence"
        || path == "/publish"
        || path.starts_with("/presence/")
        || path.starts_with("/users/")
        || (cfg!(feature = "pusher") && path.starts_with("/apps/"))
}

/// Routes a complete request.
pub fn route(request: &Request) -> Result<Route, Response> {
    let get = request.method == "GET";
    let path = request.path.as_str();
    match path {
        "/" | "/ws" if !get => Err(method_not_allowed("GET")),
        "/" | "/ws" if request.is_upgrade() => Ok(Route::WebSocket),
        "/" => Ok(Route::Dashboard),
        "/ws" => Err(Response::error(
            426,
            "this endpoint speaks WebSocket: connect with a WebSocket client",
        )
        .with_header("Upgrade", "websocket")),
        "/healthz" | "/metrics" | "/rollcall.js" if !get => Err(method_not_allowed("GET")),
        "/healthz" => Ok(Route::Health),
        "/rollcall.js" => Ok(Route::Client),
        "/metrics" => Ok(Route::Metrics),
        "/publish" if request.method != "POST" => Err(api_method_not_allowed("POST")),
        "/publish" => Ok(Route::Publish),
        "/presence" if !get => Err(api_method_not_allowed("GET")),
        "/presence" => Ok(Route::Presence),
        "/users/status" if request.method != "POST" => Err(api_method_not_allowed("POST")),
        "/users/status" => Ok(Route::UsersStatus),
        _ if path.starts_with("/users/") && !get => Err(api_method_not_allowed("GET")),
        _ if path.starts_with("/users/") => user(&path["/users/".len()..]),
        #[cfg(feature = "pusher")]
        _ if path.starts_with("/apps/") => Ok(Route::PusherApi),
        // A Pusher client's WebSocket (`/app/{key}`); served when an app is configured.
        #[cfg(feature = "pusher")]
        _ if request.is_upgrade() && crate::dialect::pusher::app_key(path).is_some() => {
            if get {
                Ok(Route::WebSocket)
            } else {
                Err(method_not_allowed("GET"))
            }
        }
        _ => match path.strip_prefix("/presence/") {
            Some(_) if !get => Err(api_method_not_allowed("GET")),
            Some(channel) => presence_channel(channel, &request.query),
            None => Err(Response::error(404, format!("no such path: {path}"))),
        },
    }
}

/// `/presence/CHANNEL`: the rest of the path is the channel, percent-decoded (a client may
/// send `room%3Alobby` for `room:lobby`; `/` stays a character of the name).
fn presence_channel(raw: &str, query: &str) -> Result<Route, Response> {
    let bad_request = |message: String| Response::json_error(400, "bad_request", &message);
    let channel =
        percent::decode_path(raw).map_err(|error| bad_request(format!("channel: {error}")))?;
    names::validate_channel(&channel).map_err(|error| bad_request(format!("channel {error}")))?;
    let count_only = query
        .split('&')
        .any(|pair| pair == "count" || pair.starts_with("count="));
    Ok(Route::PresenceChannel {
        channel,
        count_only,
    })
}

/// `/users/{id}`: the rest of the path is the user id, percent-decoded.
fn user(raw: &str) -> Result<Route, Response> {
    let bad_request = |message: String| Response::json_error(400, "bad_request", &message);
    let user = percent::decode_path(raw).map_err(|error| bad_request(format!("user: {error}")))?;
    names::validate_user(&user).map_err(|error| bad_request(format!("user {error}")))?;
    Ok(Route::User { user })
}

fn method_not_allowed(allow: &'static str) -> Response {
    Response::error(405, format!("method not allowed; use {allow}")).with_header("Allow", allow)
}

fn api_method_not_allowed(allow: &'static str) -> Response {
    let message = format!("method not allowed; use {allow}");
    Response::json_error(405, "method_not_allowed", &message).with_header("Allow", allow)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{examine, Examined};

    fn routed(head: &str) -> Result<Route, Response> {
        match examine(format!("{head}\r\nHost: x\r\n\r\n").as_bytes(), 0) {
            Examined::Complete(request) => route(&request),
            other => panic!("{other:?}"),
        }
    }

    fn status(head: &str) -> u16 {
        routed(head).expect_err(head).status
    }

    #[test]
    fn every_endpoint() {
        assert_eq!(routed("GET / HTTP/1.1"), Ok(Route::Dashboard));
        assert_eq!(routed("GET /healthz HTTP/1.1"), Ok(Route::Health));
        assert_eq!(routed("GET /rollcall.js HTTP/1.1"), Ok(Route::Client));
        assert_eq!(routed("GET /rollcall.js?v=2 HTTP/1.1"), Ok(Route::Client));
        assert!(!Route::Client.needs_admin());
        assert_eq!(routed("GET /metrics HTTP/1.1"), Ok(Route::Metrics));
        assert_eq!(routed("GET /presence HTTP/1.1"), Ok(Route::Presence));
        assert_eq!(
            routed("GET /presence/lobby?count HTTP/1.1"),
            Ok(Route::PresenceChannel {
                channel: "lobby".into(),
                count_only: true
            })
        );
        assert_eq!(
            routed("GET /presence/a@b HTTP/1.1"),
            Ok(Route::PresenceChannel {
                channel: "a@b".into(),
                count_only: false
            })
        );
        assert_eq!(routed("POST /publish HTTP/1.1"), Ok(Route::Publish));
        assert!(Route::Publish.needs_admin());
        assert!(!Route::Metrics.needs_admin());
    }

    #[test]
    fn presence_paths_carry_any_channel_name_percent_encoded_or_not() {
        for (path, channel) in [
            ("/presence/room:lobby", "room:lobby"),
            ("/presence/room%3Alobby", "room:lobby"),
            ("/presence/studio/1/live", "studio/1/live"),
            ("/presence/private-a%3Db%2Cc%3Bd", "private-a=b,c;d"),
        ] {
            assert_eq!(
                routed(&format!("GET {path}?count HTTP/1.1")),
                Ok(Route::PresenceChannel {
                    channel: channel.into(),
                    count_only: true
                }),
                "{path}"
            );
        }
        for (path, reason) in [
            ("/presence/a%zz", "%zz\\\" at byte 1"),
            ("/presence/a%2Ab", "reserved for grant patterns"),
            ("/presence/a+b", "'+'"),
        ] {
            let response = routed(&format!("GET {path} HTTP/1.1")).expect_err(path);
            let body = String::from_utf8_lossy(&response.body).into_owned();
            assert_eq!(
                (response.status, body.contains(reason)),
                (400, true),
                "{path}: {body}"
            );
        }
    }

    #[test]
    fn upgrades_only_on_the_websocket_paths() {
        let upgrade = "Upgrade: websocket\r\nConnection: Upgrade";
        assert_eq!(
            routed(&format!("GET /ws HTTP/1.1\r\n{upgrade}")),
            Ok(Route::WebSocket)
        );
        assert_eq!(
            routed(&format!("GET /?user=a HTTP/1.1\r\n{upgrade}")),
            Ok(Route::WebSocket)
        );
        assert_eq!(status(&format!("GET /nope HTTP/1.1\r\n{upgrade}")), 404);
        assert_eq!(status("GET /ws HTTP/1.1"), 426);
    }

    #[test]
    fn pusher_paths_are_routed_with_the_feature_only() {
        let socket =
            "GET /app/key?protocol=7 HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade";
        let rest = "POST /apps/1/events HTTP/1.1";
        if cfg!(feature = "pusher") {
            assert_eq!(routed(socket), Ok(Route::WebSocket));
            assert!(routed(rest).is_ok());
            assert!(is_api_path("/apps/1/events"));
        } else {
            // Unknown paths like any other: a 404, not a Pusher error.
            assert_eq!(status(socket), 404);
            assert_eq!(status(rest), 404);
            assert!(
                !is_api_path("/apps/1/events"),
                "its errors are not JSON either"
            );
        }
    }

    #[test]
    fn refusals() {
        assert_eq!(status("GET /nope HTTP/1.1"), 404);
        assert_eq!(status("GET /presence/bad|name HTTP/1.1"), 400);
        for (head, allow) in [
            ("POST / HTTP/1.1", "GET"),
            ("POST /healthz HTTP/1.1", "GET"),
            ("POST /rollcall.js HTTP/1.1", "GET"),
            ("GET /publish HTTP/1.1", "POST"),
            ("DELETE /presence/x HTTP/1.1", "GET"),
        ] {
            let response = routed(head).expect_err(head);
            assert_eq!(response.status, 405, "{head}");
            assert_eq!(response.headers, vec![("Allow", allow)], "{head}");
        }
        let response = routed("GET /publish HTTP/1.1").expect_err("405");
        assert_eq!(
            response.content_type, "application/json",
            "API errors are JSON"
        );
    }
}
