//! `presence-latency`: `--members` held in channel `lat` (events=all); then, `--samples` times,
//! a new user connects and we time, at up to [`MAX_OBSERVERS`] members, the arrival of its
//! `join` (from the start of its connect) and, once it closes, of its `leave` (from its Close).
//! Samples run one after the other, so each sees an otherwise quiet channel.
//!
//! Across a cluster (`--observe-url`): the members connect to the observe node and the samples
//! to `--url`, so each figure is the trip through the other node and Redis. One untimed sample
//! (the warm-up) goes first: its `join` reaching every observer shows that the members' own
//! joins have all gone through (see [`warm_up`]).

use std::time::Instant;

use serde_json::{json, Value};

use crate::cli::Options;
use crate::crowd::{gather_everyone, Crowd, Seen, UpWhen};
use crate::pool::{ConnId, Event, Pool, What};
use crate::report::Report;
use crate::socket::Sources;
use crate::stats::Latencies;

const CHANNEL: &str = "lat";

/// Members whose view is timed.
pub const MAX_OBSERVERS: usize = 16;

/// Why a phase stopped the run.
enum Stop {
    /// The event loop itself failed (the mode returns an error).
    Broken(String),
    /// The run failed: the problem goes into the report.
    Failed(String),
}

fn loop_failed(e: std::io::Error) -> Stop {
    Stop::Broken(format!("event loop failed: {e}"))
}

/// The join and leave latencies, in microseconds.
#[derive(Default)]
struct Timings {
    joins: Latencies,
    leaves: Latencies,
}

/// One sample user's progress.
struct Sample {
    id: ConnId,
    user: String,
    started: Instant,
    upgraded: bool,
    joins_seen: Vec<bool>,
    closed_at: Option<Instant>,
    leaves_seen: Vec<bool>,
    ended: bool,
}

/// `presence-latency`.
pub fn run(o: &Options) -> Result<Report, String> {
    match measure(o) {
        Ok(timings) => Ok(report(o, timings)),
        Err(Stop::Failed(problem)) => Ok(failed_report(o, problem)),
        Err(Stop::Broken(error)) => Err(error),
    }
}

/// Gathers the members, settles the channel, then runs the samples.
fn measure(o: &Options) -> Result<Timings, Stop> {
    let mut pool = Pool::new(o.target.clone(), Sources::new(o.sources, 0))
        .map_err(|e| Stop::Broken(format!("cannot create the poll: {e}")))?;
    let n = o.members as usize;
    let observers = n.min(MAX_OBSERVERS);
    let mut crowd = Crowd::new(o.members, o.rate, o.in_flight, UpWhen::State);
    let members_at = o.observe.as_ref().unwrap_or(&o.target);
    let dial = |k: usize| {
        let query = format!("user={}-m{k}&channel={CHANNEL}&events=all", o.user_prefix);
        (members_at, members_at.ws_target(&query, &o.query))
    };
    let deadline = Instant::now() + o.timeout;
    if let Some(problem) =
        gather_everyone(&mut pool, &mut crowd, deadline, dial, "members").map_err(loop_failed)?
    {
        return Err(Stop::Failed(problem));
    }
    settle(&mut pool, &mut crowd, o, observers)?;
    if o.observe.is_some() {
        warm_up(&mut pool, &mut crowd, o, observers)?;
    }
    let mut timings = Timings::default();
    for s in 0..o.samples as usize {
        let user = format!("{}-s{s}", o.user_prefix);
        run_sample(
            &mut pool,
            &mut crowd,
            o,
            observers,
            (s, user, n + s),
            &mut timings,
        )?;
    }
    Ok(timings)
}

/// Barrier: commands are answered in order, so an observer's pong comes after every join
/// event the server queued for it before; the samples then start on a quiet channel.
fn settle(pool: &mut Pool, crowd: &mut Crowd, o: &Options, observers: usize) -> Result<(), Stop> {
    let ping = json!({"type": "ping", "id": "settle"}).to_string();
    let now = Instant::now();
    for k in 0..observers {
        if let Some(id) = crowd.id(k) {
            pool.send_text(id, &ping, now);
        }
    }
    let mut settled = vec![false; observers];
    let deadline = now + o.timeout;
    let mut events = Vec::new();
    while settled.iter().any(|s| !s) {
        let now = Instant::now();
        if now >= deadline {
            let problem = "observers did not answer the settle ping in time";
            return Err(Stop::Failed(problem.into()));
        }
        pool.poll(Some(deadline - now), &mut events)
            .map_err(loop_failed)?;
        for event in events.drain(..) {
            if let Seen::Text(k, text) = crowd.handle(pool, &event) {
                if k < observers && parse(text).0.as_deref() == Some("pong") {
                    settled[k] = true;
                }
            }
        }
        check_members(crowd)?;
    }
    Ok(())
}

/// Across a cluster the pong barrier is not enough: a member's `state` comes from its node's
/// view at once, while the joins reach the observers later, through Redis. One sample, not
/// timed, closes that gap: each member's node had sent its change to Redis before the member
/// got its `state` (the node sends in the same turn), Redis publishes the notes in the order
/// of the changes on one channel, and a node writes them to each client in order; so once
/// every observer has this sample's join (and leave), it has had every member's join too.
fn warm_up(pool: &mut Pool, crowd: &mut Crowd, o: &Options, observers: usize) -> Result<(), Stop> {
    let user = format!("{}-warmup", o.user_prefix);
    let tag = o.members as usize + o.samples as usize;
    let mut discarded = Timings::default();
    run_sample(pool, crowd, o, observers, (0, user, tag), &mut discarded).map_err(|stop| match stop
    {
        Stop::Failed(problem) => Stop::Failed(format!("warm-up: {problem}")),
        broken => broken,
    })
}

