//! `--procs P`: a `hold` split over P processes, for more connections than one process's
//! open-file limit allows.
//!
//! The parent re-executes its own binary P times with the same flags plus a hidden
//! `--child-slice FIRST:COUNT`. Each child runs its slice's connect phase, prints one line
//! `{"up":SLICE}` on stdout, holds until its stdin closes, then prints `{"result":SLICE}` and
//! exits. The parent samples the server before spawning, once every child is up, and at the
//! end of the hold; then closes the children's stdin and merges their results.
//!
//! Invariants: every wait of the parent is bounded (`--timeout` for each phase, plus a margin
//! for process start and exit); a child whose parent disappears sees its stdin close and stops.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cli::{Options, Slice, CHILD_FLAG};
use crate::hold::{self, Control, HoldSlice, ServerSamples};
use crate::procfs;
use crate::report::Report;

/// Slack for starting and stopping processes, on top of `--timeout`.
const MARGIN: Duration = Duration::from_secs(10);

/// Child side: tells the parent this slice's connect phase is over.
pub fn announce_up(slice: &HoldSlice) {
    // If the parent is gone, the hold ends at stdin's EOF anyway.
    let _ = tell_parent("up", slice.to_json());
}

/// Child side: runs the hold slice and prints its result line.
pub fn run_child(o: &Options, slice: Slice) -> Result<(), String> {
    let mut unused = ServerSamples::default();
    let result = hold::run_slice(o, slice, Control::Parent, &mut unused)?;
    tell_parent("result", result.to_json())
}

/// The slices of `total` connections over `procs` processes, as even as can be.
pub fn slices(total: u64, procs: u32) -> Vec<Slice> {
    let procs = u64::from(procs);
    (0..procs)
        .map(|i| {
            let first = total * i / procs;
            Slice {
                first,
                count: total * (i + 1) / procs - first,
            }
        })
        .collect()
}

struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Normally the child has exited by now; this only matters when the parent gives up.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `--procs` children running slices of `total` connections, and their output lines.
pub struct Children {
    workers: Vec<Worker>,
    lines: Receiver<(usize, Option<String>)>,
}

impl Children {
    /// Re-executes this binary once per slice of `total` over `o.procs`, with the same flags
    /// plus the child flag.
    pub fn spawn(o: &Options, total: u64) -> Result<Children, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find my own binary: {e}"))?;
        let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
        let (lines_tx, lines) = mpsc::channel::<(usize, Option<String>)>();
        let mut workers = Vec::new();
        for (index, slice) in slices(total, o.procs).into_iter().enumerate() {
            let mut child = Command::new(&exe)
                .args(&args)
                .arg(CHILD_FLAG)
                .arg(format!("{}:{}", slice.first, slice.count))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| format!("cannot start child {index}: {e}"))?;
            let stdout = child.stdout.take().expect("stdout is piped");
            let stdin = child.stdin.take();
            let tx = lines_tx.clone();
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send((index, Some(line))).is_err() {
                        return;
                    }
                }
                let _ = tx.send((index, None));
            });
            workers.push(Worker { child, stdin });
        }
        Ok(Children { workers, lines })
    }

    /// Waits for one `{"KEY":VALUE}` line from each child, until `deadline`; the values.
    pub fn collect(&self, key: &str, deadline: Instant) -> Result<Vec<Value>, String> {
        let mut got: Vec<Option<Value>> = vec![None; self.workers.len()];
        while got.iter().any(Option::is_none) {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let (index, line) = match self.lines.recv_timeout(remaining) {
                Ok(message) => message,
                Err(RecvTimeoutError::Timeout) => {
                    let missing = got.iter().filter(|g| g.is_none()).count();
                    return Err(format!(
                        "{missing} child process(es) sent no {key:?} line in time"
                    ));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!("every child process ended before its {key:?} line"));
                }
            };
            let Some(line) = line else {
                if got[index].is_none() {
                    return Err(format!(
                        "child process {index} ended before its {key:?} line"
                    ));
                }
                continue;
            };
            match serde_json::from_str::<Value>(&line)
                .ok()
                .and_then(|mut v| v.get_mut(key).map(Value::take))
            {
                Some(value) => got[index] = Some(value),
                None => return Err(format!("child process {index} wrote {line:?}, not {key:?}")),
            }
        }
        Ok(got.into_iter().flatten().collect())
    }

    /// Closes every child's stdin: their "stop".
    pub fn stop(&mut self) {
        for worker in &mut self.workers {
            worker.stdin.take();
        }
    }

    /// Waits for every child to exit.
    pub fn wait(&mut self) {
        for worker in &mut self.workers {
            let _ = worker.child.wait();
        }
    }
}

/// Child side: prints one `{"KEY":VALUE}` line for the parent.
pub fn tell_parent(key: &str, value: Value) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", json!({ key: value }))
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot write to the parent: {e}"))
}

/// Parent side: the whole `hold` over `o.procs` processes.
pub fn run_parent(o: &Options) -> Result<Report, String> {
    let mut server = ServerSamples::default();
    let sample = |pid: u32| procfs::sample(pid).map_err(|e| format!("--server-pid: {e}"));
    if let Some(pid) = o.server_pid {
        server.pid = pid;
        server.before = Some(sample(pid)?);
    }
    let mut children = Children::spawn(o, o.connections)?;
    let ups = slices_of(children.collect("up", Instant::now() + o.timeout + MARGIN)?)?;
    let worth_holding = ups.iter().all(|s| !s.timed_out) && ups.iter().any(|s| s.up > 0);
    let hold_start = Instant::now();
    if let Some(pid) = o.server_pid {
        server.up = Some(sample(pid)?);
    }
    if worth_holding {
        // The children hold their connections; the parent only has to wait.
        thread::sleep(o.duration);
    }
    if let Some(pid) = o.server_pid {
        server.end = Some(sample(pid)?);
    }
    server.hold_seconds = hold_start.elapsed().as_secs_f64();
    children.stop();
    let results = slices_of(children.collect("result", Instant::now() + o.timeout + MARGIN)?)?;
    children.wait();
    let mut merged = HoldSlice::default();
    for result in &results {
        merged.merge(result);
    }
    let mut report = hold::report(o, &merged, &server);
    report.json["children"] =
        Value::from(results.iter().map(HoldSlice::to_json).collect::<Vec<_>>());
    Ok(report)
}

fn slices_of(values: Vec<Value>) -> Result<Vec<HoldSlice>, String> {
    values
        .iter()
        .map(|value| {
            HoldSlice::from_json(value).ok_or_else(|| format!("not a hold slice: {value}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_cover_everything_once() {
        let parts = slices(200, 3);
        assert_eq!(parts.iter().map(|s| s.count).sum::<u64>(), 200);
        assert_eq!(
            parts[0],
            Slice {
                first: 0,
                count: 66
            }
        );
        assert_eq!(parts[2].first + parts[2].count, 200);
    }
}
