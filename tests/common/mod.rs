//! Shared helpers for the integration tests: they start the real `rollcall` binary on an
//! ephemeral port and talk to it over real sockets, as a browser or a proxy would.
//!
//! Invariants the helpers keep, so that each test can stay short:
//! - every wait is bounded by a deadline (socket read timeouts and `recv_timeout`); nothing
//!   sleeps in place of a condition that can be waited for;
//! - the server's stderr is drained by a background thread for the whole life of the process,
//!   so the pipe never fills, and the lines are kept for failure messages;
//! - every child process is killed when its handle drops, also when a test panics.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::WebSocket;
use tungstenite::Message;

pub mod cases;
pub mod redis;

/// How long we wait for something that should happen promptly (a reply, an event).
/// Generous on purpose: it only matters when a test is about to fail.
pub const STEP: Duration = Duration::from_secs(5);

/// How long the server may take to print its `listening on` line.
const STARTUP: Duration = Duration::from_secs(10);

/// Path of the binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_rollcall");

/// A test that cannot run here for lack of an optional dependency (`missing`): it fails when
/// the environment variable `required` is `1` (CI sets it, so CI never skips), and otherwise
/// says `SKIPPED: test: missing; advice` straight on the process's stderr (libtest captures
/// `eprintln!` of passing tests, and a skip must be seen) and lets the test pass.
#[track_caller]
pub fn skip_or_fail(required: &str, test: &str, missing: &str, advice: &str) {
    if std::env::var(required).as_deref() == Ok("1") {
        panic!("{required}=1 but {test} cannot run: {missing}; {advice}");
    }
    let _ = writeln!(std::io::stderr(), "SKIPPED: {test}: {missing}; {advice}");
}

/// Milliseconds, for assertion messages.
/// Milliseconds since the Unix epoch (the server's `last_seen` and token clocks).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis() as u64
}

/// Webhook events received as `(X-Pusher-Key, event)`, as `KEY name channel [user]` lines.
pub fn webhook_lines(events: &[(String, Value)]) -> Vec<String> {
    events
        .iter()
        .map(|(key, event)| {
            let mut line = format!(
                "{key} {} {}",
                event["name"].as_str().unwrap_or("?"),
                event["channel"].as_str().unwrap_or("?")
            );
            if let Some(user) = event["user_id"].as_str() {
                line.push(' ');
                line.push_str(user);
            }
            line
        })
        .collect()
}

pub fn ms(d: Duration) -> u128 {
    d.as_millis()
}

// ---------------------------------------------------------------------------------------------
// The server process
// ---------------------------------------------------------------------------------------------

/// A running `rollcall` process, killed on drop.
pub struct Server {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts the binary with `--listen 127.0.0.1:0` plus `flags` and waits (bounded) for its
    /// `listening on ADDR` line.
    #[track_caller]
    pub fn start(flags: &[&str]) -> Server {
        Server::start_with_env(flags, &[])
    }

    /// Like [`Server::start`], with extra environment variables for the process (for settings
    /// read from the environment, such as `ROLLCALL_ADMIN_TOKEN`). An admin token inherited
    /// from the test's own environment is removed first, so only `env` can set one.
    #[track_caller]
    pub fn start_with_env(flags: &[&str], env: &[(&str, &str)]) -> Server {
        Server::launch(flags, env, None)
    }

    /// Like [`Server::start`], with the server's open-file limit (soft and hard) set to
    /// `limit` before it starts.
    #[track_caller]
    pub fn start_with_fd_limit(flags: &[&str], limit: u64) -> Server {
        Server::launch(flags, &[], Some(limit))
    }

