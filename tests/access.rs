//! Access control: `--admin-token` (or `ROLLCALL_ADMIN_TOKEN`) guards `/presence*` and
//! `/publish` with a bearer token while `/healthz`, `/metrics` and the dashboard stay open;
//! `--allowed-origin` refuses browser upgrades from other origins.

mod common;

use std::net::SocketAddr;

use common::*;
use serde_json::json;

/// The guarded requests, as (method, target, body).
const GUARDED: &[(&str, &str, Option<&str>)] = &[
    ("GET", "/presence", None),
    ("GET", "/presence/c1", None),
    ("GET", "/presence/c1?count", None),
    (
        "POST",
        "/publish",
        Some(r#"{"channel":"c1","data":"hello"}"#),
    ),
];

fn guarded_request(method: &str, target: &str, body: Option<&str>, auth: Option<&str>) -> Vec<u8> {
    let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
    build_request(method, target, &headers, body.map(str::as_bytes))
}

/// Checks a 401: JSON error `unauthorized` and `WWW-Authenticate: Bearer`.
#[track_caller]
fn assert_unauthorized(resp: &HttpResponse, what: &str) {
    assert_eq!(resp.status, 401, "{what}: {resp:?}");
    assert!(
        resp.content_type().starts_with("application/json"),
        "{what}: content type: {resp:?}"
    );
    assert_eq!(resp.json()["error"], "unauthorized", "{what}: {resp:?}");
    let challenge = resp.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer"),
        "{what}: WWW-Authenticate {challenge:?} in {resp:?}"
    );
    let connection = resp.header("connection").unwrap_or_default();
    assert!(connection.eq_ignore_ascii_case("close"), "{what}: {resp:?}");
}

/// With a server guarded by `token` and a member `m` in c1: every guarded request fails
/// without the right bearer token and succeeds with it; the open endpoints need none.
#[track_caller]
fn check_guard(addr: SocketAddr, token: &str, member: &mut Client) {
    let right = format!("Bearer {token}");
    let wrong_auths = [
        None,
        Some("Bearer wrong".to_string()),
        Some(format!("Bearer {}", &token[..token.len() - 1])),
        Some(format!("Bearer {token}x")),
        Some(format!("Basic {token}")),
        Some(token.to_string()),
        Some("Bearer".to_string()),
    ];
    for (method, target, body) in GUARDED {
        for auth in &wrong_auths {
            let resp = http_request(
                addr,
                &guarded_request(method, target, *body, auth.as_deref()),
            );
            assert_unauthorized(&resp, &format!("{method} {target} with {auth:?}"));
        }
    }
    // A refused publish delivered nothing.
    let before = member.roundtrip_ping();
    assert!(
        before.iter().all(|m| m["type"] != "message"),
        "an unauthorized publish was delivered: {before:?}"
    );

    for (method, target, body) in GUARDED {
        let resp = http_request(addr, &guarded_request(method, target, *body, Some(&right)));
        assert_eq!(
            resp.status, 200,
            "{method} {target} with the token: {resp:?}"
        );
    }
    let message = member.wait_for_type("message", STEP).0;
    assert_eq!(
        message,
        json!({"type": "message", "channel": "c1", "from": null, "data": "hello"})
    );
    for target in ["/healthz", "/metrics", "/"] {
        let resp = http_get(addr, target);
        assert_eq!(resp.status, 200, "GET {target} without a token: {resp:?}");
    }
}

#[test]
fn admin_token_flag_guards_presence_and_publish() {
    let server = Server::start(&["--admin-token", "s3cret"]);
    let (mut member, _) = Client::join(server.addr(), "user=m&channel=c1");
    check_guard(server.addr(), "s3cret", &mut member);
}

#[test]
fn admin_token_from_the_environment_works_the_same() {
    let server = Server::start_with_env(&[], &[("ROLLCALL_ADMIN_TOKEN", "envtok")]);
    let (mut member, _) = Client::join(server.addr(), "user=m&channel=c1");
    check_guard(server.addr(), "envtok", &mut member);
}

