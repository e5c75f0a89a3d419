//! `storm`: `--members` clients connect at once (as after a deploy or a network blip) to one
//! channel, `storm`, in `--events` mode `all` or `diff`, and the run times how long until
//! every client knows all N members (convergence), counting what each client received. In
//! mode `none` clients hear no presence: the run times admission alone (a client converges
//! when it is up), for the storms of listeners that only ask to be let in.
//!
//! Each client's view is a bit set of member numbers, kept from its `state`, then its
//! `join`/`leave` events (`all`) or `diff`s (`diff`); member k is user `PREFIX-m{k}`.
//! Refusals (a `503`, a reset) count as failures: the run fails unless all N are admitted.

use std::io::Read;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cli::{Options, Slice};
use crate::crowd::{Crowd, Seen, UpWhen};
use crate::member_keys;
use crate::pool::Pool;
use crate::procfs::MonoClock;
use crate::procs::{tell_parent, Children};
use crate::report::{secs, Report};
use crate::socket::Sources;
use crate::stats::Tally;

/// Slack for starting and stopping processes, on top of `--timeout`.
const MARGIN: Duration = Duration::from_secs(10);

const CHANNEL: &str = "storm";

/// One client's view of the channel.
struct View {
    known: Vec<u64>,
    count: usize,
}

impl View {
    fn new(n: usize) -> View {
        View {
            known: vec![0; n.div_ceil(64)],
            count: 0,
        }
    }

    fn set(&mut self, k: usize, present: bool) {
        let (word, bit) = (k / 64, 1u64 << (k % 64));
        let Some(slot) = self.known.get_mut(word) else {
            return;
        };
        let was = *slot & bit != 0;
        if present && !was {
            *slot |= bit;
            self.count += 1;
        } else if !present && was {
            *slot &= !bit;
            self.count -= 1;
        }
    }
}

/// What one process's share of a storm saw (the whole storm without `--procs`).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct StormSlice {
    pub clients: u64,
    pub admitted: u64,
    pub failures: Tally,
    pub converged: u64,
    /// When the last of its clients converged, in monotonic nanoseconds (see [`MonoClock`]).
    pub converged_at_ns: Option<u64>,
    pub messages: u64,
    pub bytes: u64,
}

impl StormSlice {
    pub fn to_json(&self) -> Value {
        json!({
            "clients": self.clients,
            "admitted": self.admitted,
            "failures": self.failures.to_json(),
            "converged": self.converged,
            "converged_at_ns": self.converged_at_ns,
            "messages": self.messages,
            "bytes": self.bytes,
        })
    }

    pub fn from_json(value: &Value) -> Option<StormSlice> {
        let n = |key: &str| value.get(key)?.as_u64();
        Some(StormSlice {
            clients: n("clients")?,
            admitted: n("admitted")?,
            failures: Tally::from_json(value.get("failures")?),
            converged: n("converged")?,
            converged_at_ns: value.get("converged_at_ns")?.as_u64(),
            messages: n("messages")?,
            bytes: n("bytes")?,
        })
    }

    /// Adds another process's share.
    pub fn merge(&mut self, other: &StormSlice) {
        self.clients += other.clients;
        self.admitted += other.admitted;
        self.failures.merge(&other.failures);
        self.converged += other.converged;
        self.converged_at_ns = self.converged_at_ns.max(other.converged_at_ns);
        self.messages += other.messages;
        self.bytes += other.bytes;
    }
}

/// `storm` in this process alone.
pub fn run(o: &Options) -> Result<Report, String> {
    let clock = MonoClock::new();
    let started_ns = clock.ns(Instant::now());
    let whole = Slice {
        first: 0,
        count: o.members,
    };
    let storm = run_slice(o, whole, &clock, |_| Ok(()))?;
    Ok(report(o, &storm, started_ns))
}

/// `storm --procs P`: the clients split over P child processes, so that the clients' own
/// reading (N² member keys between them) is spread over the machine's cores; the storm's
/// start is the parent's, just before it starts the children.
pub fn run_parent(o: &Options) -> Result<Report, String> {
    let started_ns = MonoClock::new().ns(Instant::now());
    let mut children = Children::spawn(o, o.members)?;
    let results = children.collect("result", Instant::now() + o.timeout + MARGIN);
    // Every child holds its clients until now: one that left early would be a leave to the
    // others' clients.
    children.stop();
    children.wait();
    let results = results?;
    let mut storm = StormSlice::default();
    for value in &results {
        let slice =
            StormSlice::from_json(value).ok_or_else(|| format!("not a storm slice: {value}"))?;
        storm.merge(&slice);
    }
    let mut report = report(o, &storm, started_ns);
    report.json["children"] = Value::from(results);
    Ok(report)
}

/// Child side: runs its slice of the clients, prints its result line, and holds its clients
/// until the parent closes stdin (every child is done).
pub fn run_child(o: &Options, slice: Slice) -> Result<(), String> {
    run_slice(o, slice, &MonoClock::new(), |storm| {
        tell_parent("result", storm.to_json())?;
        // EOF (the parent's "stop", or the parent gone) ends the wait.
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        Ok(())
    })
    .map(drop)
}