    #[track_caller]
    fn launch(flags: &[&str], env: &[(&str, &str)], fd_limit: Option<u64>) -> Server {
        let mut command = Command::new(BIN);
        command
            .args(["--listen", "127.0.0.1:0"])
            .args(flags)
            .env("RUST_LOG", "info")
            .env_remove("ROLLCALL_ADMIN_TOKEN")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(limit) = fd_limit {
            use std::os::unix::process::CommandExt;
            let rlimit = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            // SAFETY: setrlimit is async-signal-safe and only touches the child's own limits.
            unsafe {
                command.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let mut child = command.spawn().expect("spawn the rollcall binary");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<String>();
        let sink = Arc::clone(&log);
        // Drains stderr until the process ends; the receiver goes away after startup, which
        // only makes `send` fail quietly.
        thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut raw = Vec::new();
            loop {
                raw.clear();
                match reader.read_until(b'\n', &mut raw) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&raw).trim_end().to_string();
                        sink.lock().expect("log lock").push(line.clone());
                        let _ = tx.send(line);
                    }
                }
            }
        });

        let deadline = Instant::now() + STARTUP;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(remaining) {
                Ok(line) => {
                    if let Some(addr) = parse_listening_line(&line) {
                        return Server { child, addr, log };
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "rollcall {flags:?} printed no `listening on` line within {}ms; stderr:\n{}",
                        ms(STARTUP),
                        log.lock().expect("log lock").join("\n")
                    );
                }
                Err(RecvTimeoutError::Disconnected) => {
                    // stderr closed: the process is exiting.
                    let status = wait_with_deadline(&mut child, STEP);
                    panic!(
                        "rollcall {flags:?} exited before listening ({status:?}); stderr:\n{}",
                        log.lock().expect("log lock").join("\n")
                    );
                }
            }
        }
    }

    /// The address the server really bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Everything the server wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }

    /// Waits (bounded) until a line of the server's stderr contains `needle`; fails the test
    /// after `timeout`.
    #[track_caller]
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.stderr().lines().any(|line| line.contains(needle)) {
            assert!(
                Instant::now() < deadline,
                "the server logged no line containing {needle:?} within {}ms; stderr:\n{}",
                ms(timeout),
                self.stderr()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends the signal `sig` (a name `kill -s` knows: `TERM`, `INT`, ...) to the process.
    #[track_caller]
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args(["-s", sig, &self.child.id().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .expect("run kill(1)");
        assert!(
            status.success(),
            "kill -s {sig} {} failed: {status}",
            self.child.id()
        );
    }

    /// Waits at most `timeout` for the process to exit; its status, or `None` if it is still
    /// running then (it is left running; dropping the `Server` kills it).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_at_most(&mut self.child, timeout)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Extracts `ADDR` from a log line containing `listening on ADDR`.
fn parse_listening_line(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    let token: String = rest
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect::<String>()
        .trim_end_matches(|c: char| !c.is_ascii_digit())
        .to_string();
    token.parse().ok()
}

fn wait_with_deadline(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let status = wait_at_most(child, timeout);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    status
}

/// Waits at most `timeout` for `child` to exit: its status, or `None` if it still runs.
fn wait_at_most(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
            _ => return None,
        }
    }
}

/// What a CLI run printed and how it ended.
#[derive(Debug)]
pub struct CliRun {
    /// Exit code; `None` if killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the binary with `args` and waits for it to exit, at most `timeout`; a process that is
/// still running then is killed and the test fails (it probably started serving).
#[track_caller]
pub fn run_cli(args: &[&str], timeout: Duration) -> CliRun {
    let mut command = Command::new(BIN);
    command.args(args).env("RUST_LOG", "info");
    run_command(command, timeout)
}

// ---------------------------------------------------------------------------------------------
// WebSocket clients
// ---------------------------------------------------------------------------------------------

/// One thing read from a WebSocket (Ping/Pong frames are skipped and answered).
#[derive(Debug)]
pub enum Incoming {
    /// A text frame, parsed as JSON.
    Json(Value),
    /// A binary frame (the server never sends one).
    Binary(Vec<u8>),
    /// A Close frame: code and reason, if it carried them.
    Close(Option<(u16, String)>),
    /// Nothing arrived within the timeout.
    Timeout,
    /// The stream ended (EOF, reset, or the close handshake finished).
    Ended(String),
}

/// A blocking tungstenite client over a `std::net::TcpStream`.
pub struct Client {
    ws: WebSocket<TcpStream>,
    /// WebSocket Ping frames received so far (tungstenite answered each with a Pong).
    pub pings_seen: u32,
    next_ping_id: u64,
}

impl Client {
    /// Connects to `ws://ADDR/?QUERY` (or `ws://ADDR/` when `query` is empty). Reads nothing.
    #[track_caller]
    pub fn connect(addr: SocketAddr, query: &str) -> Client {
        let target = if query.is_empty() {
            "/".to_string()
        } else {
            format!("/?{query}")
        };
        Client::connect_target(addr, &target)
    }

    /// Connects to `ws://ADDR` + `target` (a path with an optional query). Reads nothing.
    #[track_caller]
    pub fn connect_target(addr: SocketAddr, target: &str) -> Client {
        match Client::try_connect_target(addr, target) {
            Ok(client) => client,
            Err(e) => panic!("WebSocket connect to {addr}{target} failed: {e}"),
        }
    }

    /// Like [`Client::connect_target`], returning the failure instead of panicking.
    pub fn try_connect_target(addr: SocketAddr, target: &str) -> Result<Client, String> {
        let stream =
            TcpStream::connect_timeout(&addr, STEP).map_err(|e| format!("TCP connect: {e}"))?;
        stream
            .set_read_timeout(Some(STEP))
            .map_err(|e| e.to_string())?;
        stream
            .set_write_timeout(Some(STEP))
            .map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let request = format!("ws://{addr}{target}")
            .into_client_request()
            .map_err(|e| format!("bad request: {e}"))?;
        let (ws, _response) = tungstenite::client(request, stream).map_err(|e| match e {
            tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp)) => {
                let body = resp
                    .body()
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                format!("HTTP {}: {body}", resp.status())
            }
            other => format!("handshake: {other:?}"),
        })?;
        Ok(Client {
            ws,
            pings_seen: 0,
            next_ping_id: 1,
        })
    }

    /// Connects and consumes the `welcome` message, returning it too.
    #[track_caller]
    pub fn connect_welcomed(addr: SocketAddr, query: &str) -> (Client, Value) {
        let mut client = Client::connect(addr, query);
        let welcome = client.expect_type("welcome");
        (client, welcome)
    }

    /// Connects with `events=all` defaults and consumes `welcome` and the one `state` for a
    /// single channel, returning the client and that state.
    #[track_caller]
    pub fn join(addr: SocketAddr, query: &str) -> (Client, Value) {
        let (mut client, _welcome) = Client::connect_welcomed(addr, query);
        let state = client.expect_type("state");
        (client, state)
    }

    /// The underlying socket (for timeouts or raw peeking).
    pub fn stream(&mut self) -> &mut TcpStream {
        self.ws.get_mut()
    }

    /// Reads the next text, binary or close frame within `timeout`, answering pings.
    pub fn next(&mut self, timeout: Duration) -> Incoming {
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Incoming::Timeout;
            }
            let wait = remaining.max(Duration::from_millis(1));
            if let Err(e) = self.ws.get_mut().set_read_timeout(Some(wait)) {
                return Incoming::Ended(format!("set_read_timeout: {e}"));
            }
            match self.ws.read() {
                Ok(Message::Text(text)) => {
                    let value = serde_json::from_str(text.as_str()).unwrap_or_else(|e| {
                        panic!("server sent text that is not JSON ({e}): {text:?}")
                    });
                    return Incoming::Json(value);
                }
                Ok(Message::Binary(bytes)) => return Incoming::Binary(bytes.to_vec()),
                Ok(Message::Ping(_)) => self.pings_seen += 1,
                Ok(Message::Pong(_)) | Ok(Message::Frame(_)) => {}
                Ok(Message::Close(frame)) => {
                    return Incoming::Close(
                        frame.map(|f| (u16::from(f.code), f.reason.to_string())),
                    )
                }
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => return Incoming::Ended(e.to_string()),
            }
        }
    }

    /// The next JSON message within `timeout`; anything else fails the test.
    #[track_caller]
    pub fn recv_json(&mut self, timeout: Duration) -> Value {
        match self.next(timeout) {
            Incoming::Json(v) => v,
            other => panic!(
                "expected a JSON message within {}ms, got {other:?}",
                ms(timeout)
            ),
        }
    }

    /// The next JSON message within `timeout`, or `None` if nothing arrived.
    #[track_caller]
    pub fn try_recv_json(&mut self, timeout: Duration) -> Option<Value> {
        match self.next(timeout) {
            Incoming::Json(v) => Some(v),
            Incoming::Timeout => None,
            other => panic!("expected a JSON message or silence, got {other:?}"),
        }
    }

    /// The next message, which must have `"type": ty`.
    #[track_caller]
    pub fn expect_type(&mut self, ty: &str) -> Value {
        let msg = self.recv_json(STEP);
        assert_eq!(msg["type"], ty, "expected a `{ty}` message, got {msg}");
        msg
    }

    /// Reads until a message satisfies `pred`, within `timeout`; returns it and the messages
    /// skipped before it.
    #[track_caller]
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> (Value, Vec<Value>) {
        let deadline = Instant::now() + timeout;
        let mut skipped = Vec::new();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.next(remaining) {
                Incoming::Json(v) if pred(&v) => return (v, skipped),
                Incoming::Json(v) => skipped.push(v),
                other => panic!(
                    "waiting {}ms for {what}: got {other:?}; skipped before: {skipped:?}",
                    ms(timeout)
                ),
            }
        }
    }

    /// Reads until a message of type `ty` arrives (within `timeout`); returns it and the
    /// messages skipped before it.
    #[track_caller]
    pub fn wait_for_type(&mut self, ty: &str, timeout: Duration) -> (Value, Vec<Value>) {
        self.wait_for(timeout, &format!("a `{ty}` message"), |v| v["type"] == ty)
    }

    /// Sends one text frame with `value` serialized.
    #[track_caller]
    pub fn send_json(&mut self, value: &Value) {
        self.send_text(&value.to_string());
    }

    /// Sends one text frame.
    #[track_caller]
    pub fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::text(text.to_string()))
            .expect("send a text frame");
    }

    /// Sends one binary frame.
    #[track_caller]
    pub fn send_binary(&mut self, bytes: &[u8]) {
        self.ws
            .send(Message::binary(bytes.to_vec()))
            .expect("send a binary frame");
    }

    /// Sends `{"type":"ping","id":N}` and reads until the matching `pong`; returns every message
    /// received before it. Since the server handles one connection's input in order, and events
    /// caused by earlier actions are queued before the pong, an empty result proves that no
    /// event was pending.
    #[track_caller]
    pub fn roundtrip_ping(&mut self) -> Vec<Value> {
        let id = self.next_ping_id;
        self.next_ping_id += 1;
        self.send_json(&json!({"type": "ping", "id": id}));
        let (pong, before) = self.wait_for(STEP, &format!("pong {id}"), |v| {
            v["type"] == "pong" && v["id"] == id
        });
        assert_eq!(pong["type"], "pong");
        before
    }

    /// Asserts that nothing but pings arrives for `window` (used only where the thing that
    /// must not happen is itself timed, such as a leave grace expiring).
    #[track_caller]
    pub fn expect_silence(&mut self, window: Duration) {
        match self.next(window) {
            Incoming::Timeout => {}
            other => panic!("expected silence for {}ms, got {other:?}", ms(window)),
        }
    }

    /// Starts the close handshake (code 1000) and reads until the connection ends, so that
    /// the server has processed the close when this returns.
    #[track_caller]
    pub fn close(mut self) {
        let _ = self.ws.close(None);
        let deadline = Instant::now() + STEP;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.next(remaining) {
                Incoming::Ended(_) => return,
                Incoming::Timeout => panic!("close handshake not finished within {}ms", ms(STEP)),
                _ => {}
            }
        }
    }

    /// Reads until the stream ends within `timeout`, ignoring JSON messages; returns the Close
    /// frame seen before the end, if any.
    #[track_caller]
    pub fn expect_closed(&mut self, timeout: Duration) -> Option<(u16, String)> {
        let deadline = Instant::now() + timeout;
        let mut close = None;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.next(remaining) {
                Incoming::Ended(_) => return close,
                Incoming::Close(frame) => close = Some(frame.unwrap_or((0, String::new()))),
                Incoming::Timeout => panic!(
                    "connection still open after {}ms (close frame seen: {close:?})",
                    ms(timeout)
                ),
                Incoming::Json(_) | Incoming::Binary(_) => {}
            }
        }
    }
}

