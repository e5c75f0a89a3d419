//! `fanout --procs P`: the subscribers split over P child processes, so that one process's
//! reading is not the ceiling and the server is.
//!
//! Each child connects its slice of the subscribers, prints `{"up":{...}}`, then reads until
//! every one of its subscribers has every message (or its stdin closes: the parent gave up)
//! and prints `{"result":{...}}` with what it received, the raw latencies included. The
//! parent publishes once every child is up, the publications carrying monotonic nanoseconds
//! (the same clock in every process), then merges the results.
//!
//! Invariants: every wait of the parent is bounded (`--timeout` per phase, plus a margin); a
//! child whose parent disappears sees its stdin close and stops.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cli::{Options, Slice};
use crate::conn::Ending;
use crate::crowd::{gather_everyone, Crowd, Seen};
use crate::fanout::{cpu_per_delivery, publication, report, subscribers, Outcome, Receipts};
use crate::pool::{Pool, What};
use crate::procfs::{self, MonoClock};
use crate::procs::{tell_parent, Children};
use crate::report::Report;
use crate::socket::Sources;
use crate::stats::{Failure, Tally};

/// Slack for starting and stopping processes, on top of `--timeout`.
const MARGIN: Duration = Duration::from_secs(10);

/// Child side: subscribers `slice.first ..` receive until they have every message.
pub fn run_child(o: &Options, slice: Slice) -> Result<(), String> {
    let loop_failed = |e: std::io::Error| format!("event loop failed: {e}");
    let mut pool = Pool::new(o.target.clone(), Sources::new(o.sources, slice.first))
        .map_err(|e| format!("cannot create the poll: {e}"))?;
    let (up_when, dial) = subscribers(o, slice.first);
    let mut crowd = Crowd::new(slice.count, o.rate, o.in_flight, up_when);
    let deadline = Instant::now() + o.timeout;
    let problem = gather_everyone(&mut pool, &mut crowd, deadline, dial, "subscribers")
        .map_err(loop_failed)?;
    tell_parent("up", json!({"up": crowd.up, "problem": problem}))?;
    if problem.is_some() {
        return Ok(());
    }
    pool.watch_control(0)
        .map_err(|e| format!("cannot watch stdin: {e}"))?;
    let clock = MonoClock::new();
    let count = slice.count as usize;
    let mut receipts = Receipts::new(count, o.messages as usize);
    let expected = slice.count * o.messages;
    // Bounded even if the parent never says stop: it gives up well before.
    let deadline = Instant::now() + o.timeout * 2 + MARGIN;
    let mut events = Vec::new();
    let mut stopped = false;
    while !stopped && receipts.delivered + receipts.duplicates < expected {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        pool.poll(Some(deadline - now), &mut events)
            .map_err(loop_failed)?;
        for event in events.drain(..) {
            if let What::Control = event.what {
                stopped = true;
                continue;
            }
            if let Seen::Text(k, text) = crowd.handle(&mut pool, &event) {
                receipts.take(k, text, clock.ns(event.at));
            }
        }
    }
    tell_parent(
        "result",
        json!({
            "delivered": receipts.delivered,
            "duplicates": receipts.duplicates,
            "foreign": receipts.foreign,
            "last_ns": receipts.last_ns,
            "latencies_us": receipts.latencies.samples(),
            "dropped": crowd.dropped.to_json(),
        }),
    )
}

