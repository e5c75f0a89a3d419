//! `fanout`: `--subscribers` in channel `fanout` (events=none), then `--messages` published
//! through `POST /publish`, one HTTP connection each, one after the other (or at
//! `--publish-rate`). Each message's `data` carries its sequence number and its send time in
//! microseconds since the run began (one process, one monotonic clock), so every delivery
//! gives a latency, and a bitmap per subscriber finds missing and duplicate messages.
//!
//! Across a cluster (`--subscribe-url`, repeated): subscriber k connects to node k mod the
//! number of nodes, while every POST goes to `--url`; the figures are also given per node, so
//! the trip through Redis shows next to local delivery.

use std::time::Instant;

use serde_json::{json, Value};

use crate::cli::Options;
use crate::conn::Ending;
use crate::crowd::{gather_everyone, Crowd, Seen, UpWhen};
use crate::pacer::Pacer;
use crate::pool::{Pool, What};
use crate::procfs::{self, MonoClock};
use crate::pusher::{self, Join};
use crate::report::{secs, Report};
use crate::socket::Sources;
use crate::stats::{per_second, Latencies, Tally};
use crate::target::Target;

const CHANNEL: &str = "fanout";

/// The name of the events a Pusher fanout (`--pusher`) triggers.
const EVENT: &str = "load";

/// Publications in flight at once when a `--publish-rate` is given.
const MAX_PUBLISHING: u64 = 64;

/// The deliveries to the subscribers of one node.
pub(crate) struct Node<'t> {
    target: &'t Target,
    subscribers: u64,
    delivered: u64,
    latencies: Latencies,
}

/// The nodes the subscribers are split over: the `--subscribe-url`s, else `--url` alone.
fn nodes(o: &Options) -> Vec<Node<'_>> {
    let targets: Vec<&Target> = if o.subscribe.is_empty() {
        vec![&o.target]
    } else {
        o.subscribe.iter().collect()
    };
    let count = targets.len() as u64;
    targets
        .into_iter()
        .enumerate()
        .map(|(i, target)| Node {
            target,
            // Round robin: node i gets subscribers i, i + count, i + 2 count, ...
            subscribers: (o.subscribers + count - 1 - i as u64) / count,
            delivered: 0,
            latencies: Latencies::default(),
        })
        .collect()
}

/// What subscribers received of the publications: a bit per (subscriber, message) to find
/// missing and repeated ones, and the latency of each first delivery.
pub(crate) struct Receipts {
    messages: usize,
    seen: Vec<u64>,
    pub delivered: u64,
    pub duplicates: u64,
    /// Messages this run did not publish.
    pub foreign: u64,
    pub latencies: Latencies,
    /// When the last delivery arrived, in monotonic nanoseconds.
    pub last_ns: u64,
}

impl Receipts {
    pub fn new(subscribers: usize, messages: usize) -> Receipts {
        Receipts {
            messages,
            seen: vec![0u64; (subscribers * messages).div_ceil(64)],
            delivered: 0,
            duplicates: 0,
            foreign: 0,
            latencies: Latencies::default(),
            last_ns: 0,
        }
    }

    /// Subscriber `k` received `text` at `at_ns`: the latency of a first delivery of one of
    /// this run's messages, else `None`.
    pub fn take(&mut self, k: usize, text: &str, at_ns: u64) -> Option<u64> {
        let (seq, sent_ns) = parse_message(text)?;
        if seq >= self.messages as u64 {
            self.foreign += 1;
            return None;
        }
        let bit = k * self.messages + seq as usize;
        if self.seen[bit / 64] & (1 << (bit % 64)) != 0 {
            self.duplicates += 1;
            return None;
        }
        self.seen[bit / 64] |= 1 << (bit % 64);
        self.delivered += 1;
        self.last_ns = self.last_ns.max(at_ns);
        let latency = at_ns.saturating_sub(sent_ns) / 1000;
        self.latencies.push(latency);
        Some(latency)
    }
}

/// The request that publishes message `seq`, sent at `sent_ns` (monotonic nanoseconds: the
/// same clock in every process of the run).
pub(crate) fn publication(o: &Options, seq: usize, sent_ns: u64) -> Vec<u8> {
    let data = json!({"seq": seq, "sent_ns": sent_ns});
    match &o.pusher {
        Some(app) => pusher::trigger_request(&o.target, app, CHANNEL, EVENT, &data),
        None => o.target.http_request(
            "POST",
            "/publish",
            o.admin_token.as_deref(),
            Some(
                json!({"channel": CHANNEL, "data": data})
                    .to_string()
                    .as_bytes(),
            ),
        ),
    }
}

