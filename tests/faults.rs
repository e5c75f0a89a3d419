//! Fault injection: peers that go away without a word, at each layer where a real one can, and
//! what the server must do about it (protocol §7, §8).
//!
//! - **Half-open** (a laptop's network dies): two network namespaces joined by a veth pair, the
//!   server in one, the peer in the other; then nftables drops every packet on the peer's side.
//!   No FIN, no RST, not even an ACK arrives: only the heartbeat can notice, and the kernel
//!   must not retransmit for the vanished peer for minutes (`TCP_USER_TIMEOUT`), nor may the
//!   server pile up what is published to it (`--max-backlog`).
//! - **Frozen** (SIGSTOP): the client's kernel still acknowledges every byte, its application
//!   never answers a Ping. Only the heartbeat can notice.
//! - **Reset, killed** (RST by `SO_LINGER` 0, SIGKILL): the kernel tells the server at once;
//!   the channel must hear of it at once too, not after the heartbeat timeout.
//!
//! The half-open tests need `ip`, `nft` and CAP_NET_ADMIN (root). Without them they print
//! `SKIPPED: ...` to stderr and pass, unless `ROLLCALL_FAULT_TESTS=1`, where they fail.
//! Heartbeat-bound tests use a short heartbeat (1 s / 3 s); the prompt-leave tests a long one
//! (30 s / 60 s) so that only the prompt path can pass them.

mod common;

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// Short heartbeat for the tests that wait for it.
const INTERVAL: Duration = Duration::from_secs(1);
const TIMEOUT: Duration = Duration::from_secs(3);
const SHORT_HEARTBEAT: &[&str] = &["--heartbeat-interval", "1s", "--heartbeat-timeout", "3s"];

/// Long heartbeat, for the tests where the heartbeat must play no part.
const LONG_HEARTBEAT: &[&str] = &["--heartbeat-interval", "30s", "--heartbeat-timeout", "60s"];

/// How soon a reset or killed peer's leave must reach the channel.
const PROMPT: Duration = Duration::from_secs(2);

/// Slack for the observer to receive the leave and for this process to be scheduled.
const MARGIN: Duration = Duration::from_millis(750);

/// The latest drop the protocol promises after the last activity (§8):
/// `timeout + max(1 s, interval / 8)`.
fn drop_bound() -> Duration {
    TIMEOUT + (INTERVAL / 8).max(Duration::from_secs(1))
}

/// Whether `msg` is a presence event of type `ty` about `user`.
fn is_event(msg: &Value, ty: &str, user: &str) -> bool {
    msg["type"] == ty && msg["user"] == user
}

// ---------------------------------------------------------------------------------------------
// Half-open peers: two network namespaces and a veth pair
// ---------------------------------------------------------------------------------------------

/// Two network namespaces joined by a veth pair on the private /30 `10.213.K.0`: the server's
/// side is `.1`, the client's `.2`. Both namespaces (and with them the veth pair and every
/// nftables rule) are deleted on drop.
struct NetPair {
    server_ns: String,
    client_ns: String,
    server_ip: String,
    client_ip: String,
}

