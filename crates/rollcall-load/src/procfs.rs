//! What the kernel says about a process (the server's memory and CPU time, from `/proc`) and
//! the machine-wide monotonic clock that lets `--procs` children's timestamps be compared.

use std::fs;
use std::time::Instant;

use serde_json::{json, Value};

/// One look at a process: resident memory and CPU time so far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// `VmRSS` of `/proc/PID/status`, in bytes.
    pub rss_bytes: u64,
    /// Time on a CPU so far, in seconds: the sum of its threads' `/proc/PID/task/TID/schedstat`
    /// (nanoseconds), or where that is unavailable `utime + stime` of `/proc/PID/stat` (clock
    /// ticks of 10 ms, about 0.7 µs per handshake at 15,000 connections: too coarse to tell two
    /// servers' handshakes apart).
    pub cpu_seconds: f64,
}

/// Samples process `pid`; an error names the file that could not be read.
pub fn sample(pid: u32) -> Result<Sample, String> {
    let status_path = format!("/proc/{pid}/status");
    let status = fs::read_to_string(&status_path).map_err(|e| format!("{status_path}: {e}"))?;
    let rss_bytes = parse_vm_rss(&status).ok_or_else(|| format!("{status_path}: no VmRSS"))?;
    let cpu_seconds = match threads_cpu_ns(pid) {
        Some(ns) => ns as f64 / 1e9,
        None => {
            let stat_path = format!("/proc/{pid}/stat");
            let stat = fs::read_to_string(&stat_path).map_err(|e| format!("{stat_path}: {e}"))?;
            let ticks = parse_cpu_ticks(&stat).ok_or_else(|| format!("{stat_path}: unreadable"))?;
            ticks as f64 / clock_ticks_per_second()
        }
    };
    Ok(Sample {
        rss_bytes,
        cpu_seconds,
    })
}

/// The nanoseconds the threads of `pid` have run, from their `schedstat` (kernels built with
/// `CONFIG_SCHED_INFO`); `None` when a thread's file cannot be read. Threads that already
/// ended are not counted: the servers measured keep theirs for their lifetime.
fn threads_cpu_ns(pid: u32) -> Option<u64> {
    let mut total = 0;
    for thread in fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = thread.ok()?.path().join("schedstat");
        total += parse_schedstat_ns(&fs::read_to_string(path).ok()?)?;
    }
    Some(total)
}

/// The first field of a `schedstat`: time spent on a CPU, in nanoseconds.
fn parse_schedstat_ns(schedstat: &str) -> Option<u64> {
    schedstat.split_whitespace().next()?.parse().ok()
}

/// This process's own resident memory, in bytes (0 if unreadable).
pub fn own_rss() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| parse_vm_rss(&s))
        .unwrap_or(0)
}

impl Sample {
    /// `{"rss_bytes":..,"cpu_seconds":..}`.
    pub fn to_json(self) -> Value {
        json!({"rss_bytes": self.rss_bytes, "cpu_seconds": self.cpu_seconds})
    }
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `utime + stime` (fields 14 and 15), counted after the `)` that ends the command name,
/// which may itself contain spaces and parentheses.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // after_name starts at field 3 (state): utime is field 14, so index 11.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant of the system; no memory is passed.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// Converts [`Instant`]s to nanoseconds of `CLOCK_MONOTONIC`, the same in every process of
/// the machine (an `Instant` cannot be sent to another process).
#[derive(Debug, Clone, Copy)]
pub struct MonoClock {
    anchor: Instant,
    anchor_ns: u64,
}

impl MonoClock {
    /// Reads both clocks once, back to back.
    pub fn new() -> MonoClock {
        let anchor = Instant::now();
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes the one timespec passed, which lives on this frame.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        MonoClock {
            anchor,
            anchor_ns: ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64,
        }
    }

    /// `at` in monotonic nanoseconds.
    pub fn ns(&self, at: Instant) -> u64 {
        match at.checked_duration_since(self.anchor) {
            Some(after) => self.anchor_ns + after.as_nanos() as u64,
            None => self.anchor_ns - self.anchor.duration_since(at).as_nanos() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        assert_eq!(
            parse_vm_rss("Name:\tx\nVmRSS:\t  1234 kB\n"),
            Some(1234 * 1024)
        );
        let stat = "42 (we (ird) name) S 1 2 3 4 5 6 7 8 9 10 150 25 0 0 20 0 1";
        assert_eq!(parse_cpu_ticks(stat), Some(175));
        assert_eq!(parse_schedstat_ns("123456789 2000 31\n"), Some(123_456_789));
        assert_eq!(parse_schedstat_ns(""), None);
    }

    #[test]
    fn this_process_can_be_sampled() {
        let sample = sample(std::process::id()).unwrap();
        assert!(sample.rss_bytes > 0);
        let busy = Instant::now();
        while busy.elapsed().as_millis() < 30 {
            std::hint::black_box(busy.elapsed());
        }
        let after = self::sample(std::process::id()).unwrap();
        assert!(
            after.cpu_seconds >= sample.cpu_seconds + 0.01,
            "30 ms of spinning shows as CPU time: {} -> {}",
            sample.cpu_seconds,
            after.cpu_seconds
        );
        let clock = MonoClock::new();
        let later = Instant::now();
        assert!(clock.ns(later) >= clock.ns(clock.anchor));
    }
}
