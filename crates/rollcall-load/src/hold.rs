//! `hold`: open `--connections`, wait until every one is up, hold them for `--duration`
//! (answering the server's pings), and report handshakes/s, failures, pings answered and,
//! with `--server-pid`, the server's memory per connection and CPU time.
//!
//! One process measures a [`HoldSlice`]; with `--procs` each child measures its slice and the
//! parent (procs.rs) merges them and samples the server. The server is sampled before the
//! first connect, when every connection is up, and at the end of the hold, so the connect
//! phase and the idle hold get their own CPU figures.

use std::io::Read;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cli::{Options, Slice};
use crate::crowd::{gather, Crowd, UpWhen};
use crate::pool::{Pool, What};
use crate::procfs::{self, MonoClock, Sample};
use crate::pusher::{Join, PRESENCE_GROUP};
use crate::report::{secs, Report};
use crate::socket::Sources;
use crate::stats::{per_second, Tally};

/// The presence channels Pusher clients (`--pusher`) join: `presence-load-K`, 100 members
/// each (see [`crate::pusher::PRESENCE_GROUP`]).
const PRESENCE: &str = "presence-load";

/// What one process saw of its connections.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HoldSlice {
    pub connections: u64,
    pub up: u64,
    pub failures: Tally,
    pub dropped: Tally,
    pub timed_out: bool,
    /// `CLOCK_MONOTONIC` nanoseconds of the first connect and of the last connection up.
    pub first_connect_ns: u64,
    pub last_up_ns: u64,
    pub pings_total: u64,
    pub pings_min: u64,
    pub pings_max: u64,
    /// This process's RSS at the end of the hold.
    pub client_rss_bytes: u64,
}

impl HoldSlice {
    pub fn to_json(&self) -> Value {
        json!({
            "connections": self.connections,
            "up": self.up,
            "failures": self.failures.to_json(),
            "dropped": self.dropped.to_json(),
            "timed_out": self.timed_out,
            "first_connect_ns": self.first_connect_ns,
            "last_up_ns": self.last_up_ns,
            "pings_total": self.pings_total,
            "pings_min": self.pings_min,
            "pings_max": self.pings_max,
            "client_rss_bytes": self.client_rss_bytes,
        })
    }

    pub fn from_json(value: &Value) -> Option<HoldSlice> {
        let n = |key: &str| value.get(key)?.as_u64();
        Some(HoldSlice {
            connections: n("connections")?,
            up: n("up")?,
            failures: Tally::from_json(value.get("failures")?),
            dropped: Tally::from_json(value.get("dropped")?),
            timed_out: value.get("timed_out")?.as_bool()?,
            first_connect_ns: n("first_connect_ns")?,
            last_up_ns: n("last_up_ns")?,
            pings_total: n("pings_total")?,
            pings_min: n("pings_min")?,
            pings_max: n("pings_max")?,
            client_rss_bytes: n("client_rss_bytes")?,
        })
    }

    /// Adds another process's slice: counts add up, the connect phase spans both.
    pub fn merge(&mut self, other: &HoldSlice) {
        let first = self.connections == 0;
        self.connections += other.connections;
        self.up += other.up;
        self.failures.merge(&other.failures);
        self.dropped.merge(&other.dropped);
        self.timed_out |= other.timed_out;
        self.first_connect_ns = if first {
            other.first_connect_ns
        } else {
            self.first_connect_ns.min(other.first_connect_ns)
        };
        self.last_up_ns = self.last_up_ns.max(other.last_up_ns);
        self.pings_total += other.pings_total;
        self.pings_min = if first {
            other.pings_min
        } else {
            self.pings_min.min(other.pings_min)
        };
        self.pings_max = self.pings_max.max(other.pings_max);
        self.client_rss_bytes += other.client_rss_bytes;
    }
}

/// The server as sampled around the run.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerSamples {
    pub pid: u32,
    pub before: Option<Sample>,
    pub up: Option<Sample>,
    pub end: Option<Sample>,
    /// Seconds between the `up` and `end` samples: the hold.
    pub hold_seconds: f64,
}

/// Who decides when the hold ends.
pub enum Control {
    /// This process: hold for the duration, sampling the server (if a pid was given).
    Alone,
    /// A `--procs` parent: announce "up" on stdout, hold until stdin closes.
    Parent,
}

