//! A private `redis-server` per test, for the cluster tests (tests/cluster.rs).
//!
//! Each [`RedisServer`] is a child process on a free loopback port, without persistence
//! (`--save '' --appendonly no`), started in the foreground and killed (SIGKILL) when its
//! handle drops; no system service is used. Startup is checked by speaking RESP over a plain
//! `TcpStream` (`PING` → `+PONG`, then `INFO server` names our child's pid), so a port taken by
//! someone else is noticed and another one tried.
//!
//! Without the `redis-server` program, [`start_or_skip`] prints `SKIPPED: redis-server not
//! installed` and the test passes, unless `ROLLCALL_REDIS_TESTS=1` (set by `.ci/run`) demands
//! that it runs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The program started for each test (Debian's `redis-server` package).
pub const REDIS_BIN: &str = "redis-server";

/// How long a Redis server may take to answer `PING` after it is spawned.
const REDIS_STARTUP: Duration = Duration::from_secs(10);

/// How long [`RedisServer::start_on`] keeps retrying a port that cannot be bound yet.
const REBIND: Duration = Duration::from_secs(10);

/// Timeouts of one RESP exchange.
const RESP_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether `redis-server --version` runs.
pub fn installed() -> bool {
    Command::new(REDIS_BIN)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|status| status.success())
        .unwrap_or(false)
}

/// Starts a Redis server for `test`; or, when `redis-server` is not installed, prints
/// `SKIPPED: redis-server not installed` and returns `None` (the test then returns and
/// passes), unless `ROLLCALL_REDIS_TESTS=1`, where it fails the test.
#[track_caller]
pub fn start_or_skip(test: &str) -> Option<RedisServer> {
    if installed() {
        return Some(RedisServer::start());
    }
    super::skip_or_fail(
        "ROLLCALL_REDIS_TESTS",
        test,
        "redis-server is not installed",
        "apt-get install redis-server, or run .ci/run",
    );
    None
}

/// A port that was free a moment ago: bound on 127.0.0.1:0, read, released.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// A `redis-server` child process on 127.0.0.1, killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    log: Arc<Mutex<String>>,
}

impl RedisServer {
    /// Starts a server on a free port (a few ports are tried if one is taken meanwhile).
    #[track_caller]
    pub fn start() -> RedisServer {
        let mut failures = Vec::new();
        for _ in 0..5 {
            let port = free_port();
            match RedisServer::spawn(port) {
                Ok(server) => return server,
                Err(e) => failures.push(format!("port {port}: {e}")),
            }
        }
        panic!(
            "redis-server did not start on any of 5 ports:\n{}",
            failures.join("\n")
        );
    }