#[test]
fn admin_token_flag_wins_over_the_environment() {
    let server = Server::start_with_env(
        &["--admin-token", "flagtok"],
        &[("ROLLCALL_ADMIN_TOKEN", "envtok")],
    );
    let addr = server.addr();
    let resp = http_get_with(addr, "/presence", &[("Authorization", "Bearer envtok")]);
    assert_unauthorized(&resp, "environment token when the flag is given");
    let resp = http_get_with(addr, "/presence", &[("Authorization", "Bearer flagtok")]);
    assert_eq!(resp.status, 200, "flag token: {resp:?}");
}

#[test]
fn without_admin_token_presence_and_publish_are_open() {
    let server = Server::start(&[]);
    let (_member, _) = Client::join(server.addr(), "user=m&channel=c1");
    for (method, target, body) in GUARDED {
        let resp = http_request(server.addr(), &guarded_request(method, target, *body, None));
        assert_eq!(resp.status, 200, "{method} {target}: {resp:?}");
    }
}

#[test]
fn allowed_origin_refuses_other_browser_origins() {
    let server = Server::start(&[
        "--allowed-origin",
        "http://good.example",
        "--allowed-origin",
        "http://localhost:3000",
    ]);
    let addr = server.addr();
    let attempt = |origin: Option<&str>, channel: &str| {
        let headers: Vec<(&str, &str)> = origin.map(|o| ("Origin", o)).into_iter().collect();
        let target = format!("/?user=alice&channel={channel}");
        upgrade_attempt(
            addr,
            upgrade_request_with_headers(&target, &headers).as_bytes(),
        )
    };

    for origin in [
        Some("http://good.example"),
        Some("HTTP://Good.Example"),
        Some("http://localhost:3000"),
        None,
    ] {
        let resp = attempt(origin, "accepted");
        assert_eq!(resp.status, 101, "Origin {origin:?}: {resp:?}");
    }
    for origin in [
        "http://evil.example",
        "https://good.example",
        "http://good.example/",
        "http://good.example:8080",
        "http://localhost:3001",
        "http://good.example.evil",
        "null",
    ] {
        let resp = attempt(Some(origin), "c1");
        assert_eq!(resp.status, 403, "Origin {origin}: {resp:?}");
        assert!(
            resp.content_type().starts_with("text/plain"),
            "Origin {origin}: {resp:?}"
        );
    }

    // Refused upgrades joined nobody (the accepted ones used another channel).
    let (_client, state) = Client::join(addr, "user=bob&channel=c1");
    assert_eq!(user_names(&state), ["bob"], "{state}");
}

#[test]
fn without_allowed_origin_any_origin_may_upgrade() {
    let server = Server::start(&[]);
    let resp = upgrade_attempt(
        server.addr(),
        upgrade_request_with_headers("/?user=alice", &[("Origin", "http://evil.example")])
            .as_bytes(),
    );
    assert_eq!(resp.status, 101, "{resp:?}");
}

#[test]
fn the_servers_own_pages_may_upgrade_whatever_the_allowed_origins() {
    let server = Server::start(&["--allowed-origin", "https://app.example"]);
    let addr = server.addr();
    let host = addr.to_string();
    let attempt = |origin: &str, host: &str| {
        upgrade_attempt(
            addr,
            upgrade_request_with_headers("/?watch=*", &[("Origin", origin)])
                .replace("Host: 127.0.0.1\r\n", &format!("Host: {host}\r\n"))
                .as_bytes(),
        )
    };
    // The dashboard served at http://HOST/ opens ws://HOST/?watch=*: Origin names the Host.
    for origin in [
        format!("http://{host}"),
        format!("https://{host}"),
        "https://app.example".into(),
    ] {
        let resp = attempt(&origin, &host);
        assert_eq!(resp.status, 101, "Origin {origin}: {resp:?}");
    }
    // Another host, another port, or a Host that is not the Origin's: refused.
    let other_port = format!("http://127.0.0.1:{}", addr.port().wrapping_add(1));
    for (origin, host) in [
        ("http://evil.example", host.as_str()),
        (other_port.as_str(), host.as_str()),
        (&*format!("http://{host}.evil"), host.as_str()),
        (&*format!("http://{host}"), "evil.example"),
    ] {
        let resp = attempt(origin, host);
        assert_eq!(resp.status, 403, "Origin {origin}, Host {host}: {resp:?}");
    }
}
