//! Webhooks (`--webhook`, `--webhook-secret`, `--webhook-key`, `--webhook-queue`): what an
//! app's backend receives, checked at the receiver.
//!
//! - The `pusher` npm SDK validates every request (`tests/pusher/webhook_receiver.mjs`),
//!   answering 500 to the first ones: every event still arrives, once, in order, a reload
//!   inside the leave grace fires nothing. Needs Node.js and `npm ci --prefix tests/pusher`;
//!   without them it says SKIPPED, unless `ROLLCALL_PUSHER_TESTS=1` (set by `.ci/run`).
//! - A receiver that is down: the queue's bound holds, overflow is counted, presence is
//!   served meanwhile. A receiver that answers garbage, or closes, or answers without
//!   framing: counted as failures, retried, never a stall.
//! - Two nodes of a cluster deliver each event once, and a crashed node's users are removed
//!   by the survivor (needs `redis-server`; `ROLLCALL_REDIS_TESTS=1` in CI).
//!
//! The Rust receivers here check the signature with the server's own HMAC helper; the Node
//! one with the SDK, which is the independent check.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use rollcall::pusher::auth::sign;
use serde_json::{json, Value};

const APP: &str = "4321:rollcall-key:rollcall-secret";
const NATIVE_SECRET: &str = "webhook-secret";

/// How long events may take to arrive: the first requests are refused and retried after
/// 0.5 + 1 + 2 s, and a leave waits for its grace.
const ARRIVE: Duration = Duration::from_secs(20);

/// The events a receiver accepted, in order: `(X-Pusher-Key, event)`.
type Received = Arc<Mutex<Vec<(String, Value)>>>;