/// Parent side: the whole fanout, its subscribers in `o.procs` children.
pub fn run_parent(o: &Options) -> Result<Report, String> {
    let mut children = Children::spawn(o, o.subscribers)?;
    let ups = children.collect("up", Instant::now() + o.timeout + MARGIN)?;
    if let Some(problem) = ups.iter().find_map(|up| up["problem"].as_str()) {
        let problem = format!("a child: {problem}");
        return Ok(Report {
            text: format!("fanout: {problem}\n"),
            json: json!({"mode": "fanout", "subscribers": o.subscribers, "procs": o.procs,
                         "ok": false}),
            problem: Some(problem),
        });
    }
    let mut pool = Pool::new(o.target.clone(), Sources::new(1, 0))
        .map_err(|e| format!("cannot create the poll: {e}"))?;
    let sample = || o.server_pid.map(procfs::sample).transpose();
    let cpu_before = sample().map_err(|e| format!("--server-pid: {e}"))?;
    let clock = MonoClock::new();
    let (publish_failures, first_publish, last_answer) = publish_all(o, &mut pool, &clock)?;
    let results = children.collect("result", Instant::now() + o.timeout + MARGIN);
    let cpu_after = sample().map_err(|e| format!("--server-pid: {e}"))?;
    children.stop();
    let results = results?;
    children.wait();
    let mut receipts = Receipts::new(0, o.messages as usize);
    let mut dropped = Tally::default();
    for result in &results {
        merge(&mut receipts, &mut dropped, result)?;
    }
    let outcome = Outcome {
        cpu_us_per_delivery: cpu_per_delivery(cpu_before, cpu_after, receipts.delivered),
        receipts,
        dropped,
        publish_failures,
        timed_out: false,
        first_publish_ns: first_publish.map(|at| clock.ns(at)),
        last_answer_ns: last_answer.map(|at| clock.ns(at)),
    };
    Ok(report(o, outcome, None))
}

/// Publishes every message, one after the other; returns the failures and when the first
/// was sent and the last answered.
fn publish_all(
    o: &Options,
    pool: &mut Pool,
    clock: &MonoClock,
) -> Result<(Tally, Option<Instant>, Option<Instant>), String> {
    let mut failures = Tally::default();
    let (mut first, mut last) = (None, None);
    let deadline = Instant::now() + o.timeout;
    let mut events = Vec::new();
    for seq in 0..o.messages as usize {
        let now = Instant::now();
        first.get_or_insert(now);
        pool.open_http(publication(o, seq, clock.ns(now)), seq, now);
        let mut answered = false;
        while !answered {
            let now = Instant::now();
            if now >= deadline {
                return Err("the publications timed out".into());
            }
            pool.poll(Some(deadline - now), &mut events)
                .map_err(|e| format!("event loop failed: {e}"))?;
            for event in events.drain(..) {
                match event.what {
                    What::Response { status, .. } if status != 200 => {
                        failures.add(Failure::HttpStatus(status));
                    }
                    What::Ended(ending) => {
                        answered = true;
                        last = Some(event.at);
                        if let Ending::Failed(failure) | Ending::Lost(failure) = ending {
                            failures.add(failure);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    Ok((failures, first, last))
}

/// Adds one child's result to the merged receipts.
fn merge(receipts: &mut Receipts, dropped: &mut Tally, result: &Value) -> Result<(), String> {
    let n = |key: &str| {
        result[key]
            .as_u64()
            .ok_or_else(|| format!("a child's result has no {key}: {result}"))
    };
    receipts.delivered += n("delivered")?;
    receipts.duplicates += n("duplicates")?;
    receipts.foreign += n("foreign")?;
    receipts.last_ns = receipts.last_ns.max(n("last_ns")?);
    for latency in result["latencies_us"].as_array().into_iter().flatten() {
        receipts
            .latencies
            .push(latency.as_u64().unwrap_or_default());
    }
    dropped.merge(&Tally::from_json(&result["dropped"]));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_results_add_up() {
        let mut receipts = Receipts::new(0, 2);
        let mut dropped = Tally::default();
        let one = json!({"delivered": 3, "duplicates": 0, "foreign": 1, "last_ns": 50,
                         "latencies_us": [1, 2, 3], "dropped": {}});
        let two = json!({"delivered": 2, "duplicates": 1, "foreign": 0, "last_ns": 70,
                         "latencies_us": [4, 5], "dropped": {"closed": 1}});
        merge(&mut receipts, &mut dropped, &one).expect("merged");
        merge(&mut receipts, &mut dropped, &two).expect("merged");
        assert_eq!(
            (
                receipts.delivered,
                receipts.duplicates,
                receipts.foreign,
                receipts.last_ns
            ),
            (5, 1, 1, 70)
        );
        assert_eq!(receipts.latencies.samples().len(), 5);
        assert_eq!(dropped.total(), 1);
        assert!(merge(&mut receipts, &mut dropped, &json!({})).is_err());
    }
}
