//! A finished run as the user sees it: a human summary, one JSON object, and whether it passed.
//!
//! Invariant: with `--json`, stdout carries exactly one JSON object and nothing else (the
//! summary then goes to stderr), so scripts can parse it whole.

use serde_json::Value;

/// The outcome of a mode.
#[derive(Debug)]
pub struct Report {
    /// The summary lines for people.
    pub text: String,
    /// The same figures for scripts.
    pub json: Value,
    /// Why the run failed, if it did (exit status 1).
    pub problem: Option<String>,
}

impl Report {
    /// Prints the report; `true` when the run passed.
    pub fn print(&self, json: bool) -> bool {
        if json {
            eprint!("{}", self.text);
            println!("{}", self.json);
        } else {
            print!("{}", self.text);
        }
        if let Some(problem) = &self.problem {
            eprintln!("rollcall-load: FAILED: {problem}");
        }
        self.problem.is_none()
    }
}

/// Seconds with millisecond precision, for JSON.
pub fn secs(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}