/// The `users` object of a `state` message.
#[track_caller]
pub fn users_of(state: &Value) -> &serde_json::Map<String, Value> {
    state["users"]
        .as_object()
        .unwrap_or_else(|| panic!("state without a users object: {state}"))
}

/// Sorted user names of a `state` message.
#[track_caller]
pub fn user_names(state: &Value) -> Vec<String> {
    let mut names: Vec<String> = users_of(state).keys().cloned().collect();
    names.sort();
    names
}

/// The `seq` field as a number.
#[track_caller]
pub fn seq_of(msg: &Value) -> u64 {
    msg["seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("message without a numeric seq: {msg}"))
}

/// Messages among `msgs` that are join or leave events.
pub fn presence_events(msgs: &[Value]) -> Vec<&Value> {
    msgs.iter()
        .filter(|m| m["type"] == "join" || m["type"] == "leave")
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Raw TCP and HTTP
// ---------------------------------------------------------------------------------------------

/// A parsed HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Status line and headers, as received.
    pub head: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON; fails the test if it is not.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {self:?}"))
    }

    /// The `Content-Type` header, or `""`.
    pub fn content_type(&self) -> &str {
        self.header("content-type").unwrap_or_default()
    }
}

/// Opens a TCP connection with bounded timeouts.
#[track_caller]
pub fn tcp_connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, STEP).expect("TCP connect to the server");
    stream
        .set_read_timeout(Some(STEP))
        .expect("set read timeout");
    stream
        .set_write_timeout(Some(STEP))
        .expect("set write timeout");
    stream.set_nodelay(true).expect("set nodelay");
    stream
}