/// Runs one process's share: the connect phase, then the hold as `control` says.
pub fn run_slice(
    o: &Options,
    slice: Slice,
    control: Control,
    server: &mut ServerSamples,
) -> Result<HoldSlice, String> {
    let clock = MonoClock::new();
    let mut pool = Pool::new(o.target.clone(), Sources::new(o.sources, slice.first))
        .map_err(|e| format!("cannot create the poll: {e}"))?;
    let join = o.pusher.clone().map(|app| Join {
        app,
        channel: PRESENCE.to_owned(),
        user_prefix: o.user_prefix.clone(),
        first: slice.first,
    });
    let up_when = match (&join, o.plain) {
        (Some(join), _) => UpWhen::Pusher(Box::new(join.clone())),
        (None, true) => UpWhen::Upgraded,
        (None, false) => UpWhen::Welcome,
    };
    let mut crowd = Crowd::new(slice.count, o.rate, o.in_flight, up_when);
    let dial = |k: usize| {
        if let Some(join) = &join {
            return (&o.target, join.ws_target(&o.query));
        }
        let number = slice.first + k as u64;
        let user = if o.plain {
            String::new()
        } else {
            format!("user={}-{number}", o.user_prefix)
        };
        (&o.target, pool_target(o, &user, number))
    };
    let sample = |pid: u32| procfs::sample(pid).map_err(|e| format!("--server-pid: {e}"));
    if let (Control::Alone, Some(pid)) = (&control, o.server_pid) {
        server.pid = pid;
        server.before = Some(sample(pid)?);
    }
    let deadline = Instant::now() + o.timeout;
    let complete = gather(&mut pool, &mut crowd, deadline, dial, |_, _| {})
        .map_err(|e| format!("event loop failed: {e}"))?;
    let mut result = summarize(&crowd, &clock, slice.count, !complete);

    let hold_start = Instant::now();
    let hold_end = match control {
        Control::Alone => {
            if let Some(pid) = o.server_pid {
                server.up = Some(sample(pid)?);
            }
            // A phase that timed out, or a run with nothing up, has nothing worth holding.
            if complete && crowd.up > 0 {
                hold_start + o.duration
            } else {
                hold_start
            }
        }
        Control::Parent => {
            crate::procs::announce_up(&result);
            pool.watch_control(0)
                .map_err(|e| format!("cannot watch stdin: {e}"))?;
            // Bounded even if the parent never says stop: it would have given up by then.
            hold_start + o.duration + o.timeout * 2 + Duration::from_secs(10)
        }
    };
    let mut events = Vec::new();
    let mut stopped = false;
    while !stopped {
        let now = Instant::now();
        if now >= hold_end {
            break;
        }
        pool.poll(Some(hold_end - now), &mut events)
            .map_err(|e| format!("event loop failed: {e}"))?;
        for event in events.drain(..) {
            if let What::Control = event.what {
                // Any byte or EOF on stdin is the parent's "stop".
                let _ = std::io::stdin().read(&mut [0u8; 64]);
                stopped = true;
            } else {
                crowd.handle(&mut pool, &event);
            }
        }
    }
    if let (Control::Alone, Some(pid)) = (&control, o.server_pid) {
        server.end = Some(sample(pid)?);
        server.hold_seconds = hold_start.elapsed().as_secs_f64();
    }
    let timed_out = result.timed_out;
    result = summarize(&crowd, &clock, slice.count, timed_out);
    result.client_rss_bytes = procfs::own_rss();
    Ok(result)
}

/// `--url`'s path with the user and `--query`, whose `{room}` is client `number`'s room of
/// [`PRESENCE_GROUP`] (the rooms `--pusher` makes, for a native run of the same shape).
fn pool_target(o: &Options, user: &str, number: u64) -> String {
    let room = (number / PRESENCE_GROUP).to_string();
    o.target.ws_target(user, &o.query.replace("{room}", &room))
}

fn summarize(crowd: &Crowd, clock: &MonoClock, count: u64, timed_out: bool) -> HoldSlice {
    let (pings_total, pings_min, pings_max) = crowd.pings();
    let first = crowd.first_connect.map(|t| clock.ns(t)).unwrap_or(0);
    HoldSlice {
        connections: count,
        up: crowd.up,
        failures: crowd.failures.clone(),
        dropped: crowd.dropped.clone(),
        timed_out,
        first_connect_ns: first,
        last_up_ns: crowd.last_up.map(|t| clock.ns(t)).unwrap_or(first),
        pings_total,
        pings_min,
        pings_max,
        client_rss_bytes: 0,
    }
}

/// `hold` in this process alone.
pub fn run(o: &Options) -> Result<Report, String> {
    let mut server = ServerSamples::default();
    let slice = Slice {
        first: 0,
        count: o.connections,
    };
    let result = run_slice(o, slice, Control::Alone, &mut server)?;
    Ok(report(o, &result, &server))
}

