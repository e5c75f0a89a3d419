//! Operational counters and their Prometheus text exposition (format 0.0.4).
//!
//! Pure: the loop bumps [`Counters`]; at scrape time it adds the [`Gauges`] it reads off its
//! state and [`render`] writes the text. Every accepted connection ends in exactly one
//! [`Ending`], counted once when its fate is decided, so
//! `accepted = sum(closed) + open WebSockets + pending handshakes` holds at every scrape.

use std::fmt::Write;

use crate::model::LeaveReason;

/// How a connection ended, the `reason` label of `rollcall_connections_closed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// An open WebSocket ended with this leave reason.
    WebSocket(LeaveReason),
    /// Ended without an upgrade: an error response, a handshake timeout, the connection
    /// limit, or the peer leaving mid-request.
    Refused,
    /// A plain HTTP endpoint was served.
    Http,
}

/// The leave reasons that end a local connection, in the order of the exposition;
/// [`reason_index`] is its inverse.
const LEAVE_REASONS: [LeaveReason; 7] = [
    LeaveReason::Closed,
    LeaveReason::Timeout,
    LeaveReason::Error,
    LeaveReason::SlowConsumer,
    LeaveReason::Shutdown,
    LeaveReason::Expired,
    LeaveReason::Left,
];

/// Where `reason` stands in [`LEAVE_REASONS`]: an exhaustive match, so that a new reason
/// cannot compile without a decision about its counter. `None` for `node_down`, which other
/// nodes announce for users of a dead node: it never ends a connection of this one.
const fn reason_index(reason: LeaveReason) -> Option<usize> {
    match reason {
        LeaveReason::Closed => Some(0),
        LeaveReason::Timeout => Some(1),
        LeaveReason::Error => Some(2),
        LeaveReason::SlowConsumer => Some(3),
        LeaveReason::Shutdown => Some(4),
        LeaveReason::Expired => Some(5),
        LeaveReason::Left => Some(6),
        LeaveReason::NodeDown => None,
    }
}

impl Ending {
    fn index(self) -> Option<usize> {
        match self {
            Ending::WebSocket(reason) => reason_index(reason),
            Ending::Refused => Some(LEAVE_REASONS.len()),
            Ending::Http => Some(LEAVE_REASONS.len() + 1),
        }
    }

    fn label(index: usize) -> &'static str {
        match LEAVE_REASONS.get(index) {
            Some(reason) => reason.as_str(),
            None if index == LEAVE_REASONS.len() => "refused",
            None => "http",
        }
    }
}

/// Monotonic counters, bumped by the loop.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counters {
    /// TCP connections accepted.
    pub accepted: u64,
    closed: [u64; LEAVE_REASONS.len() + 2],
    /// Heartbeat Pings sent.
    pub pings_sent: u64,
    /// WebSocket data messages received.
    pub messages_received: u64,
    /// WebSocket data messages queued to clients.
    pub messages_sent: u64,
    /// Bytes read from client sockets.
    pub bytes_received: u64,
    /// Bytes written to client sockets.
    pub bytes_sent: u64,
    /// Milliseconds accepting was paused at `--max-pending-handshakes`.
    pub accept_paused_ms: u64,
}

impl Counters {
    /// Counts one connection's end.
    pub fn closed(&mut self, ending: Ending) {
        match ending.index() {
            Some(index) => self.closed[index] += 1,
            None => debug_assert!(false, "{ending:?} cannot end a local connection"),
        }
    }

    /// How many connections ended this way so far.
    pub fn closed_count(&self, ending: Ending) -> u64 {
        ending.index().map_or(0, |index| self.closed[index])
    }
}