/// How subscribers come up and where subscriber k connects (the `--subscribe-url`s in turn,
/// else `--url`); `first` is the index of this process's first subscriber.
pub(crate) fn subscribers<'o>(
    o: &'o Options,
    first: u64,
) -> (UpWhen, impl Fn(usize) -> crate::crowd::Dial<'o>) {
    let join = o.pusher.clone().map(|app| Join {
        app,
        channel: CHANNEL.to_owned(),
        user_prefix: o.user_prefix.clone(),
        first,
    });
    let up_when = match &join {
        Some(join) => UpWhen::Pusher(Box::new(join.clone())),
        None if o.plain => UpWhen::Upgraded,
        None => UpWhen::Welcome,
    };
    let targets: Vec<&Target> = if o.subscribe.is_empty() {
        vec![&o.target]
    } else {
        o.subscribe.iter().collect()
    };
    let dial = move |k: usize| {
        let target = targets[k % targets.len()];
        if let Some(join) = &join {
            return (target, join.ws_target(&o.query));
        }
        let user = first + k as u64;
        let query = format!(
            "user={}-f{user}&channel={CHANNEL}&events=none",
            o.user_prefix
        );
        (target, target.ws_target(&query, &o.query))
    };
    (up_when, dial)
}

/// `fanout`.
pub fn run(o: &Options) -> Result<Report, String> {
    let loop_failed = |e: std::io::Error| format!("event loop failed: {e}");
    let mut pool = Pool::new(o.target.clone(), Sources::new(o.sources, 0))
        .map_err(|e| format!("cannot create the poll: {e}"))?;
    let n = o.subscribers as usize;
    let m = o.messages as usize;
    let (up_when, dial) = subscribers(o, 0);
    let mut crowd = Crowd::new(o.subscribers, o.rate, o.in_flight, up_when);
    let mut nodes = nodes(o);
    let gathered = gather_everyone(
        &mut pool,
        &mut crowd,
        Instant::now() + o.timeout,
        dial,
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
    let sample_server = || o.server_pid.map(procfs::sample).transpose();
    let cpu_before = sample_server().map_err(|e| format!("--server-pid: {e}"))?;
    let clock = MonoClock::new();
    let base = Instant::now();
    let mut publishing = 0u64;
    let mut publish_failures = Tally::default();
    let mut receipts = Receipts::new(n, m);
    let mut first_publish: Option<Instant> = None;
    // When the last POST was answered: far ahead of the last delivery means the publications
    // piled up in the server and went out coalesced (several messages per write and read).
    let mut last_answer: Option<Instant> = None;
    let deadline = base + o.timeout;
    let expected = (n * m) as u64;
    let mut events = Vec::new();
    let mut timed_out = false;
    loop {
        let now = Instant::now();
        let first = pacer.started() as usize;
        let count = pacer.take(now, publishing) as usize;
        for k in first..first + count {
            pool.open_http(publication(o, k, clock.ns(now)), n + k, now);
            first_publish.get_or_insert(now);
        }
        publishing += count as u64;
        if pacer.done() && publishing == 0 && receipts.delivered + receipts.duplicates >= expected {
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
            match crowd.handle(&mut pool, &event) {
                Seen::Text(k, text) => {
                    if let Some(latency) = receipts.take(k, text, clock.ns(event.at)) {
                        let node = k % nodes.len();
                        nodes[node].delivered += 1;
                        nodes[node].latencies.push(latency);
                    }
                }
                Seen::Handled => {}
                Seen::Other => match event.what {
                    What::Response { status, .. } if status != 200 => {
                        publish_failures.add(crate::stats::Failure::HttpStatus(status));
                    }
                    What::Ended(ending) if event.tag >= n => {
                        publishing -= 1;
                        last_answer = Some(event.at);
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
            if receipts.delivered >= live * m as u64 {
                break;
            }
        }
    }
    let cpu_after = sample_server().map_err(|e| format!("--server-pid: {e}"))?;
    let outcome = Outcome {
        cpu_us_per_delivery: cpu_per_delivery(cpu_before, cpu_after, receipts.delivered),
        receipts,
        dropped: crowd.dropped.clone(),
        publish_failures,
        timed_out,
        first_publish_ns: first_publish.map(|at| clock.ns(at)),
        last_answer_ns: last_answer.map(|at| clock.ns(at)),
    };
    let nodes = (!o.subscribe.is_empty()).then_some(nodes.as_mut_slice());
    Ok(report(o, outcome, nodes))
}

/// The server's CPU from the first POST to the last delivery (and the few ms of the loop's
/// own exit), over what it delivered: connect-phase work is before the first sample.
pub(crate) fn cpu_per_delivery(
    before: Option<procfs::Sample>,
    after: Option<procfs::Sample>,
    delivered: u64,
) -> Option<f64> {
    before.zip(after).map(|(before, after)| {
        (after.cpu_seconds - before.cpu_seconds) * 1e6 / delivered.max(1) as f64
    })
}

/// What a fanout saw, from one process or merged from several.
pub(crate) struct Outcome {
    pub receipts: Receipts,
    pub dropped: Tally,
    pub publish_failures: Tally,
    pub timed_out: bool,
    /// Monotonic nanoseconds of the first POST and of the last POST's answer.
    pub first_publish_ns: Option<u64>,
    pub last_answer_ns: Option<u64>,
    pub cpu_us_per_delivery: Option<f64>,
}

/// The summary of a fanout (with the figures per node of a cluster, when given).
pub(crate) fn report(o: &Options, outcome: Outcome, nodes: Option<&mut [Node]>) -> Report {
    let Outcome {
        mut receipts,
        dropped,
        publish_failures,
        timed_out,
        first_publish_ns,
        last_answer_ns,
        cpu_us_per_delivery,
    } = outcome;
    let (n, m) = (o.subscribers, o.messages);
    let expected = n * m;
    let delivered = receipts.delivered;
    let since_first =
        |ns: u64| first_publish_ns.map_or(0.0, |first| ns.saturating_sub(first) as f64 / 1e9);
    let seconds = since_first(receipts.last_ns);
    let publish_seconds = last_answer_ns.map_or(0.0, since_first);
    let missing = expected - delivered;
    let rate = per_second(delivered, seconds);
    let summary = receipts.latencies.summary();
    let (duplicates, foreign) = (receipts.duplicates, receipts.foreign);
    let mut text = format!(
        "fanout: {n} subscribers x {m} messages: {delivered} of {expected} delivered in \
         {seconds:.3} s ({rate:.0} deliveries/s); the POSTs were answered within \
         {publish_seconds:.3} s\n  latency: {summary}\n  \
         missing {missing}, duplicates {duplicates}, publish failures: {publish_failures}, \
         subscribers dropped: {dropped}\n"
    );
    if let Some(us) = cpu_us_per_delivery {
        text.push_str(&format!("  server CPU per delivery: {us:.2} us\n"));
    }
    let per_node: Vec<Value> = match nodes {
        None => Vec::new(),
        Some(nodes) => {
            text.push_str(&format!("  published at {}\n", o.target.url()));
            nodes
                .iter_mut()
                .map(|node| node_figures(node, m, &mut text))
                .collect()
        }
    };
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
    let mut json = json!({
        "mode": "fanout",
        "subscribers": n,
        "messages": m,
        "procs": o.procs,
        "expected": expected,
        "delivered": delivered,
        "missing": missing,
        "duplicates": duplicates,
        "publish_failures": publish_failures.to_json(),
        "subscribers_dropped": dropped.to_json(),
        "seconds": secs(seconds),
        "publish_seconds": secs(publish_seconds),
        "delivered_per_second": rate.round(),
        "latency": summary.to_json(),
        "server_cpu_us_per_delivery": cpu_us_per_delivery,
        "ok": problem.is_none(),
    });
    if !per_node.is_empty() {
        json["url"] = json!(o.target.url());
        json["nodes"] = Value::Array(per_node);
    }
    Report {
        text,
        json,
        problem,
    }
}

/// One node's line of the summary (appended to `text`) and its JSON object.
fn node_figures(node: &mut Node, messages: u64, text: &mut String) -> Value {
    let expected = node.subscribers * messages;
    let missing = expected - node.delivered;
    let summary = node.latencies.summary();
    text.push_str(&format!(
        "  at {}: {} subscribers, {} of {expected} delivered, missing {missing}, latency: \
         {summary}\n",
        node.target.url(),
        node.subscribers,
        node.delivered
    ));
    json!({
        "url": node.target.url(),
        "subscribers": node.subscribers,
        "expected": expected,
        "delivered": node.delivered,
        "missing": missing,
        "latency": summary.to_json(),
    })
}

/// `(seq, sent_ns)` of a `message` this run published (for Pusher clients, an event
/// [`EVENT`] whose data string holds them).
fn parse_message(text: &str) -> Option<(u64, u64)> {
    let value: Value = serde_json::from_str(text).ok()?;
    let data = if value.get("type").and_then(Value::as_str) == Some("message") {
        value.get("data")?.clone()
    } else {
        let (name, data) = pusher::named_event(text)?;
        (name == EVENT).then_some(data)?
    };
    Some((data.get("seq")?.as_u64()?, data.get("sent_ns")?.as_u64()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_recognized() {
        let text =
            r#"{"type":"message","channel":"fanout","from":null,"data":{"sent_ns":12,"seq":3}}"#;
        assert_eq!(parse_message(text), Some((3, 12)));
        assert_eq!(parse_message(r#"{"type":"pong","id":1}"#), None);
        let pusher = r#"{"event":"load","channel":"fanout","data":"{\"sent_ns\":12,\"seq\":3}"}"#;
        assert_eq!(parse_message(pusher), Some((3, 12)));
    }

    #[test]
    fn subscribers_are_split_evenly_over_the_nodes() {
        let mut o = crate::cli::parse_for_test(&[
            "fanout",
            "--subscribers",
            "7",
            "--subscribe-url",
            "ws://127.0.0.1:9001/",
            "--subscribe-url",
            "ws://127.0.0.1:9002/",
            "--subscribe-url",
            "ws://127.0.0.1:9003/",
        ])
        .unwrap();
        let counts: Vec<u64> = nodes(&o).iter().map(|node| node.subscribers).collect();
        assert_eq!(counts, [3, 2, 2], "k mod 3 for k in 0..7");
        o.subscribe.clear();
        let alone: Vec<(u64, &str)> = nodes(&o)
            .iter()
            .map(|node| (node.subscribers, node.target.url()))
            .collect();
        assert_eq!(alone, [(7, "ws://127.0.0.1:8080/")]);
    }
}