/// Clients `slice.first ..` of the storm connect at once and read until each knows all
/// `--members` members (or only until admitted, in mode `none`), or until `--timeout`;
/// `done` runs with the outcome while the clients are still connected.
fn run_slice(
    o: &Options,
    slice: Slice,
    clock: &MonoClock,
    done: impl FnOnce(&StormSlice) -> Result<(), String>,
) -> Result<StormSlice, String> {
    let n = o.members as usize;
    let count = slice.count as usize;
    let mut pool = Pool::new(o.target.clone(), Sources::new(o.sources, slice.first))
        .map_err(|e| format!("cannot create the poll: {e}"))?;
    let mut crowd = Crowd::new(slice.count, o.rate, o.in_flight, UpWhen::Welcome);
    let prefix = format!("{}-m", o.user_prefix);
    let dial = |k: usize| {
        let member = slice.first + k as u64;
        let query = format!(
            "user={prefix}{member}&channel={CHANNEL}&events={}",
            o.events
        );
        (&o.target, o.target.ws_target(&query, &o.query))
    };
    let mut views: Vec<View> = (0..count).map(|_| View::new(n)).collect();
    let mut storm = StormSlice {
        clients: slice.count,
        ..StormSlice::default()
    };
    let mut converged = 0usize;
    let mut converged_at = None;
    let deadline = Instant::now() + o.timeout;
    let mut events = Vec::new();
    let admission_only = o.events == "none";
    while converged < count {
        let now = Instant::now();
        crowd.open_more(&mut pool, now, dial);
        if now >= deadline || (crowd.settled() && crowd.up < slice.count) {
            break;
        }
        let wake = crowd.next_due().map_or(deadline, |due| due.min(deadline));
        pool.poll(Some(wake.saturating_duration_since(now)), &mut events)
            .map_err(|e| format!("event loop failed: {e}"))?;
        for event in events.drain(..) {
            let Seen::Text(k, text) = crowd.handle(&mut pool, &event) else {
                continue;
            };
            storm.messages += 1;
            storm.bytes += text.len() as u64;

            let before = views[k].count;
            apply(&mut views[k], text, &prefix);
            let after = views[k].count;

            if before < n && after == n {
                converged += 1;
                converged_at = Some(event.at);
            } else if before == n && after < n {
                converged -= 1;
            }
        }
        if admission_only {
            converged = crowd.up as usize;
            converged_at = crowd.last_up;
        }
    }
    storm.admitted = crowd.up;
    storm.failures = crowd.failures.clone();
    storm.converged = converged as u64;
    storm.converged_at_ns = converged_at.map(|at| clock.ns(at));
    done(&storm)?;
    Ok(storm)
}

/// The report of a storm that started at `started_ns` (monotonic nanoseconds).
fn report(o: &Options, storm: &StormSlice, started_ns: u64) -> Report {
    let n = storm.clients;
    let elapsed = storm
        .converged_at_ns
        .map(|at| at.saturating_sub(started_ns) as f64 / 1e9);
    let per_client = |total: u64| total as f64 / n.max(1) as f64;
    let problem = (storm.converged < n).then(|| {
        format!(
            "{} of {n} clients converged ({} up, refused or failed: {})",
            storm.converged, storm.admitted, storm.failures
        )
    });
    let text = format!(
        "storm: {n} clients, events={}\n  admitted {}, failed {} ({})\n  converged {}/{n} in {}\n  \
         per client: {:.1} messages, {:.0} bytes\n",
        o.events,
        storm.admitted,
        storm.failures.total(),
        storm.failures,
        storm.converged,
        elapsed.map_or("-".to_string(), |s| format!("{s:.3} s")),
        per_client(storm.messages),
        per_client(storm.bytes),
    );
    let json = json!({
        "mode": "storm",
        "members": n,
        "events": o.events,
        "procs": o.procs,
        "admitted": storm.admitted,
        "failed": storm.failures.total(),
        "converged": storm.converged,
        "convergence_s": elapsed.map(secs),
        "messages_per_client": per_client(storm.messages),
        "bytes_per_client": per_client(storm.bytes),
        "ok": problem.is_none(),
    });
    Report {
        text,
        json,
        problem,
    }
}

/// Applies one message to a client's view: `state` replaces it, `join`/`leave` and `diff`
/// change it, all read without a JSON tree (between them the clients receive N² entries).
fn apply(view: &mut View, text: &str, prefix: &str) {
    let number = |user: &str| user.strip_prefix(prefix)?.parse::<usize>().ok();
    if text.starts_with(r#"{"type":"join""#) || text.starts_with(r#"{"type":"leave""#) {
        let present = text.starts_with(r#"{"type":"join""#);
        let user = text
            .split_once(r#""user":""#)
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(user, _)| user);
        if let Some(k) = user.and_then(number) {
            view.set(k, present);
        }
        return;
    }
    // rollcall writes `type` first: a `state` replaces the view before its users are read.
    if text.starts_with(r#"{"type":"state""#) {
        view.known.iter_mut().for_each(|word| *word = 0);
        view.count = 0;
        member_keys::for_each_key(text, &["users"], |_, user| {
            if let Some(k) = number(user) {
                view.set(k, true);
            }
        });
    } else if text.starts_with(r#"{"type":"diff""#) {
        // Maps 0 and 1 (joins, updates) make members; 2 (leaves) ends them.
        member_keys::for_each_key(text, &["joins", "updates", "leaves"], |map, user| {
            if let Some(k) = number(user) {
                view.set(k, map < 2);
            }
        });
    }
}
