//! `rollcall-load` against the real server, each mode small: the tool's own checks must pass
//! (every connection up, no failure, no missing message, no member left behind) and its JSON
//! must carry the figures the benchmarks read. Also: a run that cannot succeed fails on its
//! own, with status 1 and a message, within its `--timeout`.
//!
//! The cluster options (`--observe-url`, `--subscribe-url`) run against two nodes sharing a
//! private `redis-server` (tests/common/redis.rs); without that program the test prints
//! `SKIPPED` and passes, unless `ROLLCALL_REDIS_TESTS=1`.

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::redis::{self, RedisServer};
use common::*;
use serde_json::Value;

/// Longest any smoke run may take before the test fails (they take well under a few seconds).
const RUN_LIMIT: Duration = Duration::from_secs(30);

/// How long a cluster node may take from `listening on` to its `cluster live` line.
const LIVE: Duration = Duration::from_secs(10);

/// What a load run printed and how it ended.
struct LoadRun {
    code: Option<i32>,
    json: Value,
    stderr: String,
}

/// Runs `rollcall-load MODE --url ws://ADDR/ --json ARGS...`, killed after [`RUN_LIMIT`].
#[track_caller]
fn load(url: &str, mode: &str, args: &[&str]) -> LoadRun {
    let mut child = Command::new(load_bin())
        .arg(mode)
        .args(["--url", url, "--json", "--timeout", "20s"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rollcall-load");
    let mut out = child.stdout.take().expect("stdout is piped");
    let mut err = child.stderr.take().expect("stderr is piped");
    let out_thread = thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_thread = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        match child.try_wait().expect("wait for rollcall-load") {
            Some(status) => break Some(status),
            None if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let stdout = out_thread.join().expect("stdout reader");
    let stderr = err_thread.join().expect("stderr reader");
    let Some(status) = status else {
        panic!(
            "rollcall-load {mode} {args:?} ran over {}ms; stderr:\n{stderr}",
            ms(RUN_LIMIT)
        );
    };
    let json = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("rollcall-load {mode}: stdout is not one JSON object ({e}): {stdout:?}\nstderr:\n{stderr}")
    });
    LoadRun {
        code: status.code(),
        json,
        stderr,
    }
}

fn url(server: &Server) -> String {
    format!("ws://{}/", server.addr())
}

#[track_caller]
fn assert_passed(run: &LoadRun) {
    assert_eq!(
        run.code,
        Some(0),
        "run failed: {}\nstderr:\n{}",
        run.json,
        run.stderr
    );
    assert_eq!(run.json["ok"], true, "{}", run.json);
}

#[test]
fn hold_over_two_sources_answers_pings_and_measures_the_server() {
    let server = Server::start(&["--heartbeat-interval", "500ms", "--heartbeat-timeout", "5s"]);
    let pid = server.pid().to_string();
    let run = load(
        &url(&server),
        "hold",
        &[
            "--connections",
            "300",
            "--sources",
            "2",
            "--duration",
            "1500ms",
            "--server-pid",
            &pid,
            "--query",
            "events=none&channel=big",
        ],
    );
    assert_passed(&run);
    let j = &run.json;
    assert_eq!(
        (j["connections"].as_u64(), j["up"].as_u64()),
        (Some(300), Some(300)),
        "{j}"
    );
    assert_eq!(j["failed"], 0, "{j}");
    assert_eq!(j["dropped"], 0, "{j}");
    assert!(
        j["pings"]["min_per_connection"].as_u64().unwrap() >= 1,
        "every client answered a ping: {j}"
    );
    assert!(j["handshakes_per_second"].as_f64().unwrap() > 0.0, "{j}");
    let bytes = j["server"]["bytes_per_connection"].as_f64();
    assert!(bytes.is_some(), "bytes per connection reported: {j}");
    assert!(j["server"]["cpu_connect_seconds"].is_number(), "{j}");
    assert!(j["server"]["idle_cpu_percent"].is_number(), "{j}");
}

#[test]
fn hold_split_over_two_processes_merges_their_counts() {
    let server = Server::start(&[]);
    let pid = server.pid().to_string();
    let run = load(
        &url(&server),
        "hold",
        &[
            "--connections",
            "200",
            "--procs",
            "2",
            "--duration",
            "200ms",
            "--server-pid",
            &pid,
        ],
    );
    assert_passed(&run);
    let j = &run.json;
    assert_eq!(
        (j["connections"].as_u64(), j["up"].as_u64()),
        (Some(200), Some(200)),
        "{j}"
    );
    let children = j["children"].as_array().expect("children");
    assert_eq!(children.len(), 2, "{j}");
    assert_eq!(
        children
            .iter()
            .map(|c| c["up"].as_u64().unwrap())
            .sum::<u64>(),
        200
    );
    assert!(j["server"]["rss_end_bytes"].is_number(), "{j}");
}

#[test]
fn churn_leaves_no_member_behind() {
    let server = Server::start(&[]);
    let run = load(
        &url(&server),
        "churn",
        &["--cycles", "200", "--concurrency", "20"],
    );
    assert_passed(&run);
    let j = &run.json;
    assert_eq!(j["completed"], 200, "{j}");
    assert_eq!(j["presence_check"]["ok"], true, "{j}");
    assert_eq!(j["presence_check"]["members_left"], 0, "{j}");
    // A single server's first answer is final: no retry.
    assert_eq!(j["presence_check"]["settle_ms"], 0, "{j}");
    assert!(j["cycles_per_second"].as_f64().unwrap() > 0.0, "{j}");
}

#[test]
fn churn_checks_presence_with_the_admin_token() {
    let server = Server::start(&["--admin-token", "s3cret"]);
    let run = load(
        &url(&server),
        "churn",
        &[
            "--cycles",
            "20",
            "--concurrency",
            "5",
            "--admin-token",
            "s3cret",
        ],
    );
    assert_passed(&run);
    // Without the token the check cannot be made, and the run says so.
    let refused = load(
        &url(&server),
        "churn",
        &["--cycles", "5", "--admin-token", "wrong"],
    );
    assert_eq!(refused.code, Some(1), "{}", refused.json);
    assert!(refused.stderr.contains("401"), "{}", refused.stderr);
}

#[test]
fn fanout_delivers_every_message_to_every_subscriber() {
    let server = Server::start(&[]);
    let run = load(
        &url(&server),
        "fanout",
        &["--subscribers", "50", "--messages", "20"],
    );
    assert_passed(&run);
    let j = &run.json;
    assert_eq!(j["delivered"], 1000, "{j}");
    assert_eq!(j["missing"], 0, "{j}");
    assert_eq!(j["latency"]["samples"], 1000, "{j}");
    assert!(j["latency"]["max_ms"].as_f64().unwrap() >= j["latency"]["p50_ms"].as_f64().unwrap());
}

#[test]
fn fanout_over_two_processes_delivers_everything_and_times_the_server() {
    let server = Server::start(&[]);
    let pid = server.pid().to_string();
    let args = [
        "--subscribers",
        "60",
        "--messages",
        "10",
        "--procs",
        "2",
        "--server-pid",
        &pid,
    ];
    let run = load(&url(&server), "fanout", &args);
    assert_passed(&run);
    let j = &run.json;
    assert_eq!(
        (j["delivered"].as_u64(), j["procs"].as_u64()),
        (Some(600), Some(2)),
        "{j}"
    );
    assert_eq!(j["latency"]["samples"], 600, "{j}");
    assert!(j["server_cpu_us_per_delivery"].as_f64().is_some(), "{j}");
}

#[test]
fn pusher_clients_hold_presence_and_receive_rest_events() {
    let server = Server::start(&["--pusher-app", "5:load-key:load-secret"]);
    let hold = load(
        &url(&server),
        "hold",
        &[
            "--pusher",
            "5:load-key:load-secret",
            "--connections",
            "150",
            "--duration",
            "200ms",
        ],
    );
    assert_passed(&hold);
    assert_eq!(hold.json["up"], 150, "{}", hold.json);
    let fanout = load(
        &url(&server),
        "fanout",
        &[
            "--pusher",
            "5:load-key:load-secret",
            "--subscribers",
            "40",
            "--messages",
            "5",
        ],
    );
    assert_passed(&fanout);
    assert_eq!(fanout.json["delivered"], 200, "{}", fanout.json);
    // A wrong secret: the subscriptions are refused, so nobody comes up.
    let refused = load(
        &url(&server),
        "hold",
        &[
            "--pusher",
            "5:load-key:wrong",
            "--connections",
            "3",
            "--timeout",
            "2s",
        ],
    );
    assert_ne!(refused.code, Some(0), "{}", refused.stderr);
    assert_eq!(refused.json["up"], 0, "{}", refused.json);
}

#[test]
fn presence_latency_times_joins_at_every_observer() {
    let server = Server::start(&[]);
    let run = load(
        &url(&server),
        "presence-latency",
        &["--members", "20", "--samples", "5"],
    );
    assert_passed(&run);
    let j = &run.json;
    assert_eq!(j["observers"], 16, "{j}");
    assert_eq!(j["join_latency"]["samples"], 80, "{j}");
    assert_eq!(j["leave_latency"]["samples"], 80, "{j}");
}

/// A node of the cluster of `redis`, once it logged `cluster live` (bounded).
#[track_caller]
fn cluster_node(redis: &RedisServer) -> Server {
    let node = Server::start(&["--redis", &redis.url(), "--node-ttl", "15s"]);
    node.wait_for_log("cluster live", LIVE);
    node
}

#[test]
fn cluster_runs_cross_from_one_node_to_the_other() {
    let Some(redis) = redis::start_or_skip("cluster_runs_cross_from_one_node_to_the_other") else {
        return;
    };
    let (a, b) = (cluster_node(&redis), cluster_node(&redis));
    let (url_a, url_b) = (url(&a), url(&b));

    // Samples join at A, the members watch at B: every join and leave crossed Redis.
    let run = load(
        &url_a,
        "presence-latency",
        &["--members", "20", "--samples", "5", "--observe-url", &url_b],
    );
    assert_passed(&run);
    let j = &run.json;
    assert_eq!(j["observe_url"], url_b.as_str(), "{j}");
    assert_eq!(
        j["join_latency"]["samples"], 80,
        "the warm-up is not counted: {j}"
    );
    assert_eq!(j["leave_latency"]["samples"], 80, "{j}");

    // Published at A, half the subscribers at B.
    let run = load(
        &url_a,
        "fanout",
        &[
            "--subscribers",
            "60",
            "--messages",
            "10",
            "--subscribe-url",
            &url_a,
            "--subscribe-url",
            &url_b,
        ],
    );
    assert_passed(&run);
    let j = &run.json;
    assert_eq!(
        (j["delivered"].as_u64(), j["missing"].as_u64()),
        (Some(600), Some(0)),
        "{j}"
    );
    let nodes = j["nodes"].as_array().expect("per-node figures");
    for (node, want) in nodes.iter().zip([&url_a, &url_b]) {
        assert_eq!(node["url"], want.as_str(), "{j}");
        assert_eq!(node["subscribers"], 30, "{j}");
        assert_eq!(node["delivered"], 300, "{j}");
        assert_eq!(node["latency"]["samples"], 300, "{j}");
    }
    assert_eq!(nodes.len(), 2, "{j}");
}

#[test]
fn subscribers_on_a_node_outside_the_cluster_are_missing_their_messages() {
    // Two separate servers: what is published at the first never reaches the second.
    let (published, elsewhere) = (Server::start(&[]), Server::start(&[]));
    let run = load(
        &url(&published),
        "fanout",
        &[
            "--subscribers",
            "10",
            "--messages",
            "3",
            "--subscribe-url",
            &url(&published),
            "--subscribe-url",
            &url(&elsewhere),
            "--timeout",
            "1s",
        ],
    );
    assert_eq!(run.code, Some(1), "{}", run.json);
    let j = &run.json;
    assert_eq!(
        (j["delivered"].as_u64(), j["missing"].as_u64()),
        (Some(15), Some(15)),
        "{j}"
    );
    assert_eq!(j["nodes"][1]["missing"], 15, "{j}");
    assert!(run.stderr.contains("15 messages missing"), "{}", run.stderr);
}

#[test]
fn failures_are_counted_by_kind_and_fail_the_run() {
    // A port nobody listens on: every connect is refused.
    let free = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let run = load(&format!("ws://{free}/"), "hold", &["--connections", "5"]);
    assert_eq!(run.code, Some(1), "{}", run.json);
    assert_eq!(run.json["failures"]["refused"], 5, "{}", run.json);
    assert!(
        run.stderr.contains("5 connections failed"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_phase_that_times_out_stops_the_run() {
    // The kernel completes the TCP handshakes into this backlog, but nobody ever answers.
    let mute = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = mute.local_addr().expect("addr");
    let started = Instant::now();
    let run = load(
        &format!("ws://{addr}/"),
        "hold",
        &["--connections", "3", "--timeout", "500ms"],
    );
    assert_eq!(run.code, Some(1), "{}", run.json);
    assert_eq!(run.json["failures"]["timeout"], 3, "{}", run.json);
    assert!(
        run.stderr.contains("timed out after 500ms"),
        "{}",
        run.stderr
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {}ms",
        ms(started.elapsed())
    );
    drop(mute);
}

/// A reconnect storm with default flags: 3,000 clients connecting at once are all admitted,
/// none gets 503 (past `--max-pending-handshakes` they would wait in the listen backlog; the
/// pause itself is tested in `limits.rs`).
#[test]
fn a_storm_of_3000_connects_with_default_flags_is_admitted_in_full() {
    let server = Server::start(&[]);
    let hold = load(
        &url(&server),
        "hold",
        &[
            "--connections",
            "3000",
            "--in-flight",
            "3000",
            "--duration",
            "100ms",
            "--query",
            "events=none",
        ],
    );
    assert_passed(&hold);
    assert_eq!(hold.json["up"], 3000, "{}", hold.json);
    let metrics = scrape(server.addr());
    assert_eq!(metrics.closed("refused"), 0.0, "nobody was refused");
}

/// A storm of `members` clients in mode `events` (and `extra` flags) against a fresh server
/// with default flags: it passes, every client is admitted and converges.
fn storm_of_everyone(members: u32, events: &str, extra: &[&str]) -> LoadRun {
    let server = Server::start(&[]);
    let count = members.to_string();
    let mut args = vec![
        "--members",
        &count,
        "--in-flight",
        &count,
        "--events",
        events,
    ];
    args.extend_from_slice(extra);
    let storm = load(&url(&server), "storm", &args);
    assert_passed(&storm);
    assert_eq!(storm.json["admitted"], members, "{}", storm.json);
    assert_eq!(storm.json["converged"], members, "{}", storm.json);
    storm
}

/// A few hundred members joining at once in `events=diff` all converge on the full member
/// list, each with fewer messages than `events=all` would cost the last joiner's peers.
#[test]
fn storm_diff_members_converge_with_few_messages() {
    let storm = storm_of_everyone(300, "diff", &[]);
    let messages = storm.json["messages_per_client"]
        .as_f64()
        .expect("a number");
    assert!(
        messages < 150.0,
        "{messages} messages per client: events=all averages 150 here"
    );
}

/// `storm --procs 2`: the clients split over two processes still converge on every member,
/// in `events=all` too, where a process leaving early would be heard as leaves by the other's
/// clients.
#[test]
fn storm_over_two_processes_converges_on_every_member() {
    let storm = storm_of_everyone(400, "all", &["--procs", "2"]);
    let children = storm.json["children"].as_array().expect("children");
    assert_eq!(children.len(), 2, "{}", storm.json);
    assert!(
        children.iter().all(|child| child["converged"] == 200),
        "{}",
        storm.json
    );
}

/// `storm --events none` times admission alone: every client is up, none hears presence.
#[test]
fn storm_none_counts_admission_alone() {
    let storm = storm_of_everyone(300, "none", &[]);
    assert_eq!(storm.json["messages_per_client"], 0.0, "{}", storm.json);
}