/// Sample `s` (its user and pool tag): connects to `--url`, waits until every observer saw its
/// join, closes, waits until every observer saw its leave; the latencies go to `timings`.
fn run_sample(
    pool: &mut Pool,
    crowd: &mut Crowd,
    o: &Options,
    observers: usize,
    (s, user, tag): (usize, String, usize),
    timings: &mut Timings,
) -> Result<(), Stop> {
    let started = Instant::now();
    let query = format!("user={user}&channel={CHANNEL}&events=none");
    let id = pool.open_ws(&o.target.ws_target(&query, &o.query), tag, started);
    let mut sample = Sample {
        id,
        user,
        started,
        upgraded: false,
        joins_seen: vec![false; observers],
        closed_at: None,
        leaves_seen: vec![false; observers],
        ended: false,
    };
    let deadline = started + o.timeout;
    let mut events = Vec::new();
    while !(sample.ended && sample.leaves_seen.iter().all(|&l| l)) {
        let now = Instant::now();
        if now >= deadline {
            pool.abandon(sample.id);
            let seen = |flags: &[bool]| flags.iter().filter(|&&f| f).count();
            return Err(Stop::Failed(format!(
                "sample {s} timed out: joins seen {}/{observers}, leaves seen {}/{observers}",
                seen(&sample.joins_seen),
                seen(&sample.leaves_seen)
            )));
        }
        pool.poll(Some(deadline - now), &mut events)
            .map_err(loop_failed)?;
        for event in events.drain(..) {
            take_event(pool, crowd, &event, &mut sample, observers, timings)
                .map_err(|problem| Stop::Failed(format!("sample {s} {problem}")))?;
        }
        check_members(crowd)?;
        if sample.closed_at.is_none() && sample.upgraded && sample.joins_seen.iter().all(|&j| j) {
            let now = Instant::now();
            pool.close(sample.id, now);
            sample.closed_at = Some(now);
        }
    }
    Ok(())
}

/// One event during a sample: an observer's view of the sample user, or the sample's own
/// connection. `Err` when the sample's connection ended before we closed it.
fn take_event(
    pool: &mut Pool,
    crowd: &mut Crowd,
    event: &Event,
    sample: &mut Sample,
    observers: usize,
    timings: &mut Timings,
) -> Result<(), String> {
    match crowd.handle(pool, event) {
        Seen::Text(k, text) if k < observers => {
            let (kind, who) = parse(text);
            if who.as_deref() != Some(sample.user.as_str()) {
                return Ok(());
            }
            match kind.as_deref() {
                Some("join") if !sample.joins_seen[k] => {
                    sample.joins_seen[k] = true;
                    timings.joins.push(micros(event.at, sample.started));
                }
                Some("leave") if !sample.leaves_seen[k] => {
                    sample.leaves_seen[k] = true;
                    let closed = sample.closed_at.unwrap_or(event.at);
                    timings.leaves.push(micros(event.at, closed));
                }
                _ => {}
            }
        }
        Seen::Other if event.id == sample.id => match event.what {
            What::Upgraded => sample.upgraded = true,
            What::Ended(ending) => {
                if sample.closed_at.is_none() {
                    return Err(format!("ended before its close: {ending:?}"));
                }
                sample.ended = true;
            }
            _ => {}
        },
        _ => {}
    }
    Ok(())
}

/// A member that drops fails the run: the observers' figures would no longer be complete.
fn check_members(crowd: &Crowd) -> Result<(), Stop> {
    if crowd.dropped.total() > 0 {
        return Err(Stop::Failed(format!("members dropped: {}", crowd.dropped)));
    }
    Ok(())
}

fn micros(at: Instant, since: Instant) -> u64 {
    at.saturating_duration_since(since).as_micros() as u64
}

/// `(type, user)` of a rollcall message.
fn parse(text: &str) -> (Option<String>, Option<String>) {
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return (None, None);
    };
    let field = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_string);
    (field("type"), field("user"))
}

fn report(o: &Options, mut timings: Timings) -> Report {
    let observers = (o.members as usize).min(MAX_OBSERVERS);
    let (join, leave) = (timings.joins.summary(), timings.leaves.summary());
    let mut text = format!(
        "presence-latency: {} members, {} samples, {observers} observers each\n",
        o.members, o.samples
    );
    if let Some(observe) = &o.observe {
        text.push_str(&format!(
            "  across nodes: samples join at {}, members observe at {}\n",
            o.target.url(),
            observe.url()
        ));
    }
    text.push_str(&format!(
        "  join (connect start -> join seen): {join}\n  \
         leave (close sent -> leave seen): {leave}\n"
    ));
    let mut json = json!({
        "mode": "presence-latency",
        "members": o.members,
        "samples": o.samples,
        "observers": observers,
        "join_latency": join.to_json(),
        "leave_latency": leave.to_json(),
        "ok": true,
    });
    if let Some(observe) = &o.observe {
        json["url"] = json!(o.target.url());
        json["observe_url"] = json!(observe.url());
    }
    Report {
        text,
        json,
        problem: None,
    }
}

fn failed_report(o: &Options, problem: String) -> Report {
    Report {
        text: format!("presence-latency: {problem}\n"),
        json: json!({"mode": "presence-latency", "members": o.members, "samples": o.samples,
                     "error": problem, "ok": false}),
        problem: Some(problem),
    }
}