/// Reads until EOF (or a reset after some data), failing the test if the peer keeps the
/// connection open longer than `timeout`.
#[track_caller]
pub fn read_to_eof(stream: &mut TcpStream, timeout: Duration) -> Vec<u8> {
    let deadline = Instant::now() + timeout;
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            panic!(
                "connection not closed by the server within {}ms; received so far: {:?}",
                ms(timeout),
                String::from_utf8_lossy(&data)
            );
        }
        stream
            .set_read_timeout(Some(remaining.max(Duration::from_millis(1))))
            .expect("set read timeout");
        match stream.read(&mut buf) {
            Ok(0) => return data,
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset && !data.is_empty() => return data,
            Err(e) => panic!(
                "read failed: {e}; received so far: {:?}",
                String::from_utf8_lossy(&data)
            ),
        }
    }
}

/// Parses `bytes` as one HTTP/1.1 response (head, then the rest as body).
#[track_caller]
pub fn parse_http_response(bytes: &[u8]) -> HttpResponse {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let Some(end) = text.find("\r\n\r\n") else {
        panic!("no complete HTTP response head in {text:?}");
    };
    let head = text[..end].to_string();
    let body = text[end + 4..].to_string();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    assert!(
        version.starts_with("HTTP/1."),
        "bad status line {status_line:?} in {text:?}"
    );
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    HttpResponse {
        status,
        head,
        headers,
        body,
    }
}

