//! The live dashboard (`GET /`) in a real browser: starts the server, then runs
//! `tests/browser/dashboard.mjs`, which drives Debian's Chromium through playwright-core (see
//! that file for the scenario) and saves a screenshot to `target/dashboard.png`.
//!
//! Needs `/usr/bin/chromium`, Node.js and `npm ci --prefix tests/browser`; `.ci/run` installs
//! them. Without them the test says SKIPPED on stderr and passes, unless
//! `ROLLCALL_BROWSER_TESTS=1` (set by `.ci/run`) demands that it run.

mod common;

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::{ms, skip_or_fail, Server};

/// The browser the script launches (Debian's package; playwright-core downloads none).
const CHROMIUM: &str = "/usr/bin/chromium";

/// The whole browser run; the script bounds itself at 45 s, this only catches a hung Node.
const BROWSER_RUN: Duration = Duration::from_secs(60);

#[test]
fn dashboard_shows_users_arriving_and_leaving_in_a_real_browser() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if let Some(missing) = missing_prerequisite(root) {
        let advice = "run .ci/run, or install chromium (apt-get install chromium) and \
                      `npm ci --prefix tests/browser`";
        skip_or_fail(
            "ROLLCALL_BROWSER_TESTS",
            "dashboard browser test",
            &missing,
            advice,
        );
        return;
    }

    let server = Server::start(&[]);
    let url = format!("http://{}/", server.addr());
    let screenshot = root.join("target").join("dashboard.png");
    let _ = std::fs::remove_file(&screenshot);
    std::fs::create_dir_all(screenshot.parent().expect("target dir")).expect("create target/");

    let started = Instant::now();
    let run = run_script(root, &url, &screenshot);
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

/// What keeps the browser test from running here, if anything.
fn missing_prerequisite(root: &Path) -> Option<String> {
    if !Path::new(CHROMIUM).exists() {
        return Some(format!("{CHROMIUM} is missing"));
    }
    let module = root.join("tests/browser/node_modules/playwright-core/package.json");
    if !module.exists() {
        return Some("tests/browser/node_modules/playwright-core is missing".to_string());
    }
    match Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(status) if status.success() => None,
        _ => Some("`node` is not on PATH".to_string()),
    }
}

/// How the script's run ended: `status` is `None` when it was killed at the deadline.
struct ScriptRun {
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
}

/// Runs `node tests/browser/dashboard.mjs URL SCREENSHOT` from the crate root, at most
/// [`BROWSER_RUN`]. The script runs in its own process group, so that a kill at the deadline
/// also ends the Chromium processes it started.
fn run_script(root: &Path, url: &str, screenshot: &PathBuf) -> ScriptRun {
    let mut child = Command::new("node")
        .arg("tests/browser/dashboard.mjs")
        .arg(url)
        .arg(screenshot)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("spawn node");
    let stdout = drain(child.stdout.take().expect("stdout is piped"));
    let stderr = drain(child.stderr.take().expect("stderr is piped"));
    let status = wait_or_kill_group(&mut child, BROWSER_RUN);
    ScriptRun {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Reads a pipe to its end on a thread, so the child never blocks on a full pipe.
fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Waits for `child` at most `timeout`; then kills its whole process group and returns `None`.
fn wait_or_kill_group(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            _ => {
                let pgid = child.id() as libc::pid_t;
                // SAFETY: kill(2) has no memory effects; a negative pid names the process group
                // the child leads (process_group(0) above), which contains only what it started.
                unsafe {
                    libc::kill(-pgid, libc::SIGKILL);
                }
                let _ = child.wait();
                return None;
            }
        }
    }
}
