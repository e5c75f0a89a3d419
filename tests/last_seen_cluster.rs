//! Last seen across a cluster (`--last-seen-ttl`): a user seen only on node a is last seen
//! on node b (`GET /users/{id}`, `POST /users/status`, a watcher's `offline` and `users`),
//! and on a node started after it left; a killed node's users are last seen once reaped;
//! the Redis key expires after the TTL; a request Redis does not answer gets a 503; bad input
//! is refused as on one node.
//!
//! Needs `redis-server`: skipped visibly without it unless `ROLLCALL_REDIS_TESTS=1`.

mod common;

use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::redis::{self, RedisServer, Reply};
use common::*;
use serde_json::{json, Value};

const ADMIN: &str = "admin-secret";
/// The last-seen TTL the nodes run with.
const TTL_MS: i64 = 3_600_000;

/// A node of `redis`'s cluster named `id`, with `extra` flags, once live.
#[track_caller]
fn node(redis: &RedisServer, id: &str, extra: &[&str]) -> Server {
    let url = redis.url();
    let mut flags = vec![
        "--redis",
        url.as_str(),
        "--node-ttl",
        "2s",
        "--node-id",
        id,
        "--leave-grace",
        "300ms",
        "--last-seen-ttl",
        "1h",
    ];
    flags.extend_from_slice(extra);
    let server = Server::start_with_env(&flags, &[("ROLLCALL_ADMIN_TOKEN", ADMIN)]);
    server.wait_for_log("cluster live", Duration::from_secs(10));
    server
}

fn auth() -> String {
    format!("Bearer {ADMIN}")
}

#[track_caller]
fn get_status(server: &Server, user: &str) -> HttpResponse {
    let auth = auth();
    http_get_with(
        server.addr(),
        &format!("/users/{user}"),
        &[("Authorization", &auth)],
    )
}

#[track_caller]
fn status(server: &Server, user: &str) -> Value {
    let response = get_status(server, user);
    assert_eq!(response.status, 200, "{response:?}");
    response.json()
}

#[track_caller]
fn post_statuses(server: &Server, body: &[u8]) -> HttpResponse {
    let auth = auth();
    http_post(
        server.addr(),
        "/users/status",
        &[("Authorization", &auth)],
        body,
    )
}