impl NetPair {
    /// Builds the pair; `k` keeps the tests of one run apart (the names carry our pid, so
    /// parallel runs of the suite do not collide either).
    fn create(k: u8) -> Result<NetPair, String> {
        let pid = std::process::id();
        let pair = NetPair {
            server_ns: format!("rc-srv-{pid}-{k}"),
            client_ns: format!("rc-cli-{pid}-{k}"),
            server_ip: format!("10.213.{k}.1"),
            client_ip: format!("10.213.{k}.2"),
        };
        // `nft` is needed later, to cut the client off; check it before building anything.
        run_tool("nft", &["--version"])?;
        let (srv, cli) = (pair.server_ns.as_str(), pair.client_ns.as_str());
        // From here on `pair` is dropped on failure, which deletes what exists.
        run_tool("ip", &["netns", "add", srv])?;
        run_tool("ip", &["netns", "add", cli])?;
        // Both ends are created inside their namespaces, so the names cannot clash with
        // interfaces of the host or of a parallel run.
        run_tool(
            "ip",
            &[
                "link", "add", "rc-s", "netns", srv, "type", "veth", "peer", "name", "rc-c",
                "netns", cli,
            ],
        )?;
        let server_cidr = format!("{}/30", pair.server_ip);
        let client_cidr = format!("{}/30", pair.client_ip);
        run_tool(
            "ip",
            &["-n", srv, "addr", "add", &server_cidr, "dev", "rc-s"],
        )?;
        run_tool(
            "ip",
            &["-n", cli, "addr", "add", &client_cidr, "dev", "rc-c"],
        )?;
        for (ns, dev) in [(srv, "rc-s"), (cli, "rc-c")] {
            run_tool("ip", &["-n", ns, "link", "set", "lo", "up"])?;
            run_tool("ip", &["-n", ns, "link", "set", dev, "up"])?;
        }
        Ok(pair)
    }

    /// Runs `f` on a thread inside the server's namespace: sockets it opens and processes it
    /// spawns live there for good (a socket keeps the namespace it was created in).
    fn in_server<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        in_netns(&self.server_ns, f)
    }

    /// Runs `f` on a thread inside the client's namespace.
    fn in_client<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        in_netns(&self.client_ns, f)
    }

    /// The client's host vanishes: every packet in or out of its namespace is dropped.
    #[track_caller]
    fn cut_client_off(&self) {
        let rules = "add table inet rc; \
             add chain inet rc in { type filter hook input priority 0; policy drop; }; \
             add chain inet rc out { type filter hook output priority 0; policy drop; }";
        if let Err(e) = run_tool("ip", &["netns", "exec", &self.client_ns, "nft", rules]) {
            panic!("cannot install the nftables drop rules: {e}");
        }
    }

    /// The server namespace's TCP sockets towards the client (`ss` lines, any state).
    #[track_caller]
    fn server_sockets_to_client(&self) -> Vec<String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.server_ns, "ss", "-tanH"])
            .args(["dst", &self.client_ip])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .expect("run ss in the server namespace");
        assert!(out.status.success(), "ss failed: {out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(str::to_string)
            .collect()
    }
}

impl Drop for NetPair {
    fn drop(&mut self) {
        for ns in [&self.server_ns, &self.client_ns] {
            let _ = run_tool("ip", &["netns", "del", ns]);
        }
    }
}

/// Builds a [`NetPair`], or says why not and returns `None` (the test then passes as
/// skipped), unless `ROLLCALL_FAULT_TESTS=1` demands that it runs.
fn net_pair_or_skip(k: u8) -> Option<NetPair> {
    match NetPair::create(k) {
        Ok(pair) => Some(pair),
        Err(e) => {
            let missing = format!("cannot create network namespaces: {e}");
            skip_or_fail(
                "ROLLCALL_FAULT_TESTS",
                "half-open test",
                &missing,
                "run as root with iproute2 and nftables (.ci/run installs them)",
            );
            None
        }
    }
}

