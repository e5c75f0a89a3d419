//! The library's [`rollcall::Handle`]: a server embedded in this test process, run on its own
//! thread, steered from the test's thread while real WebSocket clients watch the effects.

mod common;

use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::*;
use rollcall::{Config, Handle, HandleError, Handler, Server, Stop};
use serde_json::json;

/// A server running on its own thread; its [`Stop`] arrives on the channel.
struct Embedded {
    addr: SocketAddr,
    handle: Handle,
    stopped: mpsc::Receiver<std::io::Result<Stop>>,
}

/// Binds on the loop's own thread (a server is not `Send`: its state is single-threaded by
/// design) and hands back the address and a handle.
fn embed() -> Embedded {
    let (ready, bound) = mpsc::channel();
    let (done, stopped) = mpsc::channel();
    thread::spawn(move || {
        let config = Config::default().listen(SocketAddr::from(([127, 0, 0, 1], 0)));
        let mut server = Server::bind(config).expect("bind");
        let _ = ready.send((server.local_addr(), server.handle()));
        let _ = done.send(server.run());
    });
    let (addr, handle) = bound.recv_timeout(STEP).expect("the server bound");
    Embedded {
        addr,
        handle,
        stopped,
    }
}

#[test]
fn a_handle_is_send_and_clone() {
    fn usable_from_threads<T: Send + Clone + 'static>() {}
    usable_from_threads::<Handle>();
}

#[test]
fn publish_counts_and_presence_through_a_handle() {
    let server = embed();
    let (mut alice, _) = Client::join(server.addr, "user=alice&channel=radio");
    let (mut bob, _) = Client::connect_welcomed(server.addr, "user=bob&channel=radio&events=none");
    alice.expect_type("join");

    // From another thread, as a worker would.
    let handle = server.handle.clone();
    let delivered =
        thread::spawn(move || handle.publish("radio", &json!({"now_playing": "So What"})))
            .join()
            .expect("worker thread")
            .expect("published");
    assert_eq!(delivered, 2);
    for client in [&mut alice, &mut bob] {
        let message = client.expect_type("message");
        assert_eq!(
            message,
            json!({"type": "message", "channel": "radio", "from": null, "data": {"now_playing": "So What"}})
        );
    }

    let counts = server
        .handle
        .counts("radio")
        .expect("answered")
        .expect("radio exists");
    assert_eq!((counts.users, counts.connections), (2, 2));
    assert_eq!(server.handle.counts("nowhere"), Ok(None));
    let presence = server.handle.presence().expect("answered");
    let mut users: Vec<&String> = presence["channels"]["radio"]["users"]
        .as_object()
        .expect("users")
        .keys()
        .collect();
    users.sort();
    assert_eq!(users, ["alice", "bob"], "{presence}");
    assert_eq!(
        server
            .handle
            .publish("no such", &json!(1))
            .map_err(|e| matches!(e, HandleError::InvalidName(_))),
        Err(true)
    );
}

#[test]
fn send_to_one_user_and_disconnect_them() {
    let server = embed();
    let (mut alice, _) = Client::join(server.addr, "user=alice&channel=radio");
    let (mut bob, _) = Client::join(server.addr, "user=bob&channel=radio");
    alice.expect_type("join");

    assert_eq!(server.handle.send_to_user("bob", &json!({"hi": 1})), Ok(1));
    assert_eq!(
        bob.expect_type("message"),
        json!({"type": "message", "channel": null, "from": null, "data": {"hi": 1}})
    );
    assert!(alice.roundtrip_ping().is_empty(), "only bob got it");

    assert_eq!(server.handle.disconnect_user("bob"), Ok(1));
    assert_eq!(bob.expect_closed(STEP).map(|(code, _)| code), Some(1000));
    let (leave, _) = alice.wait_for_type("leave", STEP);
    assert_eq!(
        (leave["user"].as_str(), leave["reason"].as_str()),
        (Some("bob"), Some("closed"))
    );
    assert_eq!(
        server.handle.disconnect_user("bob"),
        Ok(0),
        "nobody left to disconnect"
    );
}

