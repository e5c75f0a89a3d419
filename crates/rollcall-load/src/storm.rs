//! `storm`: `--members` clients connect at once (as after a deploy or a network blip) to one
//! channel, `storm`, in `--events` mode `all` or `diff`, and the run times how long until
//! every client knows all N members (convergence), counting what each client received. In
//! mode `none` clients hear no presence: the run times admission alone (a client converges
//! when it is up), for the storms of listeners that only ask to be let in.
//!
//! Each client's view is a bit set of member numbers, kept from its `state`, then its
//! `join`/`leave` events (`all`) or `diff`s (`diff`); member k is user `PREFIX-m{k}`.
//! Refusals (a `503`, a reset) count as failures: the run fails unless all N are admitted.

use std::time::Instant;

use serde_json::json;

use crate::cli::Options;
use crate::crowd::{Crowd, Seen, UpWhen};
use crate::member_keys;
use crate::pool::Pool;
use crate::report::{secs, Report};
use crate::socket::Sources;

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

/// `storm`.
pub fn run(o: &Options) -> Result<Report, String> {
    let n = o.members as usize;
    let mut pool = Pool::new(o.target.clone(), Sources::new(o.sources, 0))
        .map_err(|e| format!("cannot create the poll: {e}"))?;
    let mut crowd = Crowd::new(o.members, o.rate, o.in_flight, UpWhen::Welcome);
    let prefix = format!("{}-m", o.user_prefix);
    let dial = |k: usize| {
        let query = format!("user={prefix}{k}&channel={CHANNEL}&events={}", o.events);
        (&o.target, o.target.ws_target(&query, &o.query))
    };
    let mut views: Vec<View> = (0..n).map(|_| View::new(n)).collect();
    let mut messages = vec![0u64; n];
    let mut bytes = vec![0u64; n];
    let mut converged = 0usize;
    let mut converged_at = None;
    let started = Instant::now();
    let deadline = started + o.timeout;
    let mut events = Vec::new();
    let admission_only = o.events == "none";
    while converged < n {
        let now = Instant::now();
        crowd.open_more(&mut pool, now, dial);
        if now >= deadline || (crowd.settled() && crowd.up < o.members) {
            break;
        }
        let wake = crowd.next_due().map_or(deadline, |due| due.min(deadline));
        pool.poll(Some(wake.saturating_duration_since(now)), &mut events)
            .map_err(|e| format!("event loop failed: {e}"))?;
        for event in events.drain(..) {
            let Seen::Text(k, text) = crowd.handle(&mut pool, &event) else {
                continue;
            };
            messages[k] += 1;
            bytes[k] += text.len() as u64;
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
    let elapsed = converged_at.map(|at| at.saturating_duration_since(started).as_secs_f64());
    let total_messages: u64 = messages.iter().sum();
    let total_bytes: u64 = bytes.iter().sum();
    let per_client = |total: u64| total as f64 / n.max(1) as f64;
    let problem = (converged < n).then(|| {
        format!(
            "{converged} of {n} clients converged ({} up, refused or failed: {})",
            crowd.up, crowd.failures
        )
    });
    let text = format!(
        "storm: {n} clients, events={}\n  admitted {}, failed {} ({})\n  converged {converged}/{n} in {}\n  \
         per client: {:.1} messages, {:.0} bytes\n",
        o.events,
        crowd.up,
        crowd.failures.total(),
        crowd.failures,
        elapsed.map_or("-".to_string(), |s| format!("{s:.3} s")),
        per_client(total_messages),
        per_client(total_bytes),
    );
    let json = json!({
        "mode": "storm",
        "members": n,
        "events": o.events,
        "admitted": crowd.up,
        "failed": crowd.failures.total(),
        "converged": converged,
        "convergence_s": elapsed.map(secs),
        "messages_per_client": per_client(total_messages),
        "bytes_per_client": per_client(total_bytes),
        "ok": problem.is_none(),
    });
    Ok(Report {
        text,
        json,
        problem,
    })
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