/// Values read off the server's state at scrape time.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Gauges {
    /// Open WebSockets.
    pub connections: usize,
    /// Accepted connections whose upgrade or request is not decided yet.
    pub handshakes_pending: usize,
    /// Open WebSockets holding a frame parser (the rest sleep at a frame boundary).
    pub connections_awake: usize,
    /// Distinct users with an open WebSocket (connections that only watch are no users).
    pub users_online: usize,
    /// Open WebSockets watching at least one channel (or every channel).
    pub watchers: usize,
    /// Channels that exist.
    pub channels: usize,
    /// Deadlines waiting on the timer wheel.
    pub timers: usize,
    /// Connections the kernel completed that the server has not accepted yet (`None` if the
    /// system does not say).
    pub listen_queue: Option<u32>,
    /// Resident memory in bytes (0 where unknown).
    pub resident_memory_bytes: u64,
    /// Unix time the server started, in milliseconds.
    pub start_time_ms: u64,
    /// In a cluster (`None` without one): its state as this node sees it.
    pub cluster: Option<ClusterGauges>,
    /// With webhooks (`None` without): their delivery's figures.
    pub webhooks: Option<crate::webhook::Stats>,
}

/// What a node of a cluster reports.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ClusterGauges {
    /// True while the node cannot use Redis and serves local presence only.
    pub degraded: bool,
    /// Live nodes as of the node's last refresh (0 while degraded).
    pub nodes: u64,
    /// Commands the node sent to Redis.
    pub redis_commands: u64,
}

/// Milliseconds shown as seconds, as few digits as the value needs (`1.5`, `0.001`, `3`):
/// integer arithmetic, so that the metrics pull in no float formatting.
struct Seconds(u64);

impl std::fmt::Display for Seconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (whole, mut millis) = (self.0 / 1000, self.0 % 1000);
        if millis == 0 {
            return write!(f, "{whole}");
        }
        let mut digits = 3;
        while millis % 10 == 0 {
            millis /= 10;
            digits -= 1;
        }
        write!(f, "{whole}.{millis:0digits$}")
    }
}