/// Waits until `received` holds `count` events; fails with what it holds.
#[track_caller]
fn wait_events(received: &Received, count: usize, what: &str) {
    let started = Instant::now();
    loop {
        let got = received.lock().expect("lock").len();
        if got >= count {
            return;
        }
        assert!(
            started.elapsed() < ARRIVE,
            "{what}: {got} of {count} events after {}ms: {:?}",
            ms(ARRIVE),
            received.lock().expect("lock")
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// The events as `KEY name channel [user]` lines.
fn lines(received: &Received) -> Vec<String> {
    common::webhook_lines(&received.lock().expect("lock"))
}

// ---------------------------------------------------------------------------------------------
// The pusher SDK as the receiver
// ---------------------------------------------------------------------------------------------

/// A raw Pusher client (tungstenite) and its socket id.
fn pusher_socket(server: &Server) -> (Client, String) {
    let mut client = Client::connect_target(server.addr(), "/app/rollcall-key?protocol=7");
    let established = client.recv_json(STEP);
    let data: Value = serde_json::from_str(established["data"].as_str().unwrap_or_default())
        .expect("data is a JSON string");
    let socket = data["socket_id"].as_str().expect("socket_id").to_owned();
    (client, socket)
}

#[test]
fn the_pusher_sdk_validates_every_event_once_in_order_despite_500s() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sdk = root.join("tests/pusher/node_modules/pusher/package.json");
    if !node_installed() || !sdk.exists() {
        skip_or_fail(
            "ROLLCALL_PUSHER_TESTS",
            "webhook receiver with the pusher SDK",
            "node or tests/pusher/node_modules/pusher is missing",
            "run .ci/run, or `npm ci --prefix tests/pusher`",
        );
        return;
    }
    let script = root.join("tests/pusher/webhook_receiver.mjs");
    let script = script.to_str().expect("utf-8 path");
    let (_receiver, out) = ChildGuard::spawn_reading(
        "node",
        &[
            script,
            "4321",
            "rollcall-key",
            "rollcall-secret",
            "rollcall",
            NATIVE_SECRET,
            "3",
        ],
    );
    let port = out
        .recv_timeout(STEP)
        .expect("the receiver's LISTENING line")
        .strip_prefix("LISTENING ")
        .expect("LISTENING first")
        .to_owned();
    let received: Received = Arc::default();
    let rejected = Arc::new(Mutex::new(0));
    let invalid = Arc::new(Mutex::new(Vec::new()));
    {
        let (received, rejected, invalid) = (received.clone(), rejected.clone(), invalid.clone());
        thread::spawn(move || {
            for line in out {
                if let Some(rest) = line.strip_prefix("EVENT ") {
                    let (key, json) = rest.split_once(' ').expect("EVENT KEY JSON");
                    let event = serde_json::from_str(json).expect("an event");
                    received.lock().expect("lock").push((key.to_owned(), event));
                } else if line.starts_with("REJECTED ") {
                    *rejected.lock().expect("lock") += 1;
                } else {
                    invalid.lock().expect("lock").push(line);
                }
            }
        });
    }
    let url = format!("http://127.0.0.1:{port}/pusher/webhooks");
    let server = Server::start(&[
        "--webhook",
        &url,
        "--webhook-secret",
        NATIVE_SECRET,
        "--leave-grace",
        "1s",
        "--pusher-app",
        APP,
    ]);
    // Native: alice occupies the lobby, reloads inside the grace, bob joins and updates.
    let (alice, _) = Client::join(server.addr(), "user=alice");
    wait_events(&received, 2, "alice joined");
    alice.close();
    let (alice, _) = Client::join(server.addr(), "user=alice");
    let (mut bob, _) = Client::join(server.addr(), "user=bob");
    bob.send_json(&json!({"type":"update","channel":"lobby","meta":{"status":"away"}}));
    wait_events(&received, 4, "bob joined and updated");
    alice.close();
    wait_events(&received, 5, "alice left after the grace");
    bob.close();
    wait_events(&received, 7, "bob left, the lobby emptied");
    // Pusher: a member of a presence channel sends a client event, then leaves.
    let (mut ann, socket) = pusher_socket(&server);
    let data = r#"{"user_id":"ann","user_info":{"name":"Ann"}}"#;
    let auth = format!(
        "rollcall-key:{}",
        sign("rollcall-secret", &format!("{socket}:presence-room:{data}"))
    );
    ann.send_json(&json!({"event":"pusher:subscribe","data":{
        "channel":"presence-room","auth":auth,"channel_data":data}}));
    let answer = ann.recv_json(STEP);
    assert_eq!(
        answer["event"], "pusher_internal:subscription_succeeded",
        "{answer}"
    );
    ann.send_json(&json!({"event":"client-typing","channel":"presence-room","data":{"n":1}}));
    wait_events(&received, 10, "ann joined and typed");
    ann.close();
    wait_events(&received, 12, "ann left");
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        lines(&received),
        [
            "rollcall channel_occupied lobby",
            "rollcall member_added lobby alice",
            "rollcall member_added lobby bob",
            "rollcall member_updated lobby bob",
            "rollcall member_removed lobby alice",
            "rollcall member_removed lobby bob",
            "rollcall channel_vacated lobby",
            "rollcall-key channel_occupied presence-room",
            "rollcall-key member_added presence-room ann",
            "rollcall-key client_event presence-room ann",
            "rollcall-key member_removed presence-room ann",
            "rollcall-key channel_vacated presence-room",
        ],
        "every event once, in order (the reload inside the grace fired nothing)"
    );
    let events = received.lock().expect("lock");
    assert_eq!(events[3].1["meta"], json!({"status":"away"}));
    assert_eq!(events[9].1["event"], "client-typing");
    assert_eq!(events[9].1["data"], r#"{"n":1}"#);
    assert_eq!(events[9].1["socket_id"], socket.as_str());
    assert_eq!(
        *rejected.lock().expect("lock"),
        3,
        "the first 3 were refused"
    );
    assert!(
        invalid.lock().expect("lock").is_empty(),
        "the SDK refused: {:?}",
        invalid.lock().expect("lock")
    );
    let metrics = scrape(server.addr());
    assert_eq!(metrics.get("rollcall_webhook_events_sent_total"), 12.0);
    assert_eq!(metrics.get("rollcall_webhook_failed_total"), 3.0);
    assert_eq!(metrics.get("rollcall_webhook_retried_total"), 3.0);
    assert_eq!(metrics.get("rollcall_webhook_dropped_total"), 0.0);
}

// ---------------------------------------------------------------------------------------------
// A Rust receiver: keep-alive HTTP/1.1, signatures checked, scripted answers
// ---------------------------------------------------------------------------------------------

/// What the Rust receiver answers to one request.
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// 200 with a Content-Length (the connection is kept).
    Ok,
    /// Bytes that are not HTTP.
    Garbage,
    /// Closes the connection without a word.
    Close,
    /// A 200 framed by the connection's end, then a close.
    Unframed,
}

/// A receiver on a free port: answers per `script` (then `Ok`), keeps the valid events.
fn rust_receiver(script: Vec<Answer>) -> (SocketAddr, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let received: Received = Arc::default();
    let sink = received.clone();
    let script = Arc::new(Mutex::new(script.into_iter()));
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let (sink, script) = (sink.clone(), script.clone());
            thread::spawn(move || serve(stream, &sink, &script));
        }
    });
    (addr, received)
}

