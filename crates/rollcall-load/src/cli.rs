//! Flags to [`Options`] (lexopt, like the server's own binary) and the `--help` text.
//!
//! Invariant: everything is validated here, so the modes never meet a nonsensical value
//! (a zero count, an unreadable URL, `--plain` outside `hold` and `fanout`).

use std::time::Duration;

use lexopt::prelude::*;
use rollcall::units::parse_duration;

use crate::target::Target;

pub const USAGE: &str = "\
rollcall-load: load generator for rollcall (and plain WebSocket servers)

USAGE:
    rollcall-load MODE [OPTIONS]

MODES:
    hold               open --connections, wait until every one is up, hold them --duration
    churn              --cycles of connect, welcome+state, leave, close; then check /presence
    fanout             --subscribers in channel fanout, then --messages via POST /publish
    presence-latency   --members in channel lat, then --samples joins timed at 16 observers
    storm              --members connect at once to channel storm; time until every one
                       knows all of them (--events all or diff), or only
                       until all are admitted (--events none)

OPTIONS:
    --url URL               ws://HOST:PORT/PATH of the server [default: ws://127.0.0.1:8080/]
    --connections N         hold: connections to open [default: 1000]
    --duration DUR          hold: how long to hold them once all are up [default: 10s]
    --rate N                new connections per second, 0 = as fast as possible [default: 0]
    --in-flight N           connections on their way (not yet up) at once, at most; keep it
                            under the server's listen backlog (rollcall's is 4096, many
                            servers' 128 or less) [default: 100]
    --plain                 hold, fanout: plain WebSocket server; up when the 101 arrives
                            (fanout: the server broadcasts POST /publish, as the peers in
                            benches/peers do)
    --server-pid PID        hold: sample the server's RSS and CPU time from /proc; fanout: its
                            CPU time over the publications (server CPU per delivery)
    --cycles N              churn: connect/leave/close cycles [default: 1000]
    --concurrency N         churn: cycles in progress at once [default: 50]
    --subscribers N         fanout: subscribers (events=none) [default: 100]
    --messages N            fanout: messages to publish [default: 10]
    --publish-rate N        fanout: POSTs per second, 0 = each after the previous answer [default: 0]
    --subscribe-url URL     fanout, cluster: the subscribers are split evenly over these nodes
                            (repeat the flag; include --url to keep some there), while POST
                            /publish goes to --url [default: --url alone]
    --members N             presence-latency: members held in channel lat; storm: clients
                            [default: 100]
    --events MODE           storm: all, diff or none (none: admission only, each client
                            counts as converged once up) [default: all]
    --samples N             presence-latency: users joining one after the other [default: 20]
    --observe-url URL       presence-latency, cluster: the members (and so the observers)
                            connect to this node, the timed users to --url [default: --url]
    --sources K             spread connections over 127.0.0.2 .. 127.0.0.(K+1); 1 = the kernel
                            chooses the source address [default: 1]
    --procs P               hold: split the connections over P processes; fanout, storm:
                            the subscribers or clients, so that the server, not one reading
                            process, is the ceiling [default: 1]
    --query Q               extra query string for every rollcall URL (events=none&channel=big);
                            in hold, {room} stands for the client's number / 100, so that
                            channel=room-{room} makes rooms of 100 as --pusher does
    --pusher ID:KEY:SECRET  hold, fanout: Pusher clients of this app (/app/KEY, as pusher-js):
                            hold joins presence channels presence-load-K of 100 members each
                            (Pusher's limit), signed as an app's backend signs; fanout
                            subscribes to public channel fanout and triggers through the
                            signed REST API
    --user-prefix P         prefix of the user ids [default: load]
    --admin-token TOKEN     bearer token for /presence and /publish [env: ROLLCALL_ADMIN_TOKEN]
    --timeout DUR           limit of every phase; the run fails when one passes [default: 60s]
    --json                  print one JSON object on stdout (the summary goes to stderr)
    -h, --help              print this help

DUR is a whole number with ms, s, m or h (500ms, 30s, 2m). Exit status: 0 when every
connection came up and every check held, 1 when the run failed (a failure, a timeout, a
missing message, members left behind), 2 for invalid flags.
";

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Hold,
    Churn,
    Fanout,
    PresenceLatency,
    Storm,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Hold => "hold",
            Mode::Churn => "churn",
            Mode::Fanout => "fanout",
            Mode::PresenceLatency => "presence-latency",
            Mode::Storm => "storm",
        }
    }
}

