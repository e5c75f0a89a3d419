//! Pusher compatibility with the clients Pusher users have, unmodified: pusher-js 8 (its Node
//! build), laravel-echo 2 on pusher-js, and the `pusher` server SDK 5 as the app's backend
//! and REST client. Each scenario is a script in `tests/pusher/` that starts the rollcall
//! binary itself (it restarts it to check reconnection); this file runs them and reports.
//!
//! Needs Node.js and `npm ci --prefix tests/pusher`; `.ci/run` installs them. Without them
//! each test says SKIPPED on stderr and passes, unless `ROLLCALL_PUSHER_TESTS=1` (set by
//! `.ci/run`) demands that it run.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{ms, node_installed, run_node_script, skip_or_fail};

/// A whole scenario; the scripts bound themselves at 90 s, this only catches a hung Node.
const SCENARIO_RUN: Duration = Duration::from_secs(120);

const BIN: &str = env!("CARGO_BIN_EXE_rollcall");

/// Runs `tests/pusher/NAME.mjs` against the binary, or says why it cannot.
fn scenario(name: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let installed = ["pusher-js", "pusher", "laravel-echo"]
        .iter()
        .all(|package| {
            root.join("tests/pusher/node_modules")
                .join(package)
                .join("package.json")
                .exists()
        });
    if !installed || !node_installed() {
        skip_or_fail(
            "ROLLCALL_PUSHER_TESTS",
            &format!("Pusher scenario {name}"),
            "Node.js or tests/pusher/node_modules is missing",
            "run .ci/run, or `npm ci --prefix tests/pusher`",
        );
        return;
    }
    let script = format!("tests/pusher/{name}.mjs");
    let started = Instant::now();
    let run = run_node_script(root, &[&script, BIN], SCENARIO_RUN);
    let took = started.elapsed();
    let Some(status) = run.status else {
        panic!(
            "{script} still running after {}ms (killed)\nstdout:\n{}\nstderr:\n{}",
            ms(SCENARIO_RUN),
            run.stdout,
            run.stderr
        );
    };
    assert!(
        status.success(),
        "{script} failed ({status}) after {}ms\nstdout:\n{}\nstderr:\n{}",
        ms(took),
        run.stdout,
        run.stderr
    );
    eprintln!("{script} passed in {}ms", ms(took));
}

#[test]
fn pusher_js_and_the_pusher_sdk() {
    scenario("pusher_js");
}

#[test]
fn laravel_echo_on_pusher_js() {
    scenario("laravel_echo");
}