fn serve(stream: TcpStream, sink: &Received, script: &Mutex<std::vec::IntoIter<Answer>>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    loop {
        let mut headers = BTreeMap::new();
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        assert!(line.starts_with("POST /hook HTTP/1.1"), "{line:?}");
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).expect("a header");
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(": ").expect("name: value");
            headers.insert(name.to_ascii_lowercase(), value.to_owned());
        }
        let length: usize = headers["content-length"].parse().expect("length");
        let mut body = vec![0; length];
        reader.read_exact(&mut body).expect("the body");
        let body = String::from_utf8(body).expect("utf-8 body");
        let answer = script.lock().expect("lock").next().unwrap_or(Answer::Ok);
        match answer {
            Answer::Garbage => {
                let _ = writer.write_all(b"\x00\x01 this is no HTTP\r\n\r\n");
                return;
            }
            Answer::Close => return,
            Answer::Unframed | Answer::Ok => {}
        }
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(headers["x-pusher-key"], "rollcall");
        assert_eq!(headers["x-pusher-signature"], sign(NATIVE_SECRET, &body));
        let batch: Value = serde_json::from_str(&body).expect("JSON");
        assert!(batch["time_ms"].as_u64().is_some(), "{batch}");
        for event in batch["events"].as_array().expect("events") {
            sink.lock()
                .expect("lock")
                .push(("rollcall".into(), event.clone()));
        }
        if let Answer::Unframed = answer {
            let _ = writer.write_all(b"HTTP/1.1 200 OK\r\n\r\nok");
            return;
        }
        let _ = writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
    }
}

#[test]
fn garbage_closes_and_unframed_answers_are_retried_without_stalling() {
    let (addr, received) = rust_receiver(vec![Answer::Garbage, Answer::Close, Answer::Unframed]);
    let url = format!("http://{addr}/hook");
    let server = Server::start(&["--webhook", &url, "--webhook-secret", NATIVE_SECRET]);
    let (mut alice, _) = Client::join(server.addr(), "user=alice");
    // The loop serves meanwhile.
    alice.send_json(&json!({"type":"join","channel":"second"}));
    alice.expect_type("state");
    // Garbage and the close lose the first batch twice; the unframed 200 takes it.
    wait_events(&received, 2, "the lobby's events after two failures");
    let (_bob, _) = Client::join(server.addr(), "user=bob");
    wait_events(&received, 5, "the next events on a new connection");
    let got = lines(&received);
    assert_eq!(
        got[..2],
        [
            "rollcall channel_occupied lobby",
            "rollcall member_added lobby alice"
        ]
    );
    assert!(
        got.contains(&"rollcall member_added lobby bob".to_owned()),
        "{got:?}"
    );
    let metrics = scrape(server.addr());
    assert_eq!(metrics.get("rollcall_webhook_failed_total"), 2.0);
    assert_eq!(http_get(server.addr(), "/healthz").status, 200);
}