/// Polls `user`'s status on `server` until `pred` holds.
#[track_caller]
fn wait_status(server: &Server, user: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let got = status(server, user);
        if pred(&got) {
            return got;
        }
        assert!(started.elapsed() < STEP * 2, "{user}: {got}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// A connection alone in its own channel that watches `users`; returns it and its `users`
/// answer.
#[track_caller]
fn watcher(server: &Server, name: &str, users: &[&str]) -> (Client, Value) {
    let query = format!("user={name}&channel=quiet-{name}");
    let (mut client, _) = Client::join(server.addr(), &query);
    // In a cluster its own join comes back through Redis.
    assert_eq!(client.expect_type("join")["user"], name);
    client.send_json(&json!({"type": "watch_users", "users": users, "ref": "w"}));
    let answer = client.expect_type("users");
    assert_eq!(answer["ref"], "w", "{answer}");
    (client, answer)
}

/// The last-seen time in `value`, checked to lie in `[not_before, now]` (the server's clock
/// is its loop's, in whole milliseconds: up to a few behind this one).
#[track_caller]
fn seen_between(value: &Value, not_before: u64) -> u64 {
    let seen = value.as_u64().unwrap_or_else(|| panic!("no time: {value}"));
    assert!(
        seen + 5 >= not_before && seen <= unix_ms(),
        "{seen} not in [{not_before}, now]"
    );
    seen
}

#[track_caller]
fn redis_integer(redis: &RedisServer, args: &[&str]) -> i64 {
    match redis.command(args) {
        Ok(Reply::Integer(value)) => value,
        Ok(Reply::Bulk(Some(bytes))) => String::from_utf8_lossy(&bytes)
            .parse()
            .unwrap_or_else(|e| panic!("{args:?}: {e}")),
        other => panic!("{args:?}: {other:?}"),
    }
}

#[test]
fn a_user_seen_only_on_one_node_is_last_seen_on_every_node() {
    let Some(redis) = redis::start_or_skip("last seen across a cluster") else {
        return;
    };
    let a = node(&redis, "a", &[]);
    let b = node(&redis, "b", &[]);
    let (mut w, answer) = watcher(&b, "w", &["alice"]);
    assert_eq!(answer["offline"], json!({ "alice": null }), "never seen");

    let (alice, _) = Client::join(a.addr(), "user=alice");
    assert_eq!(w.expect_type("online")["user"], "alice");
    wait_status(&b, "alice", |v| v["online"] == true);
    let before = unix_ms();
    alice.close();

    // The watcher on b hears the time alice's connection on a ended (not the grace's end).
    let offline = w.expect_type("offline");
    assert_eq!(offline["user"], "alice", "{offline}");
    let seen = seen_between(&offline["last_seen"], before);
    assert!(
        seen < unix_ms() - 250,
        "{seen} (closed at {before}, now {}, redis {:?}): the end of the connection, before the 300 ms grace", unix_ms(), redis.command(&["GET", "rollcall:seen:alice"])
    );
    let on_b = wait_status(&b, "alice", |v| v["online"] == false);
    assert_eq!(
        on_b,
        json!({"user":"alice","online":false,"last_seen":seen})
    );
    let batch = post_statuses(&b, br#"{"users":["nobody","alice"]}"#);
    assert_eq!(batch.status, 200, "{batch:?}");
    assert_eq!(
        batch.json(),
        json!({"users":[
            {"user":"nobody","online":false,"last_seen":null},
            {"user":"alice","online":false,"last_seen":seen},
        ]})
    );

    // Redis keeps it, with the TTL.
    let key = "rollcall:seen:alice";
    assert_eq!(redis_integer(&redis, &["GET", key]), seen as i64);
    let ttl = redis_integer(&redis, &["PTTL", key]);
    assert!(ttl > TTL_MS - 60_000 && ttl <= TTL_MS, "PTTL {ttl}");

    // A node started after alice left, remembering nothing itself, answers from Redis.
    let c = node(&redis, "c", &["--last-seen-capacity", "0"]);
    assert_eq!(
        status(&c, "alice"),
        json!({"user":"alice","online":false,"last_seen":seen})
    );
    let (_w_c, answer) = watcher(&c, "wc", &["alice", "nobody"]);
    assert_eq!(answer["offline"], json!({"alice": seen, "nobody": null}));
    assert_eq!(answer["online"], json!([]));

    // A thousand users at once: one answer, in order.
    let many: Vec<String> = (0..1_000).map(|i| format!("u{i}")).collect();
    let mut users = many.clone();
    users[999] = "alice".into();
    let body = json!({ "users": users }).to_string();
    let response = post_statuses(&c, body.as_bytes());
    assert_eq!(response.status, 200, "{:?}", response.head);
    let statuses = response.json();
    assert_eq!(statuses["users"].as_array().map(Vec::len), Some(1_000));
    assert_eq!(statuses["users"][999]["last_seen"], json!(seen));
    assert_eq!(statuses["users"][0]["last_seen"], Value::Null);
}

#[test]
fn a_killed_node_s_user_is_last_seen_once_reaped() {
    let Some(redis) = redis::start_or_skip("last seen of a killed node's user") else {
        return;
    };
    let mut a = node(&redis, "a", &[]);
    let b = node(&redis, "b", &[]);
    let (_w, _) = watcher(&b, "w", &["olga"]);
    let (_olga, _) = Client::join(a.addr(), "user=olga");
    wait_status(&b, "olga", |v| v["online"] == true);

    let killed = unix_ms();
    a.signal("KILL");
    assert!(
        a.wait_exit(STEP).is_some(),
        "node a still runs after SIGKILL"
    );
    let offline = wait_status(&b, "olga", |v| v["online"] == false);
    let seen = seen_between(&offline["last_seen"], killed);
    assert_eq!(
        redis_integer(&redis, &["GET", "rollcall:seen:olga"]),
        seen as i64
    );
    assert!(redis_integer(&redis, &["PTTL", "rollcall:seen:olga"]) > 0);
}

#[test]
fn a_watcher_hears_the_reaped_user_s_time() {
    let Some(redis) = redis::start_or_skip("a watcher of a killed node's user") else {
        return;
    };
    let mut a = node(&redis, "a", &[]);
    let b = node(&redis, "b", &[]);
    let (mut w, _) = watcher(&b, "w", &["olga"]);
    let (_olga, _) = Client::join(a.addr(), "user=olga");
    assert_eq!(w.expect_type("online")["user"], "olga");
    let killed = unix_ms();
    a.signal("KILL");
    assert!(
        a.wait_exit(STEP).is_some(),
        "node a still runs after SIGKILL"
    );
    let offline = w.recv_json(STEP * 2);
    assert_eq!(offline["type"], "offline", "{offline}");
    let seen = seen_between(&offline["last_seen"], killed);
    assert_eq!(status(&b, "olga")["last_seen"], json!(seen));
}

#[test]
fn a_request_redis_does_not_answer_gets_a_503_and_bad_input_is_refused() {
    let Some(redis) = redis::start_or_skip("last seen without an answer") else {
        return;
    };
    let a = node(&redis, "a", &[]);
    let auth = auth();
    let headers = [("Authorization", auth.as_str())];
    for target in ["/users/", "/users/%ZZ", "/users/a%01b"] {
        let response = http_get_with(a.addr(), target, &headers);
        assert_eq!(response.status, 400, "{target}: {response:?}");
    }
    let too_many = format!(r#"{{"users":[{}]}}"#, vec!["\"u\""; 1_001].join(","));
    for body in [
        &b"{not json"[..],
        br#"{"users":[42]}"#,
        br#"{"users":["a\u0001"]}"#,
        too_many.as_bytes(),
    ] {
        let response = post_statuses(&a, body);
        assert_eq!(response.status, 400, "{response:?}");
    }
    assert_eq!(http_get(a.addr(), "/users/alice").status, 401);

    // Redis frozen: the lookup is never answered, and the request gives up.
    let pid = redis.pid().to_string();
    let signal = |sig: &str| {
        let status = Command::new("kill")
            .args(["-s", sig, &pid])
            .stdin(Stdio::null())
            .status()
            .expect("run kill(1)");
        assert!(status.success(), "kill -s {sig} {pid}");
    };
    signal("STOP");
    let asked = Instant::now();
    let response = get_status(&a, "alice");
    let waited = asked.elapsed();
    signal("CONT");
    assert_eq!(response.status, 503, "{response:?}");
    assert_eq!(response.json()["error"], "unavailable", "{response:?}");
    assert!(
        waited >= Duration::from_millis(1_500),
        "gave up after {waited:?}"
    );
    // An online user needs no lookup; once Redis is back, answers come again.
    let started = Instant::now();
    while get_status(&a, "alice").status != 200 {
        assert!(
            started.elapsed() < STEP * 2,
            "no answer after Redis came back"
        );
        thread::sleep(Duration::from_millis(50));
    }
}
