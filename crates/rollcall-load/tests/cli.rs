//! The tool's command line, run as a user runs it: help on stdout with status 0, a bad flag
//! or value named on stderr with status 2 and nothing started.
//!
//! Its runs against a real server live in the root package (`tests/load_smoke.rs`,
//! `tests/soak.rs`, `tests/faults.rs`), which needs the server binary; this file also makes
//! `cargo test` build the tool's binary beside the server's for them.

use std::process::{Command, Output, Stdio};

const TOOL: &str = env!("CARGO_BIN_EXE_rollcall-load");

fn run(args: &[&str]) -> Output {
    Command::new(TOOL)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run rollcall-load")
}

#[test]
fn help_lists_every_mode_and_exits_0() {
    let out = run(&["--help"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let help = String::from_utf8_lossy(&out.stdout);
    for mode in ["hold", "churn", "fanout", "presence-latency"] {
        assert!(help.contains(mode), "help does not mention {mode}: {help}");
    }
}

#[test]
fn bad_flags_and_values_exit_2_naming_them() {
    for (args, needle) in [
        (&["--bogus"][..], "--bogus"),
        (&["hold", "--connections", "x"][..], "--connections"),
        (&["hold", "--duration", "soon"][..], "--duration"),
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?} printed a report");
    }
}
