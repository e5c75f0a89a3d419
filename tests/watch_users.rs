//! Watchlists (`watch_users`, `unwatch_users`): the statuses at once, then `online` when a
//! watched user's first connection arrives and `offline` (with its last-seen time) when its
//! last one goes, after the leave grace; bad input; in a cluster, a user on two nodes.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// A connection that joins no channel (it watches one nobody uses), so that it hears only
/// what it watches.
#[track_caller]
fn watcher(server: &Server, name: &str) -> Client {
    Client::join(server.addr(), &format!("user={name}&watch=quiet-{name}")).0
}

/// Sends `watch_users` with `users` and returns the `users` answer.
#[track_caller]
fn watch(client: &mut Client, users: &[&str]) -> Value {
    client.send_json(&json!({"type": "watch_users", "users": users, "ref": "w"}));
    let answer = client.expect_type("users");
    assert_eq!(answer["ref"], "w", "{answer}");
    answer
}

/// Asserts that nothing is pending for the client (its ping's pong comes first).
#[track_caller]
fn nothing_pending(client: &mut Client, why: &str) {
    let before = client.roundtrip_ping();
    assert!(before.is_empty(), "{why}: {before:?}");
}

/// Waits for `{"type":"offline","user":user}` and checks its last-seen time.
#[track_caller]
fn expect_offline(client: &mut Client, user: &str, not_before: u64) -> u64 {
    let offline = client.expect_type("offline");
    assert_eq!(offline["user"], user, "{offline}");
    let seen = offline["last_seen"].as_u64().expect("last_seen in ms");
    // The server's clock is its loop's, in whole milliseconds from its start: up to a few
    // milliseconds behind this one.
    assert!(
        seen + 5 >= not_before && seen <= unix_ms(),
        "{seen} not in [{not_before}, now]"
    );
    seen
}

#[test]
fn a_user_goes_offline_when_its_last_connection_goes() {
    let server = Server::start(&[]);
    let mut w = watcher(&server, "w");
    assert_eq!(
        watch(&mut w, &["alice", "bob"]),
        json!({"type":"users","online":[],"offline":{"alice":null,"bob":null},"ref":"w"})
    );

    let (one, _) = Client::join(server.addr(), "user=alice");
    assert_eq!(
        w.expect_type("online"),
        json!({"type":"online","user":"alice"})
    );
    let (two, _) = Client::join(server.addr(), "user=alice&channel=dev");
    nothing_pending(&mut w, "a second connection is no news");

    // Another watcher who arrives now sees alice online and bob offline.
    let mut late = watcher(&server, "late");
    assert_eq!(
        watch(&mut late, &["bob", "alice", "bob"]),
        json!({"type":"users","online":["alice"],"offline":{"bob":null},"ref":"w"})
    );

    let before = unix_ms();
    one.close();
    nothing_pending(&mut w, "alice still has a connection");
    two.close();
    let seen = expect_offline(&mut w, "alice", before);
    assert_eq!(
        expect_offline(&mut late, "alice", before),
        seen,
        "every watcher hears the same time"
    );
    let mut third = watcher(&server, "third");
    assert_eq!(
        watch(&mut third, &["alice"])["offline"],
        json!({ "alice": seen }),
        "the last-seen time is remembered"
    );
}

#[test]
fn offline_waits_for_the_leave_grace_and_a_reload_inside_it_tells_nothing() {
    let grace = Duration::from_millis(800);
    let server = Server::start(&["--leave-grace", "800ms"]);
    let mut w = watcher(&server, "w");
    watch(&mut w, &["alice"]);
    let (alice, _) = Client::join(server.addr(), "user=alice");
    w.expect_type("online");

    // A reload: closed and back within the grace.
    alice.close();
    let (alice, _) = Client::join(server.addr(), "user=alice");
    w.expect_silence(grace + Duration::from_millis(400));

    let before = unix_ms();
    let closed = Instant::now();
    alice.close();
    nothing_pending(&mut w, "inside the grace alice is still online");
    expect_offline(&mut w, "alice", before);
    assert!(
        closed.elapsed() >= grace - Duration::from_millis(50),
        "offline after {:?}, before the grace ended",
        closed.elapsed()
    );
}

