//! `churn`: `--cycles` short sessions, `--concurrency` at a time. Each cycle connects as a new
//! user to channel `churn`, waits for the `welcome` and the `state`, sends `leave`, then a
//! Close, and ends when the server has closed too. Afterwards `GET /presence` must show no
//! member left in `churn`: every arrival was matched by a departure.
//!
//! A node of a cluster answers `/presence` from its view of the cluster, which follows the
//! notes coming back from Redis, so the last leaves may show up there a few milliseconds after
//! the last close: the check asks again for up to [`PRESENCE_SETTLE`] and reports how long the
//! channel took to empty (0 on a single server, where the first answer is final).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cli::Options;
use crate::conn::Ending;
use crate::crowd::message_type;
use crate::pacer::Pacer;
use crate::pool::{ConnId, Pool, What};
use crate::report::{secs, Report};
use crate::socket::Sources;
use crate::stats::{per_second, Failure, Tally};

const CHANNEL: &str = "churn";

/// How long `/presence` may take to show the channel empty.
const PRESENCE_SETTLE: Duration = Duration::from_secs(5);

/// Time between two `GET /presence` while members are left.
const PRESENCE_RETRY: Duration = Duration::from_millis(20);

/// What the `/presence` check found: members left in the channel at the last answer, and how
/// long after the first answer that was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Left {
    members: u64,
    settle: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Connecting,
    Welcomed,
    Leaving,
}

/// `churn`.
pub fn run(o: &Options) -> Result<Report, String> {
    let mut pool = Pool::new(o.target.clone(), Sources::new(o.sources, 0))
        .map_err(|e| format!("cannot create the poll: {e}"))?;
    let mut pacer = Pacer::new(o.cycles, o.rate, o.concurrency);
    // Per cycle: its connection and stage while it runs.
    let mut cycles: Vec<Option<(ConnId, Stage)>> = vec![None; o.cycles as usize];
    let (mut completed, mut failures) = (0u64, Tally::default());
    let mut running = 0u64;
    let begin = Instant::now();
    let deadline = begin + o.timeout;
    let mut events = Vec::new();
    let mut timed_out = false;
    loop {
        let now = Instant::now();
        let first = pacer.started() as usize;
        let count = pacer.take(now, running) as usize;
        for (k, cycle) in cycles.iter_mut().enumerate().skip(first).take(count) {
            let query = format!("user={}-c{k}&channel={CHANNEL}", o.user_prefix);
            let id = pool.open_ws(&o.target.ws_target(&query, &o.query), k, now);
            *cycle = Some((id, Stage::Connecting));
        }
        running += count as u64;
        if pacer.done() && running == 0 {
            break;
        }
        if now >= deadline {
            for (id, _) in cycles.iter_mut().filter_map(Option::take) {
                pool.abandon(id);
                failures.add(Failure::Timeout);
            }
            failures.add_many(Failure::Timeout, o.cycles - pacer.started());
            timed_out = true;
            break;
        }
        let wake = pacer.next_due().map_or(deadline, |due| due.min(deadline));
        pool.poll(Some(wake.saturating_duration_since(now)), &mut events)
            .map_err(|e| format!("event loop failed: {e}"))?;
        for event in events.drain(..) {
            let k = event.tag;
            let Some((id, stage)) = cycles[k] else {
                continue;
            };
            if id != event.id {
                continue;
            }
            match (&event.what, stage) {
                (What::Text(text), Stage::Connecting)
                    if message_type(text).as_deref() == Some("welcome") =>
                {
                    cycles[k] = Some((id, Stage::Welcomed));
                }
                (What::Text(text), Stage::Welcomed)
                    if message_type(text).as_deref() == Some("state") =>
                {
                    let leave = json!({"type": "leave", "channel": CHANNEL}).to_string();
                    pool.send_text(id, &leave, event.at);
                    pool.close(id, event.at);
                    cycles[k] = Some((id, Stage::Leaving));
                }
                (What::Ended(ending), _) => {
                    cycles[k] = None;
                    running -= 1;
                    match (stage, *ending) {
                        (Stage::Leaving, Ending::Closed) => completed += 1,
                        (_, Ending::Failed(f) | Ending::Lost(f)) => failures.add(f),
                        (_, Ending::Closed) => failures.add(Failure::Closed),
                    }
                }
                _ => {}
            }
        }
    }
    let seconds = begin.elapsed().as_secs_f64();
    let check = if timed_out {
        Err("not checked: the cycles timed out".to_string())
    } else {
        check_presence(&mut pool, o)
    };
    Ok(report(o, completed, &failures, seconds, timed_out, check))
}