/// Sends `raw` on a fresh connection, reads until the server closes it, and parses the
/// response.
#[track_caller]
pub fn http_request(addr: SocketAddr, raw: &[u8]) -> HttpResponse {
    let mut stream = tcp_connect(addr);
    stream.write_all(raw).expect("write the request");
    let bytes = read_to_eof(&mut stream, STEP);
    parse_http_response(&bytes)
}

/// A complete WebSocket upgrade request for `target` (path and query).
pub fn upgrade_request(target: &str) -> String {
    upgrade_request_with_version(target, "13")
}

/// An upgrade request with a chosen `Sec-WebSocket-Version`.
pub fn upgrade_request_with_version(target: &str, version: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\n\
         Host: 127.0.0.1\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Version: {version}\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         \r\n"
    )
}

/// One client-to-server frame with FIN set, masked as RFC 6455 section 5.3 requires.
pub fn masked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    masked_fragment(true, opcode, payload)
}

/// One masked client-to-server frame; `fin: false` makes it a fragment of a longer message
/// (RFC 6455 section 5.4: the first fragment has the opcode, later ones opcode 0).
pub fn masked_fragment(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut frame = vec![if fin { 0x80 } else { 0 } | (opcode & 0x0f)];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= 0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&key);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    frame
}

/// A parsed server-to-client frame.
#[derive(Debug)]
pub struct RawFrame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

/// Parses one unmasked frame from the front of `buf`: the frame and the bytes it used, or
/// `None` if `buf` holds only part of a frame.
#[track_caller]
pub fn parse_frame(buf: &[u8]) -> Option<(RawFrame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let fin = buf[0] & 0x80 != 0;
    let opcode = buf[0] & 0x0f;
    assert!(
        buf[1] & 0x80 == 0,
        "server frames must not be masked (RFC 6455 section 5.1)"
    );
    let (len, mut at) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b) as usize, 10)
        }
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    if buf.len() < at + len {
        return None;
    }
    let payload = buf[at..at + len].to_vec();
    at += len;
    Some((
        RawFrame {
            fin,
            opcode,
            payload,
        },
        at,
    ))
}

/// A WebSocket spoken by hand over raw TCP, for frames a well-behaved client cannot send.
pub struct RawWs {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl RawWs {
    /// Sends an upgrade request for `target` and reads the `101` response head.
    #[track_caller]
    pub fn connect(addr: SocketAddr, target: &str) -> RawWs {
        let mut stream = tcp_connect(addr);
        stream
            .write_all(upgrade_request(target).as_bytes())
            .expect("write the upgrade request");
        let mut raw = RawWs {
            stream,
            buf: Vec::new(),
        };
        let deadline = Instant::now() + STEP;
        let head_end = loop {
            if let Some(i) = raw.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            assert!(
                raw.read_some(deadline),
                "server closed during the handshake: {:?}",
                String::from_utf8_lossy(&raw.buf)
            );
        };
        let head = String::from_utf8_lossy(&raw.buf[..head_end]).into_owned();
        assert!(
            head.starts_with("HTTP/1.1 101"),
            "upgrade response: {head:?}"
        );
        raw.buf.drain(..head_end);
        raw
    }

    /// Reads more bytes into the buffer; `false` on EOF or reset. Fails the test at `deadline`.
    #[track_caller]
    fn read_some(&mut self, deadline: Instant) -> bool {
        let remaining = deadline.saturating_duration_since(Instant::now());
        assert!(
            !remaining.is_zero(),
            "nothing more from the server before the deadline; buffered {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        self.stream
            .set_read_timeout(Some(remaining))
            .expect("set read timeout");
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                true
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => false,
            Err(e) => panic!("read failed: {e}"),
        }
    }

    /// Writes raw bytes (one or more hand-built frames).
    #[track_caller]
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write raw frame bytes");
    }

