//! Churn soak: tens of thousands of connect / join / leave / disconnect cycles with up to
//! 2,000 connections open at once must leave nothing behind: no member in `/presence`, every
//! gauge back to zero, and the server's resident memory back where it was.
//!
//! Shape: 1,800 idle connections (`rollcall-load hold`, `events=none` in their own channel)
//! stay open while `rollcall-load churn` runs its cycles 200 at a time in channel `churn`,
//! so 2,000 are open at once. Churn users are `events=all` members (the tool waits for their
//! `state`), so each cycle costs about as many messages as members are present: 2,000 churning
//! at once would cost ~10x more per cycle (about 90 s for 50,000 cycles on the project's
//! 2-core machine) without exercising anything more.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Idle connections held open during the churn: with [`CONCURRENCY`] churning, 2,000 open.
const HELD: usize = 1_800;

/// Churn cycles in progress at once.
const CONCURRENCY: usize = 200;

/// Cycles of the warm-up run, after which the baseline is measured.
const WARM_UP_CYCLES: usize = 5_000;

/// Cycles of the soak itself.
const CYCLES: usize = 50_000;

/// Longest either churn run may take (the soak takes ~10 s on the project's machine).
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// One churn run with [`HELD`] connections held open meanwhile; returns its JSON report.
#[track_caller]
fn churn_while_holding(server: &Server, cycles: usize) -> Value {
    let addr = server.addr();
    let url = format!("ws://{addr}/");
    let held = HELD.to_string();
    let hold = ChildGuard::spawn(
        &load_bin(),
        &[
            "hold",
            "--url",
            &url,
            "--connections",
            &held,
            "--duration",
            "10m",
            "--query",
            "channel=idle&events=none",
            "--user-prefix",
            "held",
        ],
    );
    // `hold` prints nothing until the end: wait for its connections in the server's gauge.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let open = scrape(addr).get("rollcall_connections");
        if open >= HELD as f64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {open} of {HELD} held connections open after 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (cycles, concurrency) = (cycles.to_string(), CONCURRENCY.to_string());
    let run = run_program(
        &load_bin(),
        &[
            "churn",
            "--url",
            &url,
            "--cycles",
            &cycles,
            "--concurrency",
            &concurrency,
            "--timeout",
            "100s",
            "--json",
        ],
        RUN_LIMIT,
    );
    drop(hold);
    let report: Value = serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "churn: stdout is not one JSON object ({e}): {:?}\nstderr:\n{}",
            run.stdout, run.stderr
        )
    });
    assert_eq!(
        run.code,
        Some(0),
        "churn failed: {report}\nstderr:\n{}",
        run.stderr
    );
    assert_eq!(
        report["completed"],
        cycles.parse::<u64>().unwrap(),
        "{report}"
    );
    assert_eq!(report["presence_check"]["members_left"], 0, "{report}");
    report
}

/// Waits (bounded) until the server has carried out every ending: no connection open, none
/// pending but the scrape itself (which counts while it is being answered).
#[track_caller]
fn wait_until_empty(server: &Server) -> Metrics {
    let deadline = Instant::now() + STEP;
    loop {
        let metrics = scrape(server.addr());
        let open = metrics.get("rollcall_connections");
        let pending = metrics.get("rollcall_handshakes_pending");
        if open == 0.0 && pending == 1.0 {
            return metrics;
        }
        assert!(
            Instant::now() < deadline,
            "{open} connections and {pending} handshakes still there {}ms after the churn",
            ms(STEP)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn fifty_thousand_churn_cycles_leave_nothing_behind() {
    // Short deadlines: the wheel cancels lazily, so each ended connection leaves its
    // handshake and heartbeat entries behind until they fall due (10,000 cycles/s × a 60 s
    // timeout would be 600,000 entries). The measurement waits until they have.
    let server = Server::start(&[
        "--heartbeat-interval",
        "1s",
        "--heartbeat-timeout",
        "2s",
        "--handshake-timeout",
        "1s",
        // Every cycle's user is remembered as last seen on purpose (bounded by the capacity,
        // about 130 bytes each: benches/webhooks.sh); this test looks for what is kept by
        // mistake.
        "--last-seen-capacity",
        "0",
    ]);

    // glibc's allocator keeps memory it has freed for later reuse instead of giving it back,
    // so the first measurement comes after a warm-up churn of the same shape: the heap has
    // then grown to what that many connections at once need, and a server that cleans up
    // after itself runs the soak inside it. What the soak leaks, it adds.
    churn_while_holding(&server, WARM_UP_CYCLES);
    wait_until_empty(&server);
    let before = rss_bytes(server.pid());

    let started = Instant::now();
    let report = churn_while_holding(&server, CYCLES);
    let took = started.elapsed();
    eprintln!(
        "soak: {CYCLES} cycles ({CONCURRENCY} at once, {HELD} held) in {}ms: {report}",
        ms(took)
    );

    let metrics = wait_until_empty(&server);
    for gauge in [
        "rollcall_connections",
        "rollcall_users_online",
        "rollcall_channels",
    ] {
        assert_eq!(metrics.get(gauge), 0.0, "{gauge} after the soak");
    }
    let presence = http_get(server.addr(), "/presence").json();
    assert_eq!(presence["connections"], 0, "{presence}");
    assert_eq!(presence["users"], 0, "{presence}");
    assert_eq!(
        presence["channels"].as_object().map(|c| c.len()),
        Some(0),
        "{presence}"
    );
    // Memory comes back once the ended connections' wheel entries have fallen due (within
    // the 2 s timeout and a tick) and the allocator has returned the free pages.
    let allowed = before + before / 10;
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let after = rss_bytes(server.pid());
        if after <= allowed {
            break after;
        }
        assert!(
            Instant::now() < deadline,
            "server RSS {after} bytes 10 s after {CYCLES} cycles, {before} before (after the \
             warm-up): more than 10% above"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!("soak: server RSS {before} bytes after the warm-up, {after} after the soak");
}
