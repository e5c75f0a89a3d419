//! `presence-latency`: `--members` held in channel `lat` (events=all); then, `--samples` times,
//! a new user connects and we time, at up to [`MAX_OBSERVERS`] members, the arrival of its
//! `join` (from the start of its connect) and, once it closes, of its `leave` (from its Close).
//! Samples run one after the other, so each sees an otherwise quiet channel.

use std::time::Instant;

use serde_json::{json, Value};

use crate::cli::Options;
use crate::crowd::{gather_everyone, Crowd, Seen, UpWhen};
use crate::pool::{ConnId, Pool, What};
use crate::report::Report;
use crate::socket::Sources;
use crate::stats::Latencies;

const CHANNEL: &str = "lat";

/// Members whose view is timed.
pub const MAX_OBSERVERS: usize = 16;

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
    let loop_failed = |e: std::io::Error| format!("event loop failed: {e}");
    let mut pool = Pool::new(o.target.clone(), Sources::new(o.sources, 0))
        .map_err(|e| format!("cannot create the poll: {e}"))?;
    let n = o.members as usize;
    let observers = n.min(MAX_OBSERVERS);
    let mut crowd = Crowd::new(o.members, o.rate, o.in_flight, UpWhen::State);
    let target = |k: usize| {
        let query = format!("user={}-m{k}&channel={CHANNEL}&events=all", o.user_prefix);
        o.target.ws_target(&query, &o.query)
    };
    let gathered = gather_everyone(
        &mut pool,
        &mut crowd,
        Instant::now() + o.timeout,
        target,
        "members",
    )
    .map_err(loop_failed)?;
    if let Some(problem) = gathered {
        return Ok(failed_report(o, problem));
    }

    // Barrier: commands are answered in order, so an observer's pong comes after every join
    // event the server queued for it before; the samples then start on a quiet channel.
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
            return Ok(failed_report(
                o,
                "observers did not answer the settle ping in time".into(),
            ));
        }
        pool.poll(Some(deadline - now), &mut events)
            .map_err(loop_failed)?;
        for event in events.drain(..) {
            if let Seen::Text(k, text) = crowd.handle(&event) {
                if k < observers && parse(text).0.as_deref() == Some("pong") {
                    settled[k] = true;
                }
            }
        }
        if crowd.dropped.total() > 0 {
            return Ok(failed_report(
                o,
                format!("members dropped: {}", crowd.dropped),
            ));
        }
    }

    let (mut joins, mut leaves) = (Latencies::default(), Latencies::default());
    for s in 0..o.samples as usize {
        let started = Instant::now();
        let user = format!("{}-s{s}", o.user_prefix);
        let query = format!("user={user}&channel={CHANNEL}&events=none");
        let id = pool.open_ws(&o.target.ws_target(&query, &o.query), n + s, started);
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
        while !(sample.ended && sample.leaves_seen.iter().all(|&l| l)) {
            let now = Instant::now();
            if now >= deadline {
                pool.abandon(sample.id);
                let problem = format!(
                    "sample {s} timed out: joins seen {}/{observers}, leaves seen {}/{observers}",
                    sample.joins_seen.iter().filter(|&&j| j).count(),
                    sample.leaves_seen.iter().filter(|&&l| l).count()
                );
                return Ok(failed_report(o, problem));
            }
            pool.poll(Some(deadline - now), &mut events)
                .map_err(loop_failed)?;
            for event in events.drain(..) {
                match crowd.handle(&event) {
                    Seen::Text(k, text) if k < observers => {
                        let (kind, who) = parse(text);
                        if who.as_deref() != Some(sample.user.as_str()) {
                            continue;
                        }
                        match kind.as_deref() {
                            Some("join") if !sample.joins_seen[k] => {
                                sample.joins_seen[k] = true;
                                joins.push(micros(event.at, sample.started));
                            }
                            Some("leave") if !sample.leaves_seen[k] => {
                                sample.leaves_seen[k] = true;
                                let closed = sample.closed_at.unwrap_or(event.at);
                                leaves.push(micros(event.at, closed));
                            }
                            _ => {}
                        }
                    }
                    Seen::Other if event.id == sample.id => match event.what {
                        What::Upgraded => sample.upgraded = true,
                        What::Ended(ending) => {
                            if sample.closed_at.is_none() {
                                let problem =
                                    format!("sample {s} ended before its close: {ending:?}");
                                return Ok(failed_report(o, problem));
                            }
                            sample.ended = true;
                        }
                        _ => {}
                    },
                    _ => {}
                }
            }
            if crowd.dropped.total() > 0 {
                return Ok(failed_report(
                    o,
                    format!("members dropped: {}", crowd.dropped),
                ));
            }
            if sample.closed_at.is_none() && sample.upgraded && sample.joins_seen.iter().all(|&j| j)
            {
                let now = Instant::now();
                pool.close(sample.id, now);
                sample.closed_at = Some(now);
            }
        }
    }
    let (join, leave) = (joins.summary(), leaves.summary());
    let text = format!(
        "presence-latency: {n} members, {} samples, {observers} observers each\n  \
         join (connect start -> join seen): {join}\n  \
         leave (close sent -> leave seen): {leave}\n",
        o.samples
    );
    let json = json!({
        "mode": "presence-latency",
        "members": o.members,
        "samples": o.samples,
        "observers": observers,
        "join_latency": join.to_json(),
        "leave_latency": leave.to_json(),
        "ok": true,
    });
    Ok(Report {
        text,
        json,
        problem: None,
    })
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

fn failed_report(o: &Options, problem: String) -> Report {
    Report {
        text: format!("presence-latency: {problem}\n"),
        json: json!({"mode": "presence-latency", "members": o.members, "samples": o.samples,
                     "error": problem, "ok": false}),
        problem: Some(problem),
    }
}