/// A `--procs` child's share of a `hold`: connections `first .. first + count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slice {
    pub first: u64,
    pub count: u64,
}

/// Every setting of a run.
#[derive(Debug, Clone)]
pub struct Options {
    pub mode: Mode,
    pub target: Target,
    pub connections: u64,
    pub duration: Duration,
    pub rate: f64,
    pub in_flight: u64,
    pub plain: bool,
    pub server_pid: Option<u32>,
    pub cycles: u64,
    pub concurrency: u64,
    pub subscribers: u64,
    pub messages: u64,
    pub publish_rate: f64,
    pub members: u64,
    pub samples: u64,
    /// `--events`: the storm's events mode (`all`, `diff` or `none`).
    pub events: String,
    /// `--observe-url`: the node of the members, when not `--url`.
    pub observe: Option<Target>,
    /// `--subscribe-url`s: the nodes of the subscribers, when not `--url` alone.
    pub subscribe: Vec<Target>,
    pub sources: u32,
    pub procs: u32,
    pub query: String,
    pub user_prefix: String,
    pub admin_token: Option<String>,
    /// `--pusher`: Pusher clients of this app.
    pub pusher: Option<rollcall::pusher::App>,
    pub timeout: Duration,
    pub json: bool,
    /// Hidden: this process is a `--procs` child running this slice.
    pub child: Option<Slice>,
}

/// The flag that makes a process a `--procs` child (not in `--help`).
pub const CHILD_FLAG: &str = "--child-slice";

/// What the command line asks for.
pub enum Invocation {
    Run(Box<Options>),
    Help,
}

/// Parses the process's arguments.
pub fn parse_args() -> Result<Invocation, String> {
    parse(lexopt::Parser::from_env())
}

