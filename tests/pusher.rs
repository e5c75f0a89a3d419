//! Pusher compatibility with the clients Pusher users have, unmodified: pusher-js 8 (its Node
//! build, and its browser build in headless Chromium), laravel-echo 2 on pusher-js, and the
//! `pusher` server SDK 5 as the app's backend and REST client. Each scenario is a script in
//! `tests/pusher/` that starts the rollcall binary itself (it restarts it to check
//! reconnection); this file runs them and reports.
//!
//! A second SDK in another language, pusher-http-python 3.3 (PyPI `pusher`), calls the REST
//! API against a raw client held by the test.
//!
//! Needs Node.js and `npm ci --prefix tests/pusher`, and the Python SDK in
//! `target/pusher-py/venv`; `.ci/run` installs them. Without them each test says SKIPPED on
//! stderr and passes, unless `ROLLCALL_PUSHER_TESTS=1` (set by `.ci/run`) demands that it run.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ms, node_installed, run_command, run_node_script, skip_or_fail, Client, Server};
use rollcall::pusher::auth::sign;
use serde_json::{json, Value};

/// A whole scenario; the scripts bound themselves at 90 s, this only catches a hung Node.
const SCENARIO_RUN: Duration = Duration::from_secs(120);

const BIN: &str = env!("CARGO_BIN_EXE_rollcall");

/// Runs `tests/pusher/NAME.mjs` against the binary, or says why it cannot.
fn scenario(name: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if let Some(missing) = missing_prerequisite(root, name == "chromium") {
        skip_or_fail(
            "ROLLCALL_PUSHER_TESTS",
            &format!("Pusher scenario {name}"),
            &missing,
            "run .ci/run, or `npm ci --prefix tests/pusher` (and for Chromium, \
             `npm ci --prefix tests/browser` and apt-get install chromium)",
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

/// What keeps a scenario from running here, if anything.
fn missing_prerequisite(root: &Path, chromium: bool) -> Option<String> {
    let installed = |dir: &str, package: &str| {
        root.join(dir)
            .join("node_modules")
            .join(package)
            .join("package.json")
            .exists()
    };
    if !node_installed() {
        return Some("`node` is not on PATH".into());
    }
    if let Some(package) = ["pusher-js", "pusher", "laravel-echo"]
        .into_iter()
        .find(|package| !installed("tests/pusher", package))
    {
        return Some(format!("tests/pusher/node_modules/{package} is missing"));
    }
    if chromium && !Path::new("/usr/bin/chromium").exists() {
        return Some("/usr/bin/chromium is missing".into());
    }
    if chromium && !installed("tests/browser", "playwright-core") {
        return Some("tests/browser/node_modules/playwright-core is missing".into());
    }
    None
}

#[test]
fn pusher_js_and_the_pusher_sdk() {
    scenario("pusher_js");
}

#[test]
fn laravel_echo_on_pusher_js() {
    scenario("laravel_echo");
}

#[test]
fn pusher_js_in_chromium() {
    scenario("chromium");
}

/// The Python interpreter with the `pusher` package: `.ci/run`'s venv, else `python3` when it
/// has it.
fn pusher_python() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pusher-py/venv/bin/python");
    [venv, PathBuf::from("python3")].into_iter().find(|python| {
        Command::new(python)
            .args(["-c", "import pusher"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    })
}

const APP: &str = "4321:rollcall-key:rollcall-secret";
const SECRET: &str = "rollcall-secret";

/// A raw Pusher client (tungstenite) and its socket id.
fn pusher_socket(server: &Server) -> (Client, String) {
    let mut client = Client::connect_target(server.addr(), "/app/rollcall-key?protocol=7");
    let established = client.recv_json(Duration::from_secs(5));
    assert_eq!(
        established["event"], "pusher:connection_established",
        "{established}"
    );
    let data: Value = serde_json::from_str(established["data"].as_str().unwrap_or_default())
        .expect("data is a JSON string");
    let socket = data["socket_id"].as_str().expect("socket_id").to_owned();
    (client, socket)
}

/// Subscribes to `channel` with `auth` and `channel_data`; returns the answer.
fn subscribe(client: &mut Client, channel: &str, auth: &str, channel_data: &str) -> Value {
    client.send_json(&json!({"event": "pusher:subscribe", "data": {
        "channel": channel, "auth": auth, "channel_data": channel_data}}));
    client.recv_json(Duration::from_secs(5))
}

#[test]
fn pusher_http_python_sdk() {
    let Some(python) = pusher_python() else {
        skip_or_fail(
            "ROLLCALL_PUSHER_TESTS",
            "Pusher Python SDK test",
            "neither target/pusher-py/venv/bin/python nor python3 can `import pusher`",
            "run .ci/run or pip install pusher==3.3.3",
        );
        return;
    };
    let server = Server::start(&["--pusher-app", APP]);
    let (mut ann, ann_socket) = pusher_socket(&server);
    let data = r#"{"user_id":"ann","user_info":{"name":"Ann"}}"#;
    let signed = sign(SECRET, &format!("{ann_socket}:presence-room:{data}"));
    let reply = subscribe(
        &mut ann,
        "presence-room",
        &format!("rollcall-key:{signed}"),
        data,
    );
    assert_eq!(
        reply["event"], "pusher_internal:subscription_succeeded",
        "{reply}"
    );
    let (mut py, py_socket) = pusher_socket(&server);

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pusher/python_sdk.py");
    let mut command = Command::new(&python);
    command
        .arg(&script)
        .arg(server.addr().port().to_string())
        .arg(&py_socket);
    let run = run_command(command, Duration::from_secs(30));
    assert_eq!(run.code, Some(0), "{run:?}");
    let out: Value = serde_json::from_str(run.stdout.trim()).expect("the script prints JSON");

    assert_eq!(out["trigger"], json!({}), "{out}");
    let event = ann.recv_json(Duration::from_secs(5));
    assert_eq!(event["event"], "py.event", "{event}");
    let data: Value = serde_json::from_str(event["data"].as_str().unwrap_or_default())
        .expect("the data string, verbatim");
    assert_eq!(data, json!({"from": "python"}));
    assert_eq!(
        out["channels_info"],
        json!({"channels": {"presence-room": {"user_count": 1}}}),
        "GET with body_md5 of the empty body"
    );
    assert_eq!(
        out["channel_info"],
        json!({"occupied": true, "user_count": 1, "subscription_count": 1})
    );
    assert_eq!(out["users_info"], json!({"users": [{"id": "ann"}]}));
    let wrong = out["wrong_secret"].as_str().unwrap_or_default();
    assert!(wrong.starts_with("refused"), "{out}");

    // The SDK's signature for the second socket is accepted as it is.
    let auth = out["authenticate"]["auth"].as_str().expect("auth");
    let channel_data = out["authenticate"]["channel_data"]
        .as_str()
        .expect("channel_data");
    let reply = subscribe(&mut py, "presence-room", auth, channel_data);
    assert_eq!(
        reply["event"], "pusher_internal:subscription_succeeded",
        "{reply}"
    );
    let added = ann.recv_json(Duration::from_secs(5));
    assert_eq!(added["event"], "pusher_internal:member_added", "{added}");
}