/// Runs `program` with `args` to completion; its stderr as the error if it fails.
fn run_tool(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `f` on a fresh thread that has entered the network namespace `ns` (setns(2) moves
/// only the calling thread, so this process's other threads stay where they are).
fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = format!("/run/netns/{ns}");
    thread::scope(|scope| {
        let worker = scope.spawn(|| {
            let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            // SAFETY: setns(2) with an open namespace file descriptor and a constant flag; it
            // affects only this thread, which ends with the closure.
            let status = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(status, 0, "setns({path}): {}", io::Error::last_os_error());
            f()
        });
        worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

#[test]
fn a_half_open_peer_is_dropped_by_the_heartbeat_and_given_up_by_the_kernel() {
    let Some(net) = net_pair_or_skip(1) else {
        return;
    };
    let listen = format!("{}:0", net.server_ip);
    let mut flags = vec!["--listen", listen.as_str()];
    flags.extend_from_slice(SHORT_HEARTBEAT);
    let server = net.in_server(|| Server::start(&flags));
    let addr = server.addr();
    let mut observer = net.in_server(|| Client::join(addr, "user=observer&channel=room").0);
    let mut ghost = net.in_client(|| Client::join(addr, "user=ghost&channel=room").0);
    observer.wait_for(STEP, "ghost's join", |m| is_event(m, "join", "ghost"));

    // The ghost's last activity: a command the server has answered. `last` is taken before
    // it is sent, so the server saw it after `last`.
    let last = Instant::now();
    assert!(ghost.roundtrip_ping().is_empty());
    net.cut_client_off();

    let (leave, _) = observer.wait_for(drop_bound() + MARGIN, "ghost's leave", |m| {
        is_event(m, "leave", "ghost")
    });
    let elapsed = last.elapsed();
    assert_eq!(leave["reason"], "timeout", "{leave}");
    assert!(
        elapsed >= TIMEOUT,
        "dropped {}ms after its last activity, before the {}ms timeout",
        ms(elapsed),
        ms(TIMEOUT)
    );
    assert!(
        elapsed <= drop_bound() + MARGIN,
        "leave seen {}ms after the last activity; the bound is {}ms (+{}ms slack)",
        ms(elapsed),
        ms(drop_bound()),
        ms(MARGIN)
    );

    // The server has forgotten it: gauges, counters and presence.
    let metrics = net.in_server(|| scrape(addr));
    assert_eq!(
        metrics.get("rollcall_connections"),
        1.0,
        "the observer only"
    );
    assert_eq!(
        metrics.get("rollcall_users_online"),
        1.0,
        "the observer only"
    );
    assert_eq!(metrics.closed("timeout"), 1.0);
    let presence = net.in_server(|| http_get(addr, "/presence")).json();
    assert_eq!(presence["connections"], 1, "{presence}");
    assert_eq!(
        user_names(&presence["channels"]["room"]),
        ["observer"],
        "{presence}"
    );

    // And so has the kernel. The Ping sent one interval after the last activity is never
    // acknowledged; TCP_USER_TIMEOUT (the heartbeat timeout) makes the kernel give up on it
    // that long after, where by default it would retransmit for many minutes (the socket
    // the server closed lives on as an orphan in FIN-WAIT-1 meanwhile).
    let gone_by = last + INTERVAL + TIMEOUT + Duration::from_millis(1500);
    loop {
        let sockets = net.server_sockets_to_client();
        if sockets.is_empty() {
            break;
        }
        assert!(
            Instant::now() < gone_by,
            "{}ms after the ghost's last activity the kernel still holds its socket \
             (is TCP_USER_TIMEOUT set on accepted connections?):\n{}",
            ms(last.elapsed()),
            sockets.join("\n")
        );
        // Keep the observer's heartbeat answered while waiting.
        observer.expect_silence(Duration::from_millis(100));
    }
    drop(ghost);
}

#[test]
fn a_half_open_peer_does_not_pile_up_what_is_published_to_it() {
    let Some(net) = net_pair_or_skip(2) else {
        return;
    };
    // A heartbeat far longer than the test: only the backlog bound can drop the ghost.
    let listen = format!("{}:0", net.server_ip);
    let mut flags = vec!["--listen", listen.as_str(), "--max-backlog", "64KiB"];
    flags.extend_from_slice(LONG_HEARTBEAT);
    let server = net.in_server(|| Server::start(&flags));
    let addr = server.addr();
    // A watcher sees joins and leaves but not the messages.
    let mut observer = net.in_server(|| Client::join(addr, "watch=room").0);
    let mut ghost =
        net.in_client(|| Client::connect_welcomed(addr, "user=ghost&channel=room&events=none").0);
    observer.wait_for(STEP, "ghost's join", |m| is_event(m, "join", "ghost"));
    assert!(ghost.roundtrip_ping().is_empty());
    net.cut_client_off();
    let rss_before = rss_bytes(server.pid());

    // Publish 60 KiB messages, up to 15 MiB in all, until none reaches the ghost any more.
    const MESSAGE: usize = 60 << 10;
    const MAX_POSTS: usize = 256;
    let body = json!({"channel": "room", "data": "x".repeat(MESSAGE)}).to_string();
    let (posts, reached_ghost) = net.in_server(|| {
        let (mut posts, mut reached_ghost) = (0, 0);
        while posts < MAX_POSTS {
            let response = http_post(addr, "/publish", &[], body.as_bytes());
            assert_eq!(response.status, 200, "{response:?}");
            posts += 1;
            match response.json()["delivered"].as_u64() {
                Some(0) => break,
                Some(1) => reached_ghost += 1,
                _ => panic!("unexpected answer to /publish: {}", response.body),
            }
        }
        (posts, reached_ghost)
    });
    let (leave, _) = observer.wait_for(STEP, "ghost's leave", |m| is_event(m, "leave", "ghost"));
    assert_eq!(leave["reason"], "slow_consumer", "{leave}");

    // What may wait for a peer that acknowledges nothing: the 64 KiB backlog, the bounded
    // kernel send buffer, one message that overflows them. Not everything published, and
    // nothing more once the peer is known to be too slow (the POSTs come back to back, so
    // several may be served before the server carries out the drop).
    assert!(
        reached_ghost * MESSAGE <= 512 << 10,
        "{reached_ghost} of {posts} messages of {MESSAGE} bytes were queued to a peer that \
         acknowledges nothing before it was dropped"
    );
    let rss_after = rss_bytes(server.pid());
    assert!(
        rss_after < rss_before + (4 << 20),
        "server RSS grew from {rss_before} to {rss_after} bytes while {posts} messages of \
         {MESSAGE} bytes were published to a half-open peer"
    );
    let metrics = net.in_server(|| scrape(addr));
    assert_eq!(metrics.closed("slow_consumer"), 1.0);
    assert_eq!(
        metrics.get("rollcall_connections"),
        1.0,
        "the observer only"
    );
    drop(ghost);
}

// ---------------------------------------------------------------------------------------------
// A frozen client process: its kernel acknowledges, it never answers
// ---------------------------------------------------------------------------------------------

/// `rollcall-load hold` with one connection of user `PREFIX-0` in channel `room`, held a
/// minute (the tests end long before).
fn hold_one(addr: std::net::SocketAddr, prefix: &str) -> ChildGuard {
    let url = format!("ws://{addr}/");
    ChildGuard::spawn(
        &load_bin(),
        &[
            "hold",
            "--url",
            &url,
            "--connections",
            "1",
            "--duration",
            "60s",
            "--query",
            "channel=room",
            "--user-prefix",
            prefix,
        ],
    )
}

#[test]
fn a_frozen_client_process_is_dropped_by_the_heartbeat() {
    let server = Server::start(SHORT_HEARTBEAT);
    let addr = server.addr();
    let (mut observer, _) = Client::join(addr, "user=observer&channel=room");
    let frozen = hold_one(addr, "frozen");
    observer.wait_for(STEP, "frozen-0's join", |m| is_event(m, "join", "frozen-0"));

    // Control: while it runs, the client answers the server's Pings and stays well past the
    // timeout, so the drop below is the freeze's doing.
    observer.expect_silence(TIMEOUT + INTERVAL);
    assert!(scrape(addr).get("rollcall_heartbeat_pings_sent_total") >= 2.0);

    frozen.signal(libc::SIGSTOP);
    let stopped = Instant::now();
    let (leave, _) = observer.wait_for(drop_bound() + MARGIN, "frozen-0's leave", |m| {
        is_event(m, "leave", "frozen-0")
    });
    let elapsed = stopped.elapsed();
    frozen.signal(libc::SIGCONT);
    assert_eq!(leave["reason"], "timeout", "{leave}");
    // Its last Pong came at most one interval (and a 100 ms tick) before the stop.
    assert!(
        elapsed + INTERVAL + Duration::from_millis(200) >= TIMEOUT,
        "dropped only {}ms after the stop",
        ms(elapsed)
    );
    assert!(
        elapsed <= drop_bound() + MARGIN,
        "leave seen {}ms after the stop; the bound is {}ms after its last activity",
        ms(elapsed),
        ms(drop_bound())
    );
    let metrics = scrape(addr);
    assert_eq!(metrics.closed("timeout"), 1.0);
    assert_eq!(
        metrics.get("rollcall_connections"),
        1.0,
        "the observer only"
    );
}

// ---------------------------------------------------------------------------------------------
// Reset and killed peers: the kernel says so at once, and so must the server
// ---------------------------------------------------------------------------------------------

/// Waits (at most [`PROMPT`]) for `user`'s leave after its connection ended at `ended`;
/// checks the reason (§7: EOF or reset is `closed`, an I/O error `error`) and the time.
#[track_caller]
fn expect_prompt_leave(observer: &mut Client, user: &str, ended: Instant) -> Value {
    let (leave, _) = observer.wait_for(PROMPT, &format!("{user}'s leave"), |m| {
        is_event(m, "leave", user)
    });
    let elapsed = ended.elapsed();
    assert!(
        leave["reason"] == "closed" || leave["reason"] == "error",
        "{leave}"
    );
    assert!(
        elapsed <= PROMPT,
        "leave only {}ms after the end",
        ms(elapsed)
    );
    leave
}

#[test]
fn a_reset_connection_leaves_at_once() {
    let server = Server::start(LONG_HEARTBEAT);
    let addr = server.addr();
    let (mut observer, _) = Client::join(addr, "user=observer&channel=room");
    let (mut peer, _) = Client::join(addr, "user=resetter&channel=room");
    observer.wait_for(STEP, "resetter's join", |m| is_event(m, "join", "resetter"));

    // SO_LINGER on with a zero timeout: close(2) sends an RST instead of a FIN.
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads `size_of::<linger>()` bytes from a live `linger`; the fd is the
    // peer's open socket.
    let status = unsafe {
        libc::setsockopt(
            peer.stream().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(status, 0, "SO_LINGER: {}", io::Error::last_os_error());
    drop(peer);
    let ended = Instant::now();

    expect_prompt_leave(&mut observer, "resetter", ended);
    let metrics = scrape(addr);
    assert_eq!(metrics.closed("closed") + metrics.closed("error"), 1.0);
    assert_eq!(metrics.closed("timeout"), 0.0);
    assert_eq!(
        metrics.get("rollcall_connections"),
        1.0,
        "the observer only"
    );
}

#[test]
fn a_killed_client_process_leaves_at_once() {
    let server = Server::start(LONG_HEARTBEAT);
    let addr = server.addr();
    let (mut observer, _) = Client::join(addr, "user=observer&channel=room");
    let mut victim = hold_one(addr, "killed");
    observer.wait_for(STEP, "killed-0's join", |m| is_event(m, "join", "killed-0"));

    victim.signal(libc::SIGKILL);
    let ended = Instant::now();
    assert!(victim.wait_exit(STEP).is_some(), "SIGKILL did not end it");

    expect_prompt_leave(&mut observer, "killed-0", ended);
    let metrics = scrape(addr);
    assert_eq!(metrics.closed("closed") + metrics.closed("error"), 1.0);
    assert_eq!(
        metrics.get("rollcall_connections"),
        1.0,
        "the observer only"
    );
}
