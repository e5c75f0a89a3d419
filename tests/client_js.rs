//! rollcall.js, the browser client (`clients/js/`), tested three ways:
//! - its state logic in Node (`node --test clients/js/`: member maps, seq gaps, diffs,
//!   backoff, heartbeat, token refresh, in virtual time against a fake WebSocket);
//! - its size: under 8 KiB once minified (terser, from `tests/browser/`);
//! - in headless Chromium against the real server (`tests/browser/client.mjs`, which starts
//!   and kills its own servers: reconnect after `kill -9`, a healed seq gap, a token refresh).
//!
//! They need Node.js (and for the last two `npm ci --prefix tests/browser`, and Chromium for
//! the last); without them each says SKIPPED on stderr and passes, unless
//! `ROLLCALL_BROWSER_TESTS=1` (set by `.ci/run`) demands that it run.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{ms, node_installed, run_node_script, skip_or_fail, ScriptRun, BIN};

/// The browser the script launches (Debian's package; playwright-core downloads none).
const CHROMIUM: &str = "/usr/bin/chromium";

/// The budget for the minified client.
const MAX_MINIFIED: usize = 8 << 10;

const ADVICE: &str = "run .ci/run, or install node and chromium (apt-get install chromium) and \
                      `npm ci --prefix tests/browser`";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `node ARGS` and fails the test unless it exits with status 0.
#[track_caller]
fn node(args: &[&str], limit: Duration) -> ScriptRun {
    let run = run_node_script(root(), args, limit);
    let Some(status) = run.status else {
        panic!(
            "node {args:?} still running after {}ms (killed)\nstdout:\n{}\nstderr:\n{}",
            ms(limit),
            run.stdout,
            run.stderr
        );
    };
    assert!(
        status.success(),
        "node {args:?} failed ({status})\nstdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    run
}

/// What keeps a test from running here: Node, then the npm packages, then Chromium.
fn missing(needs_packages: bool, needs_chromium: bool) -> Option<String> {
    if !node_installed() {
        return Some("`node` is not on PATH".into());
    }
    for package in ["playwright-core", "terser"] {
        let manifest = format!("tests/browser/node_modules/{package}/package.json");
        if needs_packages && !root().join(&manifest).exists() {
            return Some(format!("{manifest} is missing"));
        }
    }
    (needs_chromium && !Path::new(CHROMIUM).exists()).then(|| format!("{CHROMIUM} is missing"))
}

#[test]
fn client_state_logic_passes_its_node_unit_tests() {
    if let Some(missing) = missing(false, false) {
        skip_or_fail(
            "ROLLCALL_BROWSER_TESTS",
            "rollcall.js unit tests",
            &missing,
            ADVICE,
        );
        return;
    }
    let run = node(&["--test", "clients/js/"], Duration::from_secs(60));
    // `node --test` ends with a summary; a run that found no test file must not pass.
    let passed = run
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("# pass "))
        .and_then(|n| n.trim().parse::<u32>().ok());
    assert!(
        passed.is_some_and(|n| n >= 10),
        "node --test ran too few tests ({passed:?}):\n{}",
        run.stdout
    );
}

#[test]
fn client_is_under_8_kib_minified() {
    if let Some(missing) = missing(true, false) {
        skip_or_fail(
            "ROLLCALL_BROWSER_TESTS",
            "rollcall.js size",
            &missing,
            ADVICE,
        );
        return;
    }
    let run = node(
        &["tests/browser/size.mjs", "clients/js/rollcall.js"],
        Duration::from_secs(60),
    );
    let minified: usize = run
        .stdout
        .split_whitespace()
        .skip_while(|word| *word != "minified")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no size in {:?}", run.stdout));
    assert!(
        minified < MAX_MINIFIED,
        "rollcall.js is {minified} bytes minified, over {MAX_MINIFIED}: {}",
        run.stdout
    );
    eprintln!("rollcall.js: {}", run.stdout.trim());
}

#[test]
fn client_reconnects_heals_gaps_and_refreshes_tokens_in_a_real_browser() {
    if let Some(missing) = missing(true, true) {
        skip_or_fail(
            "ROLLCALL_BROWSER_TESTS",
            "rollcall.js browser test",
            &missing,
            ADVICE,
        );
        return;
    }
    // The script bounds itself at 75 s; this only catches a hung Node.
    let run = node(&["tests/browser/client.mjs", BIN], Duration::from_secs(90));
    eprintln!("{}", run.stdout);
}