#[test]
fn unwatched_users_and_ended_watchers_hear_nothing() {
    let server = Server::start(&[]);
    let mut w = watcher(&server, "w");
    let mut other = watcher(&server, "other");
    watch(&mut w, &["alice", "bob"]);
    watch(&mut other, &["alice"]);
    w.send_json(&json!({"type": "unwatch_users", "users": ["alice", "nobody"]}));
    nothing_pending(&mut w, "unwatch_users answers nothing");

    let (alice, _) = Client::join(server.addr(), "user=alice");
    assert_eq!(other.expect_type("online")["user"], "alice");
    nothing_pending(&mut w, "alice is not watched any more");
    let (bob, _) = Client::join(server.addr(), "user=bob");
    assert_eq!(w.expect_type("online")["user"], "bob", "bob still is");

    // A watcher that ends is forgotten: the next events reach only who still watches.
    other.close();
    alice.close();
    bob.close();
    expect_offline(&mut w, "bob", 0);
    nothing_pending(&mut w, "only bob was watched");
}

#[test]
fn bad_watchlists_are_errors_and_change_nothing() {
    let server = Server::start(&[]);
    let mut w = watcher(&server, "w");
    let too_many: Vec<String> = (0..101).map(|i| format!("u{i}")).collect();
    let sixty: Vec<String> = (0..60).map(|i| format!("a{i}")).collect();
    let fifty: Vec<String> = (0..50).map(|i| format!("b{i}")).collect();
    for (command, code) in [
        (json!({"type": "watch_users"}), "bad_request"),
        (
            json!({"type": "watch_users", "users": "alice"}),
            "bad_request",
        ),
        (
            json!({"type": "watch_users", "users": {"alice": 1}}),
            "bad_request",
        ),
        (
            json!({"type": "watch_users", "users": ["alice", 7]}),
            "bad_request",
        ),
        (
            json!({"type": "watch_users", "users": ["alice", ""]}),
            "bad_request",
        ),
        (
            json!({"type": "watch_users", "users": ["al\nice"]}),
            "bad_request",
        ),
        (
            json!({"type": "watch_users", "users": ["x".repeat(129)]}),
            "bad_request",
        ),
        (
            json!({"type": "unwatch_users", "users": null}),
            "bad_request",
        ),
        (
            json!({"type": "watch_users", "users": too_many}),
            "too_large",
        ),
    ] {
        let mut command = command;
        command["ref"] = json!(9);
        w.send_json(&command);
        let error = w.expect_type("error");
        assert_eq!(error["code"], code, "{command}: {error}");
        assert_eq!(error["ref"], 9, "{command}: {error}");
    }
    let answer = watch(
        &mut w,
        &sixty.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(answer["offline"].as_object().map(|o| o.len()), Some(60));
    w.send_json(&json!({"type": "watch_users", "users": fifty}));
    let error = w.expect_type("error");
    assert_eq!(error["code"], "too_large", "110 users in all: {error}");
    // Watching again what is watched stays within the cap.
    watch(
        &mut w,
        &sixty.iter().map(String::as_str).collect::<Vec<_>>(),
    );

    // Nothing of the refused commands was kept: alice is not watched, a0 is.
    let (_alice, _) = Client::join(server.addr(), "user=alice");
    let (_a0, _) = Client::join(server.addr(), "user=a0");
    assert_eq!(w.expect_type("online")["user"], "a0");
    nothing_pending(&mut w, "alice was refused");
}

#[test]
fn a_user_on_two_nodes_is_offline_once_it_left_both() {
    let Some(redis) = common::redis::start_or_skip("watchlists in a cluster") else {
        return;
    };
    let url = redis.url();
    let node = |id: &str| {
        let server = Server::start(&[
            "--redis",
            &url,
            "--node-ttl",
            "2s",
            "--node-id",
            id,
            "--leave-grace",
            "500ms",
        ]);
        server.wait_for_log("cluster live", Duration::from_secs(10));
        server
    };
    let a = node("a");
    let b = node("b");
    let (on_a, _) = Client::join(a.addr(), "user=alice");
    let mut w = watcher(&b, "w");
    let answer = watch(&mut w, &["alice", "bob"]);
    if answer["online"] != json!(["alice"]) {
        // alice's join had not reached b yet: its `online` follows.
        assert_eq!(w.expect_type("online")["user"], "alice", "{answer}");
    }
    assert_eq!(answer["offline"].get("bob"), Some(&Value::Null), "{answer}");

    let (on_b, _) = Client::join(b.addr(), "user=alice");
    let before = unix_ms();
    on_a.close();
    // The grace on a ends, but alice still has b.
    w.expect_silence(Duration::from_millis(1_000));
    on_b.close();
    expect_offline(&mut w, "alice", before);

    // A transition made on another node only: bob comes and goes on a.
    let (bob, _) = Client::join(a.addr(), "user=bob");
    assert_eq!(w.expect_type("online")["user"], "bob");
    let before = unix_ms();
    bob.close();
    expect_offline(&mut w, "bob", before);
}