    /// The next frame within `timeout`, or `None` if the connection ended first.
    #[track_caller]
    pub fn next_frame(&mut self, timeout: Duration) -> Option<RawFrame> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((frame, used)) = parse_frame(&self.buf) {
                self.buf.drain(..used);
                return Some(frame);
            }
            if !self.read_some(deadline) {
                return None;
            }
        }
    }

    /// Skips data frames until a Close frame arrives; returns its status code (RFC 6455
    /// section 5.5.1: the first two payload bytes), `None` for a Close without code. Fails the
    /// test if the connection ends without a Close frame.
    #[track_caller]
    pub fn expect_close_frame(&mut self, timeout: Duration) -> Option<u16> {
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.next_frame(remaining) {
                Some(frame) if frame.opcode == 0x8 => {
                    return (frame.payload.len() >= 2)
                        .then(|| u16::from_be_bytes([frame.payload[0], frame.payload[1]]));
                }
                Some(_) => {}
                None => panic!("connection ended without a Close frame"),
            }
        }
    }

    /// After a Close frame: the server must close the TCP connection within `timeout`.
    #[track_caller]
    pub fn expect_eof(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.read_some(deadline) {}
    }
}

// ---------------------------------------------------------------------------------------------
// Operator endpoints: plain HTTP requests, upgrade attempts with extra headers, metrics
// ---------------------------------------------------------------------------------------------

/// Builds one HTTP/1.1 request: `Host`, then `headers`, then (with a body) `Content-Length`.
pub fn build_request(
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Vec<u8> {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body.unwrap_or_default());
    raw
}

/// `GET target` on a fresh connection; the response once the server has closed.
#[track_caller]
pub fn http_get(addr: SocketAddr, target: &str) -> HttpResponse {
    http_request(addr, &build_request("GET", target, &[], None))
}

/// `GET target` with extra headers.
#[track_caller]
pub fn http_get_with(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> HttpResponse {
    http_request(addr, &build_request("GET", target, headers, None))
}

/// `POST target` with `body` (and its `Content-Length`) and extra headers.
#[track_caller]
pub fn http_post(
    addr: SocketAddr,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    http_request(addr, &build_request("POST", target, headers, Some(body)))
}

/// A complete WebSocket upgrade request for `target` with extra header lines (e.g. `Origin`).
pub fn upgrade_request_with_headers(target: &str, headers: &[(&str, &str)]) -> String {
    let base = upgrade_request(target);
    let mut extra = String::new();
    for (name, value) in headers {
        extra.push_str(&format!("{name}: {value}\r\n"));
    }
    // Insert before the blank line that ends the head.
    format!("{}{extra}\r\n", &base[..base.len() - 2])
}

/// Sends an upgrade request and reads the response: for `101` only the head (the connection
/// is then dropped), for anything else everything up to the server's close.
#[track_caller]
pub fn upgrade_attempt(addr: SocketAddr, raw: &[u8]) -> HttpResponse {
    let mut stream = tcp_connect(addr);
    stream.write_all(raw).expect("write the upgrade request");
    let deadline = Instant::now() + STEP;
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            if data.starts_with(b"HTTP/1.1 101") {
                return parse_http_response(&data[..end + 4]);
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            data.extend(read_to_eof(
                &mut stream,
                remaining.max(Duration::from_millis(1)),
            ));
            return parse_http_response(&data);
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        assert!(
            !remaining.is_zero(),
            "no complete response head within {}ms: {:?}",
            ms(STEP),
            String::from_utf8_lossy(&data)
        );
        stream
            .set_read_timeout(Some(remaining))
            .expect("set read timeout");
        match stream.read(&mut chunk) {
            Ok(0) => panic!(
                "server closed before a complete response head: {:?}",
                String::from_utf8_lossy(&data)
            ),
            Ok(n) => data.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(e) => panic!(
                "read failed: {e}; received so far: {:?}",
                String::from_utf8_lossy(&data)
            ),
        }
    }
}

/// One scrape of `/metrics`, parsed (Prometheus text format 0.0.4).
#[derive(Debug)]
pub struct Metrics {
    /// Series (`name` or `name{labels}`, as written) to value.
    pub samples: std::collections::BTreeMap<String, f64>,
    /// Metric name to its `# TYPE`.
    pub types: std::collections::BTreeMap<String, String>,
    /// Metric name to its `# HELP` text.
    pub helps: std::collections::BTreeMap<String, String>,
    /// The whole response.
    pub response: HttpResponse,
}

impl Metrics {
    /// The value of `series` (e.g. `rollcall_connections` or
    /// `rollcall_connections_closed_total{reason="http"}`); fails the test if absent.
    #[track_caller]
    pub fn get(&self, series: &str) -> f64 {
        match self.samples.get(series) {
            Some(v) => *v,
            None => panic!("no series {series} in /metrics:\n{}", self.response.body),
        }
    }

    /// `rollcall_connections_closed_total{reason="REASON"}`.
    #[track_caller]
    pub fn closed(&self, reason: &str) -> f64 {
        self.get(&format!(
            "rollcall_connections_closed_total{{reason=\"{reason}\"}}"
        ))
    }

    /// The sum of `rollcall_connections_closed_total` over every reason.
    pub fn closed_sum(&self) -> f64 {
        self.samples
            .iter()
            .filter(|(k, _)| k.starts_with("rollcall_connections_closed_total{"))
            .map(|(_, v)| v)
            .sum()
    }
}

/// Polls `series` on the server at `addr` until it equals `want`; returns how long that took.
/// Fails the test after `timeout`, naming `what` was awaited.
#[track_caller]
pub fn wait_metric(
    addr: SocketAddr,
    what: &str,
    series: &str,
    want: f64,
    timeout: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        let got = scrape(addr).samples.get(series).copied();
        if got == Some(want) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < timeout,
            "{what}: {series} is {got:?}, not {want}, after {}ms",
            ms(timeout)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Scrapes `/metrics` on a fresh connection and parses it; fails the test on a non-200 or an
/// unparseable line.
#[track_caller]
pub fn scrape(addr: SocketAddr) -> Metrics {
    let response = http_get(addr, "/metrics");
    assert_eq!(response.status, 200, "GET /metrics: {response:?}");
    let mut samples = std::collections::BTreeMap::new();
    let mut types = std::collections::BTreeMap::new();
    let mut helps = std::collections::BTreeMap::new();
    for line in response.body.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            helps.insert(name.to_string(), text.to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest
                .split_once(' ')
                .unwrap_or_else(|| panic!("TYPE line without a type: {line:?}"));
            types.insert(name.to_string(), ty.trim().to_string());
        } else if line.starts_with('#') {
            continue;
        } else {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("sample line without a value: {line:?}"));
            let value: f64 = value
                .parse()
                .unwrap_or_else(|e| panic!("sample value of {line:?} is not a number: {e}"));
            let previous = samples.insert(series.to_string(), value);
            assert!(previous.is_none(), "series {series} appears twice");
        }
    }
    Metrics {
        samples,
        types,
        helps,
        response,
    }
}