#[test]
fn shutdown_through_a_handle_ends_run_and_later_calls_say_stopped() {
    let server = embed();
    let (mut alice, _) = Client::join(server.addr, "user=alice&channel=radio");
    server.handle.shutdown().expect("sent");
    assert_eq!(
        alice.expect_closed(STEP).map(|(code, _)| code),
        Some(1001),
        "going away"
    );
    let stop = server
        .stopped
        .recv_timeout(Duration::from_secs(10))
        .expect("run returned");
    assert_eq!(stop.expect("no I/O error"), Stop::Graceful);
    // The server was dropped with its thread.
    let deadline = std::time::Instant::now() + STEP;
    while server.handle.presence() != Err(HandleError::Stopped) {
        assert!(
            std::time::Instant::now() < deadline,
            "the handle still answers after the server ended"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// Hooks that do nothing, for a spawned server.
struct NoHooks;

impl Handler for NoHooks {}

fn local_config() -> Config {
    Config::default().listen(SocketAddr::from(([127, 0, 0, 1], 0)))
}

#[test]
fn a_spawned_server_is_steered_from_its_handle_and_joins_with_its_stop() {
    let spawned = Server::spawn(local_config(), NoHooks).expect("spawned");
    let (mut alice, _) = Client::join(spawned.local_addr, "user=alice&channel=radio");
    assert_eq!(spawned.handle.publish("radio", &json!({"n": 1})), Ok(1));
    assert_eq!(alice.expect_type("message")["data"], json!({"n": 1}));
    spawned.handle.shutdown().expect("sent");
    let stop = spawned.thread.join().expect("the loop's thread");
    assert_eq!(stop.expect("no I/O error"), Stop::Graceful);
}

#[test]
fn spawning_on_a_taken_address_says_why() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let config = Config::default().listen(taken.local_addr().expect("address"));
    let error = Server::spawn(config, NoHooks).expect_err("the address is taken");
    assert!(error.to_string().contains("cannot listen"), "{error}");
}

/// Once `run` has returned, a handle answers `Stopped` within 100 ms, though the `Server`
/// value still lives on its thread (a call that waited longer would say `TimedOut`).
#[test]
fn a_handle_says_stopped_once_run_returned_while_the_server_lives() {
    let (ready, bound) = mpsc::channel();
    let (returned, run_returned) = mpsc::channel();
    let (release, released) = mpsc::channel::<()>();
    thread::spawn(move || {
        let mut server = Server::bind(local_config()).expect("bind");
        let _ = ready.send(server.handle());
        let _ = returned.send(server.run().is_ok());
        let _ = released.recv();
        drop(server);
    });
    let handle = bound.recv_timeout(STEP).expect("bound");
    handle.shutdown().expect("sent");
    assert_eq!(run_returned.recv_timeout(Duration::from_secs(10)), Ok(true));
    let patient = handle.with_timeout(Duration::from_millis(100));
    assert_eq!(patient.presence(), Err(HandleError::Stopped));
    assert_eq!(
        patient.publish("radio", &json!(1)),
        Err(HandleError::Stopped)
    );
    let _ = release.send(());
}

/// A handle whose loop is not running (bound, never run) gives up after its timeout.
#[test]
fn a_handle_with_a_timeout_gives_up_on_a_loop_that_does_not_run() {
    let server = Server::bind(local_config()).expect("bind");
    let handle = server.handle().with_timeout(Duration::from_millis(100));
    assert_eq!(handle.counts("radio"), Err(HandleError::TimedOut));
}

/// The typed queries: a snapshot, a channel's members, a user's status; and the welcome's
/// connection id names one connection to send to or disconnect.
#[test]
fn typed_queries_and_connections_by_their_welcome_id() {
    let spawned = Server::spawn(local_config(), NoHooks).expect("spawned");
    let addr = spawned.local_addr;
    let handle = &spawned.handle;
    let (mut ada, _) = Client::join(addr, "user=ada&channel=lab&channel=hall");
    let (mut bob, welcome) = Client::connect_welcomed(addr, "user=bob&channel=lab");
    bob.expect_type("state");
    ada.wait_for_type("join", STEP);

    let members = handle.members("lab").expect("members");
    let users: Vec<_> = members.iter().map(|m| (m.user.as_str(), m.conns)).collect();
    assert_eq!(users, [("ada", 1), ("bob", 1)]);
    assert_eq!(members[0].meta.as_str(), "{}");
    assert_eq!(handle.members("empty").expect("members"), []);

    let status = handle.status("ada").expect("status");
    assert_eq!(status.connections, 1);
    assert_eq!(status.channels, ["hall", "lab"]);
    assert!(status.is_online());
    assert_eq!(handle.channels_of("bob").expect("channels"), ["lab"]);
    assert!(!handle.status("nobody").expect("status").is_online());

    let snapshot = handle.snapshot().expect("snapshot");
    assert_eq!(
        (snapshot.connections, snapshot.users, snapshot.watchers),
        (2, 2, 0)
    );
    assert_eq!(
        snapshot.channels.keys().collect::<Vec<_>>(),
        ["hall", "lab"]
    );
    assert_eq!(snapshot.channels["lab"].seq, 2);
    assert_eq!(snapshot.channels["lab"].members, members);

    let bob_id = welcome["conn"].as_str().expect("the welcome's conn id");
    assert_eq!(
        handle.send_to_connection(bob_id, &json!({"hi": "bob"})),
        Ok(true)
    );
    let message = bob.expect_type("message");
    assert_eq!(message["channel"], json!(null));
    assert_eq!(message["data"], json!({"hi": "bob"}));
    assert_eq!(handle.send_to_connection("99.0", &json!(1)), Ok(false));
    assert_eq!(
        handle.send_to_connection("bob", &json!(1)),
        Err(HandleError::InvalidConnection("bob".into()))
    );
    assert_eq!(handle.publish_json("lab", r#"[ 1, {"a": "b"} ]"#), Ok(2));
    let data = bob.wait_for_type("message", STEP).0["data"].clone();
    assert_eq!(data, json!([1, {"a": "b"}]));
    assert_eq!(
        handle.publish_json("lab", "{oops"),
        Err(HandleError::InvalidJson)
    );

    assert_eq!(handle.disconnect_connection(bob_id), Ok(true));
    assert_eq!(bob.expect_closed(STEP).map(|(code, _)| code), Some(1000));
    assert_eq!(
        handle.disconnect_connection(bob_id),
        Ok(false),
        "already gone"
    );
    handle.shutdown().expect("sent");
}