/// `GET /presence` until the channel is empty, for at most [`PRESENCE_SETTLE`].
fn check_presence(pool: &mut Pool, o: &Options) -> Result<Left, String> {
    let first = Instant::now();
    let deadline = first + PRESENCE_SETTLE.min(o.timeout);
    loop {
        let members = members_left(pool, o)?;
        let settle = first.elapsed();
        if members == 0 || Instant::now() + PRESENCE_RETRY >= deadline {
            return Ok(Left { members, settle });
        }
        std::thread::sleep(PRESENCE_RETRY);
    }
}

/// One `GET /presence`; `Ok(members left in churn)`.
fn members_left(pool: &mut Pool, o: &Options) -> Result<u64, String> {
    let request = o
        .target
        .http_request("GET", "/presence", o.admin_token.as_deref(), None);
    let (status, body) = pool.exchange(request, Instant::now() + o.timeout)?;
    if status != 200 {
        return Err(format!(
            "GET /presence answered {status}: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    let presence: Value =
        serde_json::from_slice(&body).map_err(|e| format!("GET /presence: invalid JSON: {e}"))?;
    let members = presence
        .pointer(&format!("/channels/{CHANNEL}/users"))
        .and_then(Value::as_object)
        .map_or(0, |users| users.len() as u64);
    Ok(members)
}

fn report(
    o: &Options,
    completed: u64,
    failures: &Tally,
    seconds: f64,
    timed_out: bool,
    check: Result<Left, String>,
) -> Report {
    let rate = per_second(completed, seconds);
    let (check_text, check_json) = match &check {
        Ok(left) => {
            let settle_ms = left.settle.as_millis() as u64;
            let text = match (left.members, settle_ms) {
                (0, 0) => format!("channel {CHANNEL} is empty"),
                (0, ms) => format!("channel {CHANNEL} is empty (after {ms} ms)"),
                (n, ms) => format!("{n} members left in channel {CHANNEL} (after {ms} ms)"),
            };
            let json = json!({"ok": left.members == 0, "members_left": left.members,
                              "settle_ms": settle_ms});
            (text, json)
        }
        Err(e) => (e.clone(), json!({"ok": false, "error": e})),
    };
    let text = format!(
        "churn: {completed} of {} cycles completed in {seconds:.3} s ({rate:.0} cycles/s), \
         concurrency {}\n  failures: {failures}\n  GET /presence: {check_text}\n",
        o.cycles, o.concurrency
    );
    let problem = if timed_out {
        Some(format!(
            "cycles timed out after {}: {completed} of {} completed",
            rollcall::units::format_duration(o.timeout),
            o.cycles
        ))
    } else if failures.total() > 0 {
        Some(format!("{} cycles failed: {failures}", failures.total()))
    } else {
        match check {
            Ok(Left { members: 0, .. }) => None,
            Ok(Left { members: n, .. }) => Some(format!(
                "{n} members left in channel {CHANNEL} after the churn"
            )),
            Err(e) => Some(format!("presence check failed: {e}")),
        }
    };
    let json = json!({
        "mode": "churn",
        "cycles": o.cycles,
        "concurrency": o.concurrency,
        "completed": completed,
        "failed": failures.total(),
        "failures": failures.to_json(),
        "seconds": secs(seconds),
        "cycles_per_second": rate.round(),
        "presence_check": check_json,
        "ok": problem.is_none(),
    });
    Report {
        text,
        json,
        problem,
    }
}