    /// Starts a server on `port` again (after [`RedisServer::kill`]), retrying for a bounded
    /// time while the port cannot be bound.
    #[track_caller]
    pub fn start_on(port: u16) -> RedisServer {
        let deadline = Instant::now() + REBIND;
        let mut failures = Vec::new();
        loop {
            match RedisServer::spawn(port) {
                Ok(server) => return server,
                Err(e) => failures.push(e),
            }
            if Instant::now() >= deadline {
                panic!(
                    "redis-server could not start on port {port} within {}ms:\n{}",
                    REBIND.as_millis(),
                    failures.join("\n")
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Spawns `redis-server` on `port` and waits (bounded) until it answers `PING` and
    /// `INFO server` names its pid; the failure (with the server's output) otherwise.
    fn spawn(port: u16) -> Result<RedisServer, String> {
        let port_arg = port.to_string();
        let dir = std::env::temp_dir();
        let mut child = Command::new(REDIS_BIN)
            .args(["--port", &port_arg, "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn {REDIS_BIN}: {e}"))?;
        let log = Arc::new(Mutex::new(String::new()));
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let sink = Arc::clone(&log);
            thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut log = sink.lock().expect("redis log lock");
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let mut server = RedisServer {
            child: Some(child),
            port,
            log,
        };
        let addr = server.addr();
        let pid = server.pid();
        let deadline = Instant::now() + REDIS_STARTUP;
        loop {
            if let Some(child) = server.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    server.child = None;
                    return Err(format!(
                        "redis-server exited ({status}):\n{}",
                        server.output()
                    ));
                }
            }
            if let Ok(Reply::Simple(pong)) = command(addr, &["PING"]) {
                if pong == "PONG" {
                    // Ours, not another server that has the port?
                    let info = server.info("server")?;
                    if info_field(&info, "process_id") == Some(pid.to_string().as_str()) {
                        return Ok(server);
                    }
                    return Err(format!(
                        "port {port} answers, but not as our redis-server (pid {pid})"
                    ));
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "redis-server on port {port} did not answer PING within {}ms:\n{}",
                    REDIS_STARTUP.as_millis(),
                    server.output()
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:PORT`, for `--redis`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The process id (0 once killed).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Everything it printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        self.log.lock().expect("redis log lock").clone()
    }

    /// Kills it with SIGKILL and reaps it (no goodbye to its clients, no save).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Child::kill sends SIGKILL on Unix.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs one command on a fresh connection.
    pub fn command(&self, args: &[&str]) -> Result<Reply, String> {
        command(self.addr(), args)
    }

    /// The text of `INFO SECTION`.
    pub fn info(&self, section: &str) -> Result<String, String> {
        match self.command(&["INFO", section])? {
            Reply::Bulk(Some(bytes)) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
            other => Err(format!("INFO {section}: unexpected reply {other:?}")),
        }
    }

    /// Calls per command since the server started (`INFO commandstats`), lowercase names.
    #[track_caller]
    pub fn command_calls(&self) -> std::collections::BTreeMap<String, u64> {
        let info = self
            .info("commandstats")
            .unwrap_or_else(|e| panic!("INFO commandstats: {e}"));
        command_calls(&info)
    }

    /// Every command the server has run since it started, except `INFO` and `PING` (the ones
    /// these helpers send).
    #[track_caller]
    pub fn commands_total(&self) -> u64 {
        self.command_calls()
            .iter()
            .filter(|(name, _)| !matches!(name.as_str(), "info" | "ping"))
            .map(|(_, calls)| calls)
            .sum()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One RESP reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`
    Error(String),
    /// `:42`
    Integer(i64),
    /// `$N` bulk string; `None` for `$-1`.
    Bulk(Option<Vec<u8>>),
    /// `*N` array; `None` for `*-1`.
    Array(Option<Vec<Reply>>),
}

/// Runs one command (`args` as a RESP array of bulk strings) on a fresh connection to `addr`
/// and reads its reply, with bounded timeouts.
pub fn command(addr: SocketAddr, args: &[&str]) -> Result<Reply, String> {
    let mut stream = TcpStream::connect_timeout(&addr, RESP_TIMEOUT)
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(RESP_TIMEOUT))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(RESP_TIMEOUT))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(&encode(args))
        .map_err(|e| format!("write to {addr}: {e}"))?;
    read_reply(&mut BufReader::new(stream)).map_err(|e| format!("read from {addr}: {e}"))
}

/// `args` as a RESP array of bulk strings (`PING` is `*1\r\n$4\r\nPING\r\n`).
pub fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads one RESP2 reply.
pub fn read_reply(reader: &mut impl BufRead) -> Result<Reply, String> {
    let mut line = Vec::new();
    reader
        .read_until(b'\n', &mut line)
        .map_err(|e| e.to_string())?;
    if !line.ends_with(b"\r\n") {
        return Err(format!(
            "incomplete reply line {:?}",
            String::from_utf8_lossy(&line)
        ));
    }
    let text = String::from_utf8_lossy(&line[1..line.len() - 2]).into_owned();
    let number = || -> Result<i64, String> {
        text.parse()
            .map_err(|_| format!("bad length or integer {text:?}"))
    };
    match line[0] {
        b'+' => Ok(Reply::Simple(text)),
        b'-' => Ok(Reply::Error(text)),
        b':' => Ok(Reply::Integer(number()?)),
        b'$' => {
            let Ok(len) = usize::try_from(number()?) else {
                return Ok(Reply::Bulk(None));
            };
            let mut data = vec![0; len + 2];
            reader.read_exact(&mut data).map_err(|e| e.to_string())?;
            data.truncate(len);
            Ok(Reply::Bulk(Some(data)))
        }
        b'*' => {
            let Ok(len) = usize::try_from(number()?) else {
                return Ok(Reply::Array(None));
            };
            let items = (0..len)
                .map(|_| read_reply(reader))
                .collect::<Result<_, _>>()?;
            Ok(Reply::Array(Some(items)))
        }
        other => Err(format!(
            "unknown reply type {:?} in {:?}",
            other as char,
            String::from_utf8_lossy(&line)
        )),
    }
}

/// The value of `field:` in an `INFO` text.
pub fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        line.strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

/// `cmdstat_NAME:calls=N,...` lines of `INFO commandstats` as NAME → N.
pub fn command_calls(info: &str) -> std::collections::BTreeMap<String, u64> {
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.trim().strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_ascii_lowercase(), calls))
        })
        .collect()
}