/// Every `reason` label of `rollcall_connections_closed_total`.
pub const CLOSE_REASONS: &[&str] = &[
    "closed",
    "timeout",
    "error",
    "slow_consumer",
    "shutdown",
    "left",
    "refused",
    "http",
];

/// Reads the server's answer to a request left incomplete at `started`, and checks that it
/// is a 408 that came with the handshake timeout: not before half of it, not much after.
#[track_caller]
pub fn expect_request_timeout(stream: &mut TcpStream, started: Instant, timeout: Duration) {
    let bytes = read_to_eof(stream, timeout + Duration::from_secs(3));
    let elapsed = started.elapsed();
    let resp = parse_http_response(&bytes);
    assert_eq!(resp.status, 408, "{resp:?}");
    assert!(
        resp.head.starts_with("HTTP/1.1 408 Request Timeout"),
        "{resp:?}"
    );
    assert!(elapsed >= timeout / 2, "408 after only {}ms", ms(elapsed));
    assert!(
        elapsed <= timeout + Duration::from_millis(1500),
        "408 only after {}ms",
        ms(elapsed)
    );
}

/// The resident memory of process `pid`, from `/proc/PID/status` (VmRSS).
#[track_caller]
pub fn resident_bytes(pid: u32) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kib * 1024
}

// ---------------------------------------------------------------------------------------------
// Other processes: the load tool as a client, the server's resident memory
// ---------------------------------------------------------------------------------------------

/// Path of the load tool (the workspace's `crates/rollcall-load`), built beside the server
/// by `cargo test` at the workspace root (both packages are default members).
#[track_caller]
pub fn load_bin() -> String {
    let path = std::path::Path::new(BIN).with_file_name("rollcall-load");
    assert!(
        path.exists(),
        "{} is missing: run the tests from the workspace root (cargo test --locked), which \
         builds it, or build it first (cargo build -p rollcall-load)",
        path.display()
    );
    path.to_string_lossy().into_owned()
}

/// The path of the example `name`, which `cargo test` builds beside the test executables:
/// `<target>/<profile>/{deps,examples}`.
#[track_caller]
pub fn example(name: &str) -> String {
    let path = std::env::current_exe()
        .expect("the test executable's path")
        .parent()
        .and_then(std::path::Path::parent)
        .expect("the test executable lives in <target>/<profile>/deps")
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "cargo test builds the examples: {}",
        path.display()
    );
    path.to_str().expect("a UTF-8 path").to_owned()
}