/// The report of a (possibly merged) hold.
pub fn report(o: &Options, r: &HoldSlice, server: &ServerSamples) -> Report {
    let connect_seconds = r.last_up_ns.saturating_sub(r.first_connect_ns) as f64 / 1e9;
    let rate = per_second(r.up, connect_seconds);
    let mut text = format!(
        "hold: {} of {} connections up ({}) in {:.3} s: {:.0} handshakes/s\n  \
         failures: {}; dropped while held: {}\n  \
         pings answered: {} (per connection: min {}, max {})\n  \
         client RSS: {} bytes ({:.0} per connection)\n",
        r.up,
        r.connections,
        if o.plain {
            "101 received"
        } else if o.pusher.is_some() {
            "presence subscription succeeded"
        } else {
            "welcome received"
        },
        connect_seconds,
        rate,
        r.failures,
        r.dropped,
        r.pings_total,
        r.pings_min,
        r.pings_max,
        r.client_rss_bytes,
        r.client_rss_bytes as f64 / r.up.max(1) as f64,
    );
    let mut json = json!({
        "mode": "hold",
        "plain": o.plain,
        "procs": o.procs,
        "sources": o.sources,
        "connections": r.connections,
        "up": r.up,
        "failed": r.failures.total(),
        "failures": r.failures.to_json(),
        "dropped": r.dropped.total(),
        "dropped_by_kind": r.dropped.to_json(),
        "connect_seconds": secs(connect_seconds),
        "handshakes_per_second": rate.round(),
        "hold_seconds": secs(server.hold_seconds.max(0.0)),
        "pings": {"total": r.pings_total, "min_per_connection": r.pings_min, "max_per_connection": r.pings_max},
        "client_rss_bytes": r.client_rss_bytes,
    });
    if let (Some(before), Some(up), Some(end)) = (server.before, server.up, server.end) {
        let up_count = r.up.max(1) as f64;
        let bytes_per_connection = (end.rss_bytes as f64 - before.rss_bytes as f64) / up_count;
        let cpu_connect = up.cpu_seconds - before.cpu_seconds;
        let cpu_hold = end.cpu_seconds - up.cpu_seconds;
        let us_per_handshake = cpu_connect * 1e6 / up_count;
        let idle_percent = if server.hold_seconds > 0.0 {
            cpu_hold / server.hold_seconds * 100.0
        } else {
            0.0
        };
        text.push_str(&format!(
            "  server {}: RSS {} -> {} bytes: {:.0} bytes per connection\n  \
             server CPU: connect phase {:.2} s ({:.1} us per handshake), hold {:.2} s over \
             {:.1} s ({:.2}% idle CPU)\n",
            server.pid,
            before.rss_bytes,
            end.rss_bytes,
            bytes_per_connection,
            cpu_connect,
            us_per_handshake,
            cpu_hold,
            server.hold_seconds,
            idle_percent
        ));
        json["server"] = json!({
            "pid": server.pid,
            "before": before.to_json(),
            "up": up.to_json(),
            "end": end.to_json(),
            "rss_before_bytes": before.rss_bytes,
            "rss_end_bytes": end.rss_bytes,
            "bytes_per_connection": bytes_per_connection.round(),
            "cpu_connect_seconds": secs(cpu_connect),
            "cpu_hold_seconds": secs(cpu_hold),
            "cpu_us_per_handshake": (us_per_handshake * 10.0).round() / 10.0,
            "idle_cpu_percent": (idle_percent * 100.0).round() / 100.0,
        });
    }
    let problem = if r.timed_out {
        Some(format!(
            "connect phase timed out after {}: {} of {} up",
            rollcall::units::format_duration(o.timeout),
            r.up,
            r.connections
        ))
    } else if r.up < r.connections {
        Some(format!(
            "{} connections failed: {}",
            r.connections - r.up,
            r.failures
        ))
    } else if r.dropped.total() > 0 {
        Some(format!(
            "{} connections dropped while held: {}",
            r.dropped.total(),
            r.dropped
        ))
    } else {
        None
    };
    json["ok"] = json!(problem.is_none());
    Report {
        text,
        json,
        problem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Failure;

    #[test]
    fn slices_merge_and_round_trip() {
        let mut failures = Tally::default();
        failures.add(Failure::Refused);
        let a = HoldSlice {
            connections: 100,
            up: 99,
            failures,
            first_connect_ns: 1_000,
            last_up_ns: 5_000,
            pings_total: 200,
            pings_min: 1,
            pings_max: 3,
            ..HoldSlice::default()
        };
        let b = HoldSlice {
            connections: 100,
            up: 100,
            first_connect_ns: 900,
            last_up_ns: 4_000,
            pings_total: 300,
            pings_min: 2,
            pings_max: 4,
            ..HoldSlice::default()
        };
        let mut merged = HoldSlice::default();
        merged.merge(&HoldSlice::from_json(&a.to_json()).unwrap());
        merged.merge(&b);
        assert_eq!(
            (merged.connections, merged.up, merged.failures.total()),
            (200, 199, 1)
        );
        assert_eq!((merged.first_connect_ns, merged.last_up_ns), (900, 5_000));
        assert_eq!(
            (merged.pings_min, merged.pings_max, merged.pings_total),
            (1, 4, 500)
        );
    }

    #[test]
    fn a_query_room_is_the_clients_group_of_a_hundred() {
        let o = crate::cli::parse_for_test(&[
            "hold",
            "--url",
            "ws://127.0.0.1:1/",
            "--query",
            "events=all&channel=room-{room}",
        ])
        .expect("options");
        let target = |number| pool_target(&o, "user=u", number);
        assert_eq!(target(0), "/?user=u&events=all&channel=room-0");
        assert_eq!(target(99), "/?user=u&events=all&channel=room-0");
        assert_eq!(target(100), "/?user=u&events=all&channel=room-1");
        assert_eq!(target(14_999), "/?user=u&events=all&channel=room-149");
    }
}
