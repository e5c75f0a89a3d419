//! `fanout`: `--subscribers` in channel `fanout` (events=none), then `--messages` published
//! through `POST /publish`, one HTTP connection each, one after the other (or at
//! `--publish-rate`). Each message's `data` carries its sequence number and its send time in
//! microseconds since the run began (one process, one monotonic clock), so every delivery
//! gives a latency, and a bitmap per subscriber finds missing and duplicate messages.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cli::Options;
use crate::conn::Ending;
use crate::crowd::{gather_everyone, Crowd, Seen, UpWhen};
use crate::pacer::Pacer;
use crate::pool::{Pool, What};
use crate::report::{secs, Report};
use crate::socket::Sources;
use crate::stats::{per_second, Latencies, Tally};

const CHANNEL: &str = "fanout";

/// Publications in flight at once when a `--publish-rate` is given.
const MAX_PUBLISHING: u64 = 64;

/// `fanout`.
pub fn run(o: &Options) -> Result<Report, String> {
    let loop_failed = |e: std::io::Error| format!("event loop failed: {e}");
    let mut pool = Pool::new(o.target.clone(), Sources::new(o.sources, 0))
        .map_err(|e| format!("cannot create the poll: {e}"))?;
    let n = o.subscribers as usize;
    let m = o.messages as usize;
    let mut crowd = Crowd::new(o.subscribers, o.rate, o.in_flight, UpWhen::Welcome);
    let target = |k: usize| {
        let query = format!("user={}-f{k}&channel={CHANNEL}&events=none", o.user_prefix);
        o.target.ws_target(&query, &o.query)
    };
    let gathered = gather_everyone(
        &mut pool,
        &mut crowd,
        Instant::now() + o.timeout,
        target,
        "subscribers",
    )
    .map_err(loop_failed)?;
    if let Some(problem) = gathered {
        return Ok(Report {
            text: format!("fanout: {problem}\n"),
            json: json!({"mode": "fanout", "subscribers": o.subscribers, "up": crowd.up,
                         "failures": crowd.failures.to_json(), "ok": false}),
            problem: Some(problem),
        });
    }

    // Publishing: tags from n on are publications (tag n + k is message k).
    let (publish_rate, max_publishing) = if o.publish_rate > 0.0 {
        (o.publish_rate, MAX_PUBLISHING)
    } else {
        (0.0, 1)
    };
    let mut pacer = Pacer::new(o.messages, publish_rate, max_publishing);
    let base = Instant::now();
    let mut publishing = 0u64;
    let mut publish_failures = Tally::default();
    let mut seen = vec![0u64; (n * m).div_ceil(64)];
    let (mut delivered, mut duplicates, mut foreign) = (0u64, 0u64, 0u64);
    let mut latencies = Latencies::default();
    let mut first_publish: Option<Instant> = None;
    let mut last_delivery = base;
    let deadline = base + o.timeout;
    let expected = (n * m) as u64;
    let mut events = Vec::new();
    let mut timed_out = false;
    loop {
        let now = Instant::now();
        let first = pacer.started() as usize;
        let count = pacer.take(now, publishing) as usize;
        for k in first..first + count {
            let sent_us = now.duration_since(base).as_micros() as u64;
            let body = json!({"channel": CHANNEL, "data": {"seq": k, "sent_us": sent_us}});
            let request = o.target.http_request(
                "POST",
                "/publish",
                o.admin_token.as_deref(),
                Some(body.to_string().as_bytes()),
            );
            pool.open_http(request, n + k, now);
            first_publish.get_or_insert(now);
        }
        publishing += count as u64;
        if pacer.done() && publishing == 0 && delivered + duplicates >= expected {
            break;
        }
        if now >= deadline {
            timed_out = true;
            break;
        }
        let wake = pacer.next_due().map_or(deadline, |due| due.min(deadline));
        pool.poll(Some(wake.saturating_duration_since(now)), &mut events)
            .map_err(loop_failed)?;
        for event in events.drain(..) {
            match crowd.handle(&event) {
                Seen::Text(k, text) => {
                    let Some((seq, sent_us)) = parse_message(text) else {
                        continue;
                    };
                    if seq >= m as u64 {
                        foreign += 1;
                        continue;
                    }
                    let bit = k * m + seq as usize;
                    if seen[bit / 64] & (1 << (bit % 64)) != 0 {
                        duplicates += 1;
                        continue;
                    }
                    seen[bit / 64] |= 1 << (bit % 64);
                    delivered += 1;
                    last_delivery = event.at;
                    let at_us = event.at.duration_since(base).as_micros() as u64;
                    latencies.push(at_us.saturating_sub(sent_us));
                }
                Seen::Handled => {}
                Seen::Other => match event.what {
                    What::Response { status, .. } if status != 200 => {
                        publish_failures.add(crate::stats::Failure::HttpStatus(status));
                    }
                    What::Ended(ending) if event.tag >= n => {
                        publishing -= 1;
                        if let Ending::Failed(failure) | Ending::Lost(failure) = ending {
                            publish_failures.add(failure);
                        }
                    }
                    _ => {}
                },
            }
        }
        // A subscriber that is gone will never get the rest: no point waiting for it.
        if crowd.dropped.total() > 0 && pacer.done() && publishing == 0 {
            let live = (0..n).filter(|&k| crowd.is_up(k)).count() as u64;
            if delivered >= live * m as u64 {
                break;
            }
        }
    }
    let seconds = first_publish
        .map_or(Duration::ZERO, |first| {
            last_delivery.saturating_duration_since(first)
        })
        .as_secs_f64();
    let missing = expected - delivered;
    let rate = per_second(delivered, seconds);
    let summary = latencies.summary();
    let text = format!(
        "fanout: {n} subscribers x {m} messages: {delivered} of {expected} delivered in \
         {seconds:.3} s ({rate:.0} deliveries/s)\n  latency: {summary}\n  \
         missing {missing}, duplicates {duplicates}, publish failures: {publish_failures}, \
         subscribers dropped: {}\n",
        crowd.dropped
    );
    let problem = if timed_out {
        Some(format!(
            "deliveries timed out after {}: {missing} messages missing",
            rollcall::units::format_duration(o.timeout)
        ))
    } else if missing > 0 {
        Some(format!("{missing} messages missing"))
    } else if publish_failures.total() > 0 || duplicates > 0 || foreign > 0 {
        Some(format!(
            "publish failures: {publish_failures}; duplicates {duplicates}; unknown {foreign}"
        ))
    } else {
        None
    };
    let json = json!({
        "mode": "fanout",
        "subscribers": o.subscribers,
        "messages": o.messages,
        "expected": expected,
        "delivered": delivered,
        "missing": missing,
        "duplicates": duplicates,
        "publish_failures": publish_failures.to_json(),
        "subscribers_dropped": crowd.dropped.to_json(),
        "seconds": secs(seconds),
        "delivered_per_second": rate.round(),
        "latency": summary.to_json(),
        "ok": problem.is_none(),
    });
    Ok(Report {
        text,
        json,
        problem,
    })
}

/// `(seq, sent_us)` of a `message` this run published.
fn parse_message(text: &str) -> Option<(u64, u64)> {
    let value: Value = serde_json::from_str(text).ok()?;
    if value.get("type")?.as_str()? != "message" {
        return None;
    }
    let data = value.get("data")?;
    Some((data.get("seq")?.as_u64()?, data.get("sent_us")?.as_u64()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_recognized() {
        let text =
            r#"{"type":"message","channel":"fanout","from":null,"data":{"sent_us":12,"seq":3}}"#;
        assert_eq!(parse_message(text), Some((3, 12)));
        assert_eq!(parse_message(r#"{"type":"pong","id":1}"#), None);
    }
}