/// The first `ws://ADDRESS/` in a line an example printed.
#[track_caller]
pub fn printed_address(line: &str) -> SocketAddr {
    line.split("ws://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
}

/// A child process other than the server (a load tool acting as a client), killed on drop,
/// also when it is stopped (SIGKILL ends a stopped process too).
pub struct ChildGuard {
    child: Child,
    what: String,
}

impl ChildGuard {
    /// Spawns `program` with `args`, stdin and stdout closed, stderr inherited (it shows in a
    /// failing test's output).
    #[track_caller]
    pub fn spawn(program: &str, args: &[&str]) -> ChildGuard {
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program} {args:?}: {e}"));
        ChildGuard {
            child,
            what: format!("{program} {args:?}"),
        }
    }

    /// Like [`ChildGuard::spawn`], with the child's stdout lines arriving on the receiver
    /// (read by a thread, so the child never blocks on a full pipe).
    #[track_caller]
    pub fn spawn_reading(program: &str, args: &[&str]) -> (ChildGuard, mpsc::Receiver<String>) {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program} {args:?}: {e}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let what = format!("{program} {args:?}");
        (ChildGuard { child, what }, lines)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends signal `sig` (`libc::SIGSTOP`, `libc::SIGKILL`, ...) to the process.
    #[track_caller]
    pub fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) takes plain integers; the pid is our own unreaped child, so it
        // cannot name another process.
        let status = unsafe { libc::kill(pid, sig) };
        assert_eq!(
            status,
            0,
            "kill({pid}, {sig}) for {}: {}",
            self.what,
            std::io::Error::last_os_error()
        );
    }

    /// Whether the process is still running (a stopped process is running).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits at most `timeout` for the process to exit; its status, or `None` if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_at_most(&mut self.child, timeout)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `program` with `args` and waits for it to exit, at most `timeout` (then it is killed
/// and the test fails); like [`run_cli`], for any program (e.g. [`LOAD_BIN`]).
#[track_caller]
pub fn run_program(program: &str, args: &[&str], timeout: Duration) -> CliRun {
    let mut command = Command::new(program);
    command.args(args);
    run_command(command, timeout)
}

/// The resident set size of process `pid` (`VmRSS` in `/proc/PID/status`), in bytes.
#[track_caller]
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status:\n{status}"));
    kib * 1024
}

// ---------------------------------------------------------------------------------------------
// Other processes: the CLI with a chosen environment, helper programs (e.g. Python)
// ---------------------------------------------------------------------------------------------

/// Runs `command` (stdin from /dev/null, stdout and stderr captured) and waits for it to exit,
/// at most `timeout`; a process still running then is killed and the test fails.
#[track_caller]
pub fn run_command(mut command: Command, timeout: Duration) -> CliRun {
    let what = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let mut out = child.stdout.take().expect("stdout is piped");
    let mut err = child.stderr.take().expect("stderr is piped");
    // Both pipes are drained while the child runs, so a chatty child cannot block on a full one.
    let out_thread = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let err_thread = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let status = wait_with_deadline(&mut child, timeout);
    let stdout = out_thread.join().expect("stdout reader");
    let stderr = err_thread.join().expect("stderr reader");
    let Some(status) = status else {
        panic!(
            "{what} did not exit within {}ms (killed); stdout:\n{stdout}\nstderr:\n{stderr}",
            ms(timeout)
        );
    };
    CliRun {
        code: status.code(),
        stdout,
        stderr,
    }
}

/// Like [`run_cli`], with the variables in `remove` taken out of the inherited environment and
/// then `env` set (for settings read from the environment, such as `ROLLCALL_TOKEN_SECRET`).
#[track_caller]
pub fn run_cli_with_env(
    args: &[&str],
    env: &[(&str, &str)],
    remove: &[&str],
    timeout: Duration,
) -> CliRun {
    let mut command = Command::new(BIN);
    command.args(args).env("RUST_LOG", "info");
    for name in remove {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    run_command(command, timeout)
}

/// Percent-encodes every byte but RFC 3986's unreserved characters, as `encodeURIComponent`
/// does (a space is `%20`, a `+` is `%2B`).
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// How a Node.js script's run ended: `status` is `None` when it was killed at the deadline.
pub struct ScriptRun {
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `node ARGS` from `root`, at most `timeout`. The script runs in its own process
/// group, so that a kill at the deadline also ends what it started (Chromium, servers).
pub fn run_node_script(root: &std::path::Path, args: &[&str], timeout: Duration) -> ScriptRun {
    use std::os::unix::process::CommandExt;
    let mut child = Command::new("node")
        .args(args)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("spawn node");
    let stdout = drain(child.stdout.take().expect("stdout is piped"));
    let stderr = drain(child.stderr.take().expect("stderr is piped"));
    let status = wait_or_kill_group(&mut child, timeout);
    ScriptRun {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// True when `node --version` runs.
pub fn node_installed() -> bool {
    Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Reads a pipe to its end on a thread, so the child never blocks on a full pipe.
fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
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