#[test]
fn a_receiver_down_longer_than_the_queue_holds_drops_and_counts() {
    // A port with nobody listening.
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let server = Server::start(&[
        "--webhook",
        &url,
        "--webhook-secret",
        NATIVE_SECRET,
        "--webhook-queue",
        "20",
        "--max-channels-per-conn",
        "100",
    ]);
    let (mut alice, _) = Client::join(server.addr(), "user=alice");
    // 2 events for the lobby, then per room 2 for the join (occupied, added) and 2 for the
    // leave (removed, vacated): 98 in all.
    for i in 0..24 {
        let channel = format!("room{i}");
        alice.send_json(&json!({"type":"join","channel":channel}));
        alice.expect_type("state");
        alice.send_json(&json!({"type":"leave","channel":channel}));
    }
    // A leave has no reply: a ping's answer says they were all done.
    alice.roundtrip_ping();
    let metrics = scrape(server.addr());
    let queued = metrics.get("rollcall_webhook_queued");
    let dropped = metrics.get("rollcall_webhook_dropped_total");
    assert!(queued <= 20.0, "the bound holds: {queued} queued");
    assert_eq!(queued + dropped, 98.0, "every event is queued or counted");
    let started = Instant::now();
    while scrape(server.addr()).get("rollcall_webhook_failed_total") < 1.0 {
        assert!(started.elapsed() < STEP, "no refused connection counted");
        thread::sleep(Duration::from_millis(20));
    }
    server.wait_for_log("dropping events until the receiver catches up", STEP);
    let warnings = server
        .stderr()
        .matches("dropping events until the receiver catches up")
        .count();
    assert_eq!(warnings, 1, "logged once per burst");
    // Presence is served during the outage, as promptly as ever.
    let (_bob, state) = Client::join(server.addr(), "user=bob");
    assert_eq!(user_names(&state), ["alice", "bob"]);
}

// ---------------------------------------------------------------------------------------------
// A cluster
// ---------------------------------------------------------------------------------------------

#[test]
fn two_nodes_deliver_each_event_once_and_the_survivor_reaps() {
    let Some(redis) = common::redis::start_or_skip("webhooks in a cluster") else {
        return;
    };
    let (addr, received) = rust_receiver(Vec::new());
    let url = format!("http://{addr}/hook");
    let redis_url = redis.url();
    let node = |id: &str| {
        let server = Server::start(&[
            "--redis",
            &redis_url,
            "--node-ttl",
            "2s",
            "--node-id",
            id,
            "--webhook",
            &url,
            "--webhook-secret",
            NATIVE_SECRET,
        ]);
        server.wait_for_log("cluster live", Duration::from_secs(10));
        server
    };
    let a = node("a");
    let mut b = node("b");
    // alice on both nodes, bob on b only.
    let (alice_a, _) = Client::join(a.addr(), "user=alice");
    wait_events(&received, 2, "alice's first connection");
    let (alice_b, _) = Client::join(b.addr(), "user=alice");
    let (_bob, _) = Client::join(b.addr(), "user=bob");
    wait_events(&received, 3, "bob joined");
    alice_a.close();
    alice_b.close();
    wait_events(&received, 4, "alice's last connection left");
    b.signal("KILL");
    assert!(
        b.wait_exit(STEP).is_some(),
        "node b still runs after SIGKILL"
    );
    wait_events(&received, 6, "bob reaped by node a");
    thread::sleep(Duration::from_millis(500));
    assert_eq!(
        lines(&received),
        [
            "rollcall channel_occupied lobby",
            "rollcall member_added lobby alice",
            "rollcall member_added lobby bob",
            "rollcall member_removed lobby alice",
            "rollcall member_removed lobby bob",
            "rollcall channel_vacated lobby",
        ],
        "each event once cluster-wide"
    );
}
