//! The live dashboard (`GET /`) in a real browser: starts the server, then runs
//! `tests/browser/dashboard.mjs`, which drives Debian's Chromium through playwright-core (see
//! that file for the scenario) and saves a screenshot to `target/dashboard.png`.
//!
//! A second test fills one channel with 5,000 members (`rollcall-load hold`) and runs
//! `tests/browser/dashboard-big.mjs`: the count shows within 5 s, the charts are drawn, the
//! page stays under 3,000 elements, the member list is a filterable page. Its screenshot is
//! kept at `target/dashboard-big.png` (CI's artifact); `ROLLCALL_UPDATE_SCREENSHOT=1` copies it
//! to `docs/dashboard.png`, the one the README shows.
//!
//! Needs `/usr/bin/chromium`, Node.js and `npm ci --prefix tests/browser`; `.ci/run` installs
//! them. Without them the test says SKIPPED on stderr and passes, unless
//! `ROLLCALL_BROWSER_TESTS=1` (set by `.ci/run`) demands that it run.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    http_get, load_bin, ms, node_installed, run_node_script, skip_or_fail, ChildGuard, Server,
};

/// The browser the script launches (Debian's package; playwright-core downloads none).
const CHROMIUM: &str = "/usr/bin/chromium";

/// The whole browser run; the script bounds itself at 45 s, this only catches a hung Node.
const BROWSER_RUN: Duration = Duration::from_secs(60);

#[test]
fn dashboard_shows_users_arriving_and_leaving_in_a_real_browser() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !browser_ready(root, "dashboard browser test") {
        return;
    }

    let server = Server::start(&[]);
    let url = format!("http://{}/", server.addr());
    let screenshot = root.join("target").join("dashboard.png");
    let _ = std::fs::remove_file(&screenshot);
    std::fs::create_dir_all(screenshot.parent().expect("target dir")).expect("create target/");

    let started = Instant::now();
    let screenshot_arg = screenshot.display().to_string();
    let run = run_node_script(
        root,
        &["tests/browser/dashboard.mjs", &url, &screenshot_arg],
        BROWSER_RUN,
    );
    let took = started.elapsed();
    let Some(status) = run.status else {
        panic!(
            "dashboard.mjs still running after {}ms (killed)\nstdout:\n{}\nstderr:\n{}\nserver stderr:\n{}",
            ms(BROWSER_RUN),
            run.stdout,
            run.stderr,
            server.stderr()
        );
    };
    assert!(
        status.success(),
        "dashboard.mjs failed ({status}) after {}ms\nstdout:\n{}\nstderr:\n{}\nserver stderr:\n{}",
        ms(took),
        run.stdout,
        run.stderr,
        server.stderr()
    );

    let png = std::fs::read(&screenshot)
        .unwrap_or_else(|e| panic!("no screenshot at {}: {e}", screenshot.display()));
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000,
        "{} is not a plausible PNG ({} bytes)",
        screenshot.display(),
        png.len()
    );
    eprintln!(
        "dashboard browser test passed in {}ms; screenshot: {}",
        ms(took),
        screenshot.display()
    );
}

/// Members of the big channel.
const BIG: u32 = 5000;

/// How long `rollcall-load` may take to bring every member up (a few seconds in practice).
const FILL: Duration = Duration::from_secs(90);

#[test]
fn dashboard_stays_fast_with_a_channel_of_5000_members() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !browser_ready(root, "big-channel dashboard browser test") {
        return;
    }
    let server = Server::start(&[]);
    let addr = server.addr();
    let url = format!("ws://{addr}/");
    let connections = BIG.to_string();
    // Members in mode none: present and counted, but no N² presence traffic to the load tool.
    let _members = ChildGuard::spawn(
        &load_bin(),
        &[
            "hold",
            "--url",
            &url,
            "--connections",
            &connections,
            "--duration",
            "10m",
            "--timeout",
            "90s",
            "--user-prefix",
            "viewer",
            "--query",
            "channel=big&events=none",
        ],
    );
    let started = Instant::now();
    loop {
        let response = http_get(addr, "/presence/big?count");
        if response.status == 200 && response.json()["users"] == BIG {
            break;
        }
        assert!(
            started.elapsed() < FILL,
            "channel big did not reach {BIG} members within {}ms: {response:?}\nserver stderr:\n{}",
            ms(FILL),
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("{BIG} members up in {}ms", ms(started.elapsed()));

    let screenshot = root.join("target").join("dashboard-big.png");
    let _ = std::fs::remove_file(&screenshot);
    std::fs::create_dir_all(screenshot.parent().expect("target dir")).expect("create target/");
    let page = format!("http://{addr}/");
    let screenshot_arg = screenshot.display().to_string();
    let run = run_node_script(
        root,
        &[
            "tests/browser/dashboard-big.mjs",
            &page,
            "big",
            &connections,
            &screenshot_arg,
        ],
        BROWSER_RUN,
    );
    let Some(status) = run.status else {
        panic!(
            "dashboard-big.mjs still running after {}ms (killed)\nstdout:\n{}\nstderr:\n{}",
            ms(BROWSER_RUN),
            run.stdout,
            run.stderr
        );
    };
    assert!(
        status.success(),
        "dashboard-big.mjs failed ({status})\nstdout:\n{}\nstderr:\n{}\nserver stderr:\n{}",
        run.stdout,
        run.stderr,
        server.stderr()
    );
    let png = std::fs::read(&screenshot)
        .unwrap_or_else(|e| panic!("no screenshot at {}: {e}", screenshot.display()));
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000,
        "{} is not a plausible PNG ({} bytes)",
        screenshot.display(),
        png.len()
    );
    // The README shows one: refreshed on request, so a test run leaves the tree clean.
    if std::env::var_os("ROLLCALL_UPDATE_SCREENSHOT").is_some() {
        std::fs::write(root.join("docs").join("dashboard.png"), &png)
            .expect("write docs/dashboard.png");
    }
    eprintln!("{}", run.stdout);
}

/// True when Chromium and the browser packages are there; otherwise says so (or fails, when
/// ROLLCALL_BROWSER_TESTS requires the test to run).
fn browser_ready(root: &Path, test: &str) -> bool {
    let Some(missing) = missing_prerequisite(root) else {
        return true;
    };
    let advice = "run .ci/run, or install chromium (apt-get install chromium) and \
                  `npm ci --prefix tests/browser`";
    skip_or_fail("ROLLCALL_BROWSER_TESTS", test, &missing, advice);
    false
}

/// What keeps the browser test from running here, if anything.
fn missing_prerequisite(root: &Path) -> Option<String> {
    if !Path::new(CHROMIUM).exists() {
        return Some(format!("{CHROMIUM} is missing"));
    }
    let module = root.join("tests/browser/node_modules/playwright-core/package.json");
    if !module.exists() {
        return Some("tests/browser/node_modules/playwright-core is missing".to_string());
    }
    (!node_installed()).then(|| "`node` is not on PATH".to_string())
}