/// Renders the exposition text.
pub fn render(counters: &Counters, gauges: &Gauges) -> String {
    let mut out = String::with_capacity(2048);
    let mut metric = |name: &str, kind: &str, help: &str, value: &dyn std::fmt::Display| {
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        );
    };
    metric(
        "rollcall_connections",
        "gauge",
        "Open WebSocket connections.",
        &gauges.connections,
    );
    metric(
        "rollcall_connections_awake",
        "gauge",
        "Open WebSocket connections holding a frame parser (in the middle of a message, or not idle since their last input); the others sleep at a frame boundary.",
        &gauges.connections_awake,
    );
    metric(
        "rollcall_handshakes_pending",
        "gauge",
        "Accepted connections whose HTTP request or upgrade is not decided yet.",
        &gauges.handshakes_pending,
    );
    metric(
        "rollcall_timers",
        "gauge",
        "Deadlines waiting on the timer wheel: a heartbeat per open connection, a handshake deadline per request still to come, leave graces and the server's own; an outlived one counts until it comes due.",
        &gauges.timers,
    );
    metric(
        "rollcall_users_online",
        "gauge",
        "Distinct users with an open WebSocket (connections that only watch are no users).",
        &gauges.users_online,
    );
    metric(
        "rollcall_watchers",
        "gauge",
        "Open WebSocket connections watching at least one channel.",
        &gauges.watchers,
    );
    metric(
        "rollcall_channels",
        "gauge",
        "Channels with a member, subscriber or watcher.",
        &gauges.channels,
    );
    metric(
        "rollcall_connections_accepted_total",
        "counter",
        "TCP connections accepted.",
        &counters.accepted,
    );
    metric(
        "rollcall_heartbeat_pings_sent_total",
        "counter",
        "WebSocket Pings sent to silent connections.",
        &counters.pings_sent,
    );
    metric(
        "rollcall_messages_received_total",
        "counter",
        "WebSocket data messages received from clients.",
        &counters.messages_received,
    );
    metric(
        "rollcall_messages_sent_total",
        "counter",
        "WebSocket data messages queued to clients.",
        &counters.messages_sent,
    );
    metric(
        "rollcall_bytes_received_total",
        "counter",
        "Bytes read from client sockets.",
        &counters.bytes_received,
    );
    metric(
        "rollcall_bytes_sent_total",
        "counter",
        "Bytes written to client sockets.",
        &counters.bytes_sent,
    );
    metric(
        "rollcall_accept_paused_seconds_total",
        "counter",
        "Time accepting was paused because --max-pending-handshakes connections were still sending their request (new connections wait in the listen backlog meanwhile).",
        &Seconds(counters.accept_paused_ms),
    );
    if let Some(queue) = gauges.listen_queue {
        metric(
            "rollcall_listen_queue",
            "gauge",
            "Connections waiting in the kernel's listen backlog to be accepted.",
            &queue,
        );
    }
    metric(
        "rollcall_resident_memory_bytes",
        "gauge",
        "Resident memory of the process in bytes.",
        &gauges.resident_memory_bytes,
    );
    metric(
        "rollcall_process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch, in seconds.",
        &Seconds(gauges.start_time_ms),
    );
    if let Some(cluster) = gauges.cluster {
        metric(
            "rollcall_cluster_degraded",
            "gauge",
            "1 while this node cannot use the cluster's Redis and serves local presence only.",
            &u8::from(cluster.degraded),
        );
        metric(
            "rollcall_cluster_nodes",
            "gauge",
            "Live nodes of the cluster, this one included, as of its last refresh.",
            &cluster.nodes,
        );
        metric(
            "rollcall_cluster_redis_commands_total",
            "counter",
            "Commands this node sent to Redis.",
            &cluster.redis_commands,
        );
    }
    if let Some(hooks) = gauges.webhooks {
        metric(
            "rollcall_webhook_events_sent_total",
            "counter",
            "Webhook events acknowledged with a 2xx, counted once per URL.",
            &hooks.sent,
        );
        metric(
            "rollcall_webhook_failed_total",
            "counter",
            "Webhook requests that failed or were answered with a status other than 2xx.",
            &hooks.failed,
        );
        metric(
            "rollcall_webhook_retried_total",
            "counter",
            "Webhook requests that retried a batch.",
            &hooks.retried,
        );
        metric(
            "rollcall_webhook_dropped_total",
            "counter",
            "Webhook events dropped because a URL's queue was full.",
            &hooks.dropped,
        );
        metric(
            "rollcall_webhook_abandoned_total",
            "counter",
            "Webhook events given up on after retrying for 5 minutes.",
            &hooks.abandoned,
        );
        metric(
            "rollcall_webhook_queued",
            "gauge",
            "Webhook events waiting or in flight, over every URL.",
            &hooks.queued,
        );
        metric(
            "rollcall_webhook_latency_seconds_sum",
            "counter",
            "Seconds from an event's queueing to its acknowledgement, summed over the events sent (divide by rollcall_webhook_events_sent_total for the mean).",
            &Seconds(hooks.latency_ms_sum),
        );
    }
    let name = "rollcall_connections_closed_total";
    let _ = write!(
        out,
        "# HELP {name} Connections ended, by reason: the leave reasons (left never ends a connection), refused (no upgrade), http (endpoint served).\n# TYPE {name} counter\n"
    );
    for (index, count) in counters.closed.iter().enumerate() {
        let _ = writeln!(out, "{name}{{reason=\"{}\"}} {count}", Ending::label(index));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_read_as_the_float_they_replace() {
        let samples = (0..3000).chain([59_999, 86_400_123, 1_500_000_000_250, 1 << 50]);
        for ms in samples {
            let float = (ms as f64 / 1000.0).to_string();
            assert_eq!(Seconds(ms).to_string(), float, "{ms} ms");
        }
        assert_eq!(Seconds(u64::MAX).to_string(), "18446744073709551.615");
    }

    #[test]
    fn every_leave_reason_has_its_own_counter() {
        for reason in LeaveReason::ALL {
            let Some(index) = reason_index(reason) else {
                assert_eq!(reason, LeaveReason::NodeDown);
                continue;
            };
            assert_eq!(LEAVE_REASONS[index], reason, "{reason}");
            let mut counters = Counters::default();
            counters.closed(Ending::WebSocket(reason));
            let text = render(&counters, &Gauges::default());
            let line = format!("rollcall_connections_closed_total{{reason=\"{reason}\"}} 1\n");
            assert!(text.contains(&line), "{reason} was counted elsewhere");
        }
        assert_eq!(
            LeaveReason::ALL.len(),
            LEAVE_REASONS.len() + 1,
            "all but node_down"
        );
    }

    #[test]
    fn every_metric_has_help_type_and_value() {
        let mut counters = Counters {
            accepted: 7,
            accept_paused_ms: 1_500,
            bytes_sent: 1234,
            ..Counters::default()
        };
        counters.closed(Ending::WebSocket(LeaveReason::Timeout));
        counters.closed(Ending::Refused);
        counters.closed(Ending::Http);
        counters.closed(Ending::Http);
        let gauges = Gauges {
            connections: 3,
            watchers: 2,
            listen_queue: Some(5),
            start_time_ms: 1_500_000_000_250,
            ..Gauges::default()
        };
        let text = render(&counters, &gauges);
        for name in [
            "rollcall_connections",
            "rollcall_handshakes_pending",
            "rollcall_users_online",
            "rollcall_watchers",
            "rollcall_channels",
            "rollcall_connections_accepted_total",
            "rollcall_connections_closed_total",
            "rollcall_heartbeat_pings_sent_total",
            "rollcall_messages_received_total",
            "rollcall_messages_sent_total",
            "rollcall_bytes_received_total",
            "rollcall_bytes_sent_total",
            "rollcall_accept_paused_seconds_total",
            "rollcall_listen_queue",
            "rollcall_resident_memory_bytes",
            "rollcall_process_start_time_seconds",
        ] {
            assert!(text.contains(&format!("# HELP {name} ")), "{name} HELP");
            assert!(text.contains(&format!("# TYPE {name} ")), "{name} TYPE");
        }
        assert!(text.contains("\nrollcall_connections 3\n"));
        assert!(text.contains("\nrollcall_watchers 2\n"));
        assert!(text.contains("\nrollcall_listen_queue 5\n"));
        assert!(text.contains("\nrollcall_accept_paused_seconds_total 1.5\n"));
        assert!(text.contains("\nrollcall_connections_accepted_total 7\n"));
        assert!(text.contains("\nrollcall_bytes_sent_total 1234\n"));
        assert!(text.contains("\nrollcall_process_start_time_seconds 1500000000.25\n"));
        assert!(text.contains("rollcall_connections_closed_total{reason=\"timeout\"} 1\n"));
        assert!(text.contains("rollcall_connections_closed_total{reason=\"refused\"} 1\n"));
        assert!(text.contains("rollcall_connections_closed_total{reason=\"http\"} 2\n"));
        assert!(text.contains("rollcall_connections_closed_total{reason=\"left\"} 0\n"));
        assert_eq!(counters.closed_count(Ending::Http), 2);
        assert!(!text.contains("rollcall_cluster"));
    }

    #[test]
    fn a_node_of_a_cluster_reports_its_state() {
        let gauges = Gauges {
            cluster: Some(ClusterGauges {
                degraded: true,
                nodes: 0,
                redis_commands: 12,
            }),
            ..Gauges::default()
        };
        let text = render(&Counters::default(), &gauges);
        assert!(text.contains("\nrollcall_cluster_degraded 1\n"));
        assert!(text.contains("\nrollcall_cluster_nodes 0\n"));
        assert!(text.contains("\nrollcall_cluster_redis_commands_total 12\n"));
    }
}