fn parse(mut parser: lexopt::Parser) -> Result<Invocation, String> {
    let mut mode = None;
    let mut url = "ws://127.0.0.1:8080/".to_string();
    let mut o = Options {
        mode: Mode::Hold,
        target: Target::parse("ws://127.0.0.1:8080/")?,
        connections: 1000,
        duration: Duration::from_secs(10),
        rate: 0.0,
        in_flight: 100,
        plain: false,
        server_pid: None,
        cycles: 1000,
        concurrency: 50,
        subscribers: 100,
        messages: 10,
        publish_rate: 0.0,
        members: 100,
        samples: 20,
        events: "all".to_string(),
        observe: None,
        subscribe: Vec::new(),
        sources: 1,
        procs: 1,
        query: String::new(),
        user_prefix: "load".to_string(),
        admin_token: std::env::var("ROLLCALL_ADMIN_TOKEN").ok(),
        pusher: None,
        timeout: Duration::from_secs(60),
        json: false,
        child: None,
    };
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        let flag = match arg {
            Long(name) => format!("--{name}"),
            Short(c) => format!("-{c}"),
            Value(value) if mode.is_none() => {
                let text = value.to_string_lossy();
                mode = Some(match text.as_ref() {
                    "hold" => Mode::Hold,
                    "churn" => Mode::Churn,
                    "fanout" => Mode::Fanout,
                    "presence-latency" => Mode::PresenceLatency,
                    "storm" => Mode::Storm,
                    _ => return Err(format!("unknown mode {text:?}")),
                });
                continue;
            }
            Value(value) => return Err(format!("unexpected argument {value:?}")),
        };
        let mut value = || -> Result<String, String> {
            let value = parser.value().map_err(|e| e.to_string())?;
            value
                .into_string()
                .map_err(|v| format!("{flag}: {v:?} is not valid UTF-8"))
        };
        let count = |text: String| -> Result<u64, String> {
            text.parse()
                .map_err(|_| format!("{flag}: {text:?} is not a whole number"))
        };
        let rate = |text: String| -> Result<f64, String> {
            match text.parse::<f64>() {
                Ok(r) if r >= 0.0 && r.is_finite() => Ok(r),
                _ => Err(format!("{flag}: {text:?} is not a rate (a number >= 0)")),
            }
        };
        let duration = |text: String| parse_duration(&text).map_err(|e| format!("{flag}: {e}"));
        let node =
            |flag: &str, text: String| Target::parse(&text).map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "-h" | "--help" => return Ok(Invocation::Help),
            "--url" => url = value()?,
            "--connections" => o.connections = count(value()?)?,
            "--duration" => o.duration = duration(value()?)?,
            "--rate" => o.rate = rate(value()?)?,
            "--in-flight" => o.in_flight = count(value()?)?,
            "--plain" => o.plain = true,
            "--server-pid" => o.server_pid = Some(count(value()?)? as u32),
            "--cycles" => o.cycles = count(value()?)?,
            "--concurrency" => o.concurrency = count(value()?)?,
            "--subscribers" => o.subscribers = count(value()?)?,
            "--messages" => o.messages = count(value()?)?,
            "--publish-rate" => o.publish_rate = rate(value()?)?,
            "--members" => o.members = count(value()?)?,
            "--samples" => o.samples = count(value()?)?,
            "--events" => {
                o.events = value()?;
                if !matches!(o.events.as_str(), "all" | "diff" | "none") {
                    return Err(format!(
                        "--events must be all, diff or none, not {:?}",
                        o.events
                    ));
                }
            }
            "--observe-url" => o.observe = Some(node(&flag, value()?)?),
            "--subscribe-url" => o.subscribe.push(node(&flag, value()?)?),
            "--sources" => o.sources = count(value()?)? as u32,
            "--procs" => o.procs = count(value()?)? as u32,
            "--query" => o.query = value()?.trim_start_matches(['?', '&']).to_string(),
            "--user-prefix" => o.user_prefix = value()?,
            "--admin-token" => o.admin_token = Some(value()?),
            "--pusher" => {
                let app =
                    rollcall::pusher::App::parse(&value()?).map_err(|e| format!("{flag}: {e}"))?;
                o.pusher = Some(app);
            }
            "--timeout" => o.timeout = duration(value()?)?,
            "--json" => o.json = true,
            CHILD_FLAG => {
                let text = value()?;
                let (first, count) = text
                    .split_once(':')
                    .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
                    .ok_or_else(|| format!("{CHILD_FLAG}: {text:?} is not FIRST:COUNT"))?;
                o.child = Some(Slice { first, count });
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    o.mode = mode.ok_or("no mode given (hold, churn, fanout or presence-latency)")?;
    o.target = Target::parse(&url).map_err(|e| format!("--url: {e}"))?;
    validate(&o)?;
    Ok(Invocation::Run(Box::new(o)))
}

fn validate(o: &Options) -> Result<(), String> {
    let positive = [
        ("--connections", o.connections),
        ("--in-flight", o.in_flight),
        ("--cycles", o.cycles),
        ("--concurrency", o.concurrency),
        ("--subscribers", o.subscribers),
        ("--messages", o.messages),
        ("--members", o.members),
        ("--samples", o.samples),
        ("--sources", u64::from(o.sources)),
        ("--procs", u64::from(o.procs)),
    ];
    for (flag, value) in positive {
        if value == 0 {
            return Err(format!("{flag} must be at least 1"));
        }
    }
    if o.timeout.is_zero() {
        return Err("--timeout must be more than 0ms".into());
    }
    if o.plain && !matches!(o.mode, Mode::Hold | Mode::Fanout) {
        return Err("--plain works with hold and fanout only".into());
    }
    if o.procs > 1 && !matches!(o.mode, Mode::Hold | Mode::Fanout | Mode::Storm) {
        return Err("--procs works with hold, fanout and storm only".into());
    }
    let split = match o.mode {
        Mode::Fanout => o.subscribers,
        Mode::Storm => o.members,
        _ => o.connections,
    };
    if o.procs as u64 > split {
        return Err(
            "--procs must not exceed --connections (hold), --subscribers (fanout) \
                    or --members (storm)"
                .into(),
        );
    }
    if o.procs > 1 && !o.subscribe.is_empty() {
        return Err("--procs and --subscribe-url exclude each other".into());
    }
    if o.observe.is_some() && o.mode != Mode::PresenceLatency {
        return Err("--observe-url works with presence-latency only".into());
    }
    if !o.subscribe.is_empty() && o.mode != Mode::Fanout {
        return Err("--subscribe-url works with fanout only".into());
    }
    if o.pusher.is_some() && !matches!(o.mode, Mode::Hold | Mode::Fanout) {
        return Err("--pusher works with hold and fanout only".into());
    }
    if o.pusher.is_some() && o.plain {
        return Err("--pusher and --plain exclude each other".into());
    }
    let mut servers = [&o.target]
        .into_iter()
        .chain(&o.observe)
        .chain(&o.subscribe);
    if o.sources > 1 && !servers.all(|t| t.addr.is_ipv4()) {
        return Err("--sources needs IPv4 server addresses".into());
    }
    if o.sources > 250 {
        return Err("--sources must be at most 250 (127.0.0.2 .. 127.0.0.251)".into());
    }
    let valid_name = |c: char| c.is_ascii_alphanumeric() || "_.@-".contains(c);
    if o.user_prefix.len() > 40 || !o.user_prefix.chars().all(valid_name) {
        return Err(format!(
            "--user-prefix {:?}: at most 40 characters of A-Z a-z 0-9 _ . @ -",
            o.user_prefix
        ));
    }
    Ok(())
}

/// The options of `args` (the mode first), for the modes' unit tests.
#[cfg(test)]
pub fn parse_for_test(args: &[&str]) -> Result<Options, String> {
    match parse(lexopt::Parser::from_args(args.iter().copied()))? {
        Invocation::Run(options) => Ok(*options),
        Invocation::Help => Err("help".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Options, String> {
        parse_for_test(args)
    }

    #[test]
    fn flags_are_read_and_checked() {
        let o = run(&[
            "hold",
            "--connections",
            "300",
            "--sources",
            "2",
            "--duration",
            "2s",
        ])
        .unwrap();
        assert_eq!((o.mode, o.connections, o.sources), (Mode::Hold, 300, 2));
        assert_eq!(o.duration, Duration::from_secs(2));
        assert!(run(&["churn", "--plain"]).unwrap_err().contains("--plain"));
        assert!(run(&["hold", "--connections", "0"])
            .unwrap_err()
            .contains("at least 1"));
        assert!(run(&["--json"]).unwrap_err().contains("no mode"));
        assert!(run(&["fanout", "--observe-url", "ws://127.0.0.1:1/"])
            .unwrap_err()
            .contains("presence-latency only"));
        let spread = run(&["fanout", "--subscribers", "10", "--procs", "2", "--plain"]).unwrap();
        assert_eq!((spread.procs, spread.plain), (2, true));
        assert!(run(&["fanout", "--subscribers", "1", "--procs", "2"]).is_err());
        let storm = run(&["storm", "--members", "10", "--procs", "2"]).unwrap();
        assert_eq!(storm.procs, 2);
        assert!(run(&["storm", "--members", "1", "--procs", "2"]).is_err());
        assert!(run(&["churn", "--procs", "2"])
            .unwrap_err()
            .contains("--procs"));
        let clustered = [
            "fanout",
            "--procs",
            "2",
            "--subscribe-url",
            "ws://127.0.0.1:1/",
        ];
        assert!(run(&clustered).unwrap_err().contains("--subscribe-url"));
        let pusher = run(&["hold", "--pusher", "1:k:s"]).unwrap();
        assert_eq!(pusher.pusher.map(|app| app.key), Some("k".to_owned()));
        assert!(run(&["churn", "--pusher", "1:k:s"]).is_err());
        assert!(run(&["hold", "--pusher", "1:k"]).is_err());
        let child = run(&["hold", "--child-slice", "100:50"]).unwrap();
        assert_eq!(
            child.child,
            Some(Slice {
                first: 100,
                count: 50
            })
        );
    }

    #[test]
    fn cluster_nodes_are_read_per_mode() {
        let o = run(&[
            "fanout",
            "--url",
            "ws://127.0.0.1:9001/",
            "--subscribe-url",
            "ws://127.0.0.1:9001/",
            "--subscribe-url",
            "ws://127.0.0.1:9002/ws",
        ])
        .unwrap();
        let urls: Vec<&str> = o.subscribe.iter().map(Target::url).collect();
        assert_eq!(urls, ["ws://127.0.0.1:9001/", "ws://127.0.0.1:9002/ws"]);
        let o = run(&["presence-latency", "--observe-url", "ws://127.0.0.1:9002/"]).unwrap();
        assert_eq!(o.observe.map(|t| t.addr.port()), Some(9002));
        assert!(
            run(&["presence-latency", "--subscribe-url", "ws://127.0.0.1:1/"])
                .unwrap_err()
                .contains("fanout only")
        );
        assert!(run(&["fanout", "--subscribe-url", "http://127.0.0.1:1/"])
            .unwrap_err()
            .starts_with("--subscribe-url: "));
    }
}
