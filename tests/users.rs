//! User status and last seen (`GET /users/{id}`, `POST /users/status`,
//! `--last-seen-capacity`): online with connections and channels, offline with the time the
//! last connection ended, bounded memory, the admin token, bad requests; in a cluster, a user
//! connected to another node is online.

mod common;

use std::thread;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const ADMIN: &str = "admin-secret";

fn bearer() -> String {
    format!("Bearer {ADMIN}")
}

#[track_caller]
fn status(server: &Server, user: &str) -> Value {
    let auth = bearer();
    let response = http_get_with(
        server.addr(),
        &format!("/users/{user}"),
        &[("Authorization", &auth)],
    );
    assert_eq!(response.status, 200, "{response:?}");
    response.json()
}

/// Polls the status of `user` until `pred` holds (a close is seen by the server a moment
/// after the client sends it).
#[track_caller]
fn wait_status(server: &Server, user: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let started = std::time::Instant::now();
    loop {
        let got = status(server, user);
        if pred(&got) {
            return got;
        }
        assert!(started.elapsed() < STEP, "{user}: {got}");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn online_users_show_connections_and_channels_offline_ones_when_last_seen() {
    let server = Server::start_with_env(
        &["--last-seen-capacity", "2"],
        &[("ROLLCALL_ADMIN_TOKEN", ADMIN)],
    );
    assert_eq!(
        status(&server, "alice"),
        json!({"user":"alice","online":false,"last_seen":null}),
        "never seen"
    );
    let (mut one, _) = Client::join(server.addr(), "user=alice");
    let (two, _) = Client::join(server.addr(), "user=alice&channel=dev");
    one.send_json(&json!({"type":"join","channel":"art"}));
    one.expect_type("state");
    assert_eq!(
        status(&server, "alice"),
        json!({"user":"alice","online":true,"connections":2,"channels":["art","dev","lobby"]})
    );
    let before = unix_ms();
    one.close();
    two.close();
    let offline = wait_status(&server, "alice", |v| v["online"] == false);
    let seen = offline["last_seen"].as_u64().expect("last_seen");
    // The server's clock is its loop's, in whole milliseconds from its start: up to a few
    // milliseconds behind this one.
    assert!(
        seen + 5 >= before && seen <= unix_ms(),
        "{seen} not in [{before}, now]"
    );

    // A percent-encoded id, and the batch in the order asked.
    let (_bob, _) = Client::join(server.addr(), "user=bob%20b");
    let auth = bearer();
    let response = http_post(
        server.addr(),
        "/users/status",
        &[("Authorization", &auth)],
        br#"{"users":["nobody","bob b","alice"]}"#,
    );
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.json(),
        json!({"users":[
            {"user":"nobody","online":false,"last_seen":null},
            {"user":"bob b","online":true,"connections":1,"channels":["lobby"]},
            {"user":"alice","online":false,"last_seen":seen},
        ]})
    );
    assert_eq!(status(&server, "bob%20b")["online"], true);

    // Capacity 2: carol and dave seen after alice forget her.
    for user in ["carol", "dave"] {
        let (client, _) = Client::join(server.addr(), &format!("user={user}"));
        client.close();
        wait_status(&server, user, |v| v["last_seen"].is_u64());
    }
    assert_eq!(
        status(&server, "alice")["last_seen"],
        Value::Null,
        "forgotten"
    );
}

#[test]
fn bad_requests_and_missing_tokens_are_refused() {
    let server = Server::start_with_env(&[], &[("ROLLCALL_ADMIN_TOKEN", ADMIN)]);
    assert_eq!(http_get(server.addr(), "/users/alice").status, 401);
    assert_eq!(
        http_post(server.addr(), "/users/status", &[], br#"{"users":[]}"#).status,
        401
    );
    let auth = bearer();
    let headers = [("Authorization", auth.as_str())];
    for target in ["/users/", "/users/%ZZ", "/users/a%01b"] {
        let response = http_get_with(server.addr(), target, &headers);
        assert_eq!(response.status, 400, "{target}: {response:?}");
        assert_eq!(response.json()["error"], "bad_request", "{target}");
    }
    let too_many = format!(r#"{{"users":[{}]}}"#, vec!["\"u\""; 1001].join(","));
    for body in [
        &b"{not json"[..],
        br#"{"users":"alice"}"#,
        br#"{"users":[42]}"#,
        too_many.as_bytes(),
    ] {
        let response = http_post(server.addr(), "/users/status", &headers, body);
        assert_eq!(response.status, 400, "{response:?}");
    }
    assert_eq!(
        http_get_with(server.addr(), "/users/status", &headers).status,
        405
    );
    assert_eq!(
        http_post(server.addr(), "/users/alice", &headers, b"{}").status,
        405
    );
    let (_alice, _) = Client::join(server.addr(), "user=alice");
    assert_eq!(status(&server, "alice")["online"], true, "still serving");
}

#[test]
fn a_user_on_another_node_is_online_and_leaves_after_the_grace() {
    let Some(redis) = common::redis::start_or_skip("user status in a cluster") else {
        return;
    };
    let url = redis.url();
    let node = |id: &str| {
        let server = Server::start_with_env(
            &[
                "--redis",
                &url,
                "--node-ttl",
                "2s",
                "--node-id",
                id,
                "--leave-grace",
                "1s",
            ],
            &[("ROLLCALL_ADMIN_TOKEN", ADMIN)],
        );
        server.wait_for_log("cluster live", Duration::from_secs(10));
        server
    };
    let a = node("a");
    let b = node("b");
    let (alice, _) = Client::join(a.addr(), "user=alice");
    let on_b = wait_status(&b, "alice", |v| v["online"] == true);
    assert_eq!(
        on_b,
        json!({"user":"alice","online":true,"connections":0,"channels":["lobby"]}),
        "online through node a, no connection on b"
    );
    alice.close();
    // Inside the grace the user is still a member: a reload would not flicker.
    assert_eq!(status(&b, "alice")["online"], true);
    wait_status(&b, "alice", |v| v["online"] == false);
}
