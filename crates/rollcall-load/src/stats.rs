//! Counting what happened: failure kinds, latency samples and their percentiles.
//!
//! Pure: no sockets, no clock. Failure kinds are stable snake_case names because they are
//! keys of the JSON output that scripts compare.

use std::collections::BTreeMap;
use std::fmt;
use std::io;

use serde_json::{json, Value};

/// Why a connection (or an HTTP request) did not get where it should.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// `ECONNREFUSED`: nothing listens, or the accept queue overflowed.
    Refused,
    /// `ECONNRESET` / `EPIPE`: the server reset the connection.
    Reset,
    /// The phase deadline passed first.
    Timeout,
    /// `EADDRNOTAVAIL` / `EADDRINUSE`: no free port on the source address (use `--sources`).
    AddrUnavailable,
    /// `EMFILE` / `ENFILE`: out of file descriptors (use `--procs`).
    FdLimit,
    /// The server answered the upgrade with this status instead of `101`.
    HttpStatus(u16),
    /// The connection ended (EOF) before it was up.
    Eof,
    /// The `101` response was malformed or its `Sec-WebSocket-Accept` wrong.
    BadHandshake,
    /// A WebSocket protocol error.
    Protocol,
    /// The server closed the WebSocket (a Close frame), before it was up or while held.
    Closed,
    /// Any other I/O error.
    Io,
}

impl Failure {
    /// Classifies an I/O error.
    pub fn from_io(error: &io::Error) -> Failure {
        match error.raw_os_error() {
            Some(libc::ECONNREFUSED) => Failure::Refused,
            Some(libc::ECONNRESET) | Some(libc::EPIPE) | Some(libc::ECONNABORTED) => Failure::Reset,
            Some(libc::ETIMEDOUT) => Failure::Timeout,
            Some(libc::EADDRNOTAVAIL) | Some(libc::EADDRINUSE) => Failure::AddrUnavailable,
            Some(libc::EMFILE) | Some(libc::ENFILE) => Failure::FdLimit,
            _ => match error.kind() {
                io::ErrorKind::ConnectionRefused => Failure::Refused,
                io::ErrorKind::ConnectionReset
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::ConnectionAborted => Failure::Reset,
                io::ErrorKind::UnexpectedEof => Failure::Eof,
                _ => Failure::Io,
            },
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Refused => f.write_str("refused"),
            Failure::Reset => f.write_str("reset"),
            Failure::Timeout => f.write_str("timeout"),
            Failure::AddrUnavailable => f.write_str("addr_unavailable"),
            Failure::FdLimit => f.write_str("fd_limit"),
            Failure::HttpStatus(status) => write!(f, "http_{status}"),
            Failure::Eof => f.write_str("eof"),
            Failure::BadHandshake => f.write_str("bad_handshake"),
            Failure::Protocol => f.write_str("protocol"),
            Failure::Closed => f.write_str("closed"),
            Failure::Io => f.write_str("io"),
        }
    }
}

/// Failures counted by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally(BTreeMap<String, u64>);

impl Tally {
    /// Counts one failure.
    pub fn add(&mut self, failure: Failure) {
        *self.0.entry(failure.to_string()).or_default() += 1;
    }

    /// Counts `count` failures of one kind.
    pub fn add_many(&mut self, failure: Failure, count: u64) {
        if count > 0 {
            *self.0.entry(failure.to_string()).or_default() += count;
        }
    }

    /// The number of failures of every kind.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// Adds another tally (a `--procs` child's) to this one.
    pub fn merge(&mut self, other: &Tally) {
        for (kind, count) in &other.0 {
            *self.0.entry(kind.clone()).or_default() += count;
        }
    }

    /// `{"refused": 3, ...}`.
    pub fn to_json(&self) -> Value {
        json!(self.0)
    }

    /// Reads back [`Tally::to_json`]; anything else is an empty tally.
    pub fn from_json(value: &Value) -> Tally {
        let counts = value
            .as_object()
            .map(|map| {
                map.iter()
                    .filter_map(|(kind, count)| Some((kind.clone(), count.as_u64()?)))
                    .collect()
            })
            .unwrap_or_default();
        Tally(counts)
    }
}

impl fmt::Display for Tally {
    /// `none`, or `refused 3, timeout 1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        let parts: Vec<String> = self.0.iter().map(|(k, v)| format!("{k} {v}")).collect();
        f.write_str(&parts.join(", "))
    }
}

/// Latency samples in microseconds.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    micros: Vec<u64>,
}

/// The summary of [`Latencies`], in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latencies {
    /// Records one sample.
    pub fn push(&mut self, micros: u64) {
        self.micros.push(micros);
    }

    /// Every sample so far (for a `--procs` child to hand over).
    pub fn samples(&self) -> &[u64] {
        &self.micros
    }

    /// p50, p99 (nearest rank) and max; all zero without samples.
    pub fn summary(&mut self) -> Summary {
        self.micros.sort_unstable();
        let rank = |p: f64| -> f64 {
            if self.micros.is_empty() {
                return 0.0;
            }
            // Nearest rank: the smallest sample with at least p of them at or below it.
            let index =
                ((p * self.micros.len() as f64).ceil() as usize).clamp(1, self.micros.len());
            self.micros[index - 1] as f64 / 1000.0
        };
        Summary {
            count: self.micros.len(),
            p50_ms: rank(0.50),
            p99_ms: rank(0.99),
            max_ms: rank(1.0),
        }
    }
}

impl Summary {
    /// `{"samples":N,"p50_ms":..,"p99_ms":..,"max_ms":..}`.
    pub fn to_json(self) -> Value {
        json!({
            "samples": self.count,
            "p50_ms": round3(self.p50_ms),
            "p99_ms": round3(self.p99_ms),
            "max_ms": round3(self.max_ms),
        })
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms ({} samples)",
            self.p50_ms, self.p99_ms, self.max_ms, self.count
        )
    }
}

/// Rounds to three decimals, for JSON numbers people read.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// `count / seconds`, 0 when no time passed.
pub fn per_second(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut latencies = Latencies::default();
        for micros in (1..=100).rev() {
            latencies.push(micros * 1000);
        }
        let summary = latencies.summary();
        assert_eq!(summary.count, 100);
        assert_eq!(summary.p50_ms, 50.0);
        assert_eq!(summary.p99_ms, 99.0);
        assert_eq!(summary.max_ms, 100.0);
        assert_eq!(Latencies::default().summary().max_ms, 0.0);
    }

    #[test]
    fn tallies_merge_and_round_trip() {
        let mut a = Tally::default();
        a.add(Failure::Refused);
        a.add(Failure::HttpStatus(503));
        let mut b = Tally::from_json(&a.to_json());
        b.merge(&a);
        assert_eq!(b.total(), 4);
        assert_eq!(b.to_string(), "http_503 2, refused 2");
    }

    #[test]
    fn io_errors_are_classified() {
        let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(Failure::from_io(&refused), Failure::Refused);
        let no_port = io::Error::from_raw_os_error(libc::EADDRNOTAVAIL);
        assert_eq!(Failure::from_io(&no_port), Failure::AddrUnavailable);
    }
}
