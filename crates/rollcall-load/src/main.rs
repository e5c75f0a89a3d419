//! `rollcall-load`: the load tool of rollcall. A single-threaded mio client that opens and
//! holds tens of thousands of WebSocket connections and measures the server: `hold`, `churn`,
//! `fanout`, `presence-latency` and `storm` (see `--help` and each mode's module).
//!
//! The tree:
//! - `cli.rs` flags and help; `target.rs` a server's URL (`--url`, or another node of a
//!   cluster) and the request bytes;
//! - `socket.rs` connects from chosen source addresses; `conn.rs` one connection's phases;
//!   `pool.rs` the mio loop over all connections; `pacer.rs` when the next one may start;
//! - `crowd.rs` N clients until they are up; `hold.rs`, `churn.rs`, `fanout.rs`, `latency.rs`
//!   the modes; `procs.rs` `hold` over several processes;
//! - `member_keys.rs` the user names in a `state` or `diff`, read without a JSON tree;
//! - `stats.rs` failure kinds and latency percentiles; `procfs.rs` the server's RSS and CPU;
//!   `report.rs` the summary and the JSON object.
//!
//! Exit status: 0 when the run passed, 1 when it failed, 2 for invalid flags.

mod churn;
mod cli;
mod conn;
mod crowd;
mod fanout;
mod fanout_procs;
mod hold;
mod latency;
mod member_keys;
mod pacer;
mod pool;
mod procfs;
mod procs;
mod pusher;
mod report;
mod socket;
mod stats;
mod storm;
mod target;

use std::process::ExitCode;

use cli::{Invocation, Mode, Options};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let options = match cli::parse_args() {
        Ok(Invocation::Run(options)) => *options,
        Ok(Invocation::Help) => {
            print!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("rollcall-load: {error}\nTry 'rollcall-load --help'.");
            return ExitCode::from(2);
        }
    };
    if let Err(error) = check_fd_limit(&options) {
        eprintln!("rollcall-load: {error}");
        return ExitCode::from(2);
    }
    if let Some(slice) = options.child {
        let run = match options.mode {
            Mode::Fanout => fanout_procs::run_child(&options, slice),
            Mode::Storm => storm::run_child(&options, slice),
            _ => procs::run_child(&options, slice),
        };
        return match run {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("rollcall-load (child {}): {error}", slice.first);
                ExitCode::from(1)
            }
        };
    }
    let result = match options.mode {
        Mode::Hold if options.procs > 1 => procs::run_parent(&options),
        Mode::Hold => hold::run(&options),
        Mode::Churn => churn::run(&options),
        Mode::Fanout if options.procs > 1 => fanout_procs::run_parent(&options),
        Mode::Fanout => fanout::run(&options),
        Mode::PresenceLatency => latency::run(&options),
        Mode::Storm if options.procs > 1 => storm::run_parent(&options),
        Mode::Storm => storm::run(&options),
    };
    match result {
        Ok(report) if report.print(options.json) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(error) => {
            eprintln!("rollcall-load: {}: {error}", options.mode.name());
            ExitCode::from(1)
        }
    }
}

/// Raises the open-file limit as far as allowed and refuses a run that cannot fit in it
/// (one descriptor per connection, plus a few for the process itself).
fn check_fd_limit(o: &Options) -> Result<(), String> {
    let limit = socket::raise_fd_limit();
    let per_process = match (o.child, o.mode) {
        (Some(slice), _) => slice.count,
        (None, Mode::Hold) => o.connections.div_ceil(u64::from(o.procs)),
        (None, Mode::Churn) => o.concurrency,
        (None, Mode::Fanout) if o.procs > 1 => 64,
        (None, Mode::Fanout) => o.subscribers + 64,
        (None, Mode::PresenceLatency) => o.members + 1,
        (None, Mode::Storm) => o.members.div_ceil(u64::from(o.procs)) + 1,
    };
    let needed = per_process + 32;
    if needed > limit {
        return Err(format!(
            "{per_process} connections in one process need about {needed} file descriptors, \
             but the open-file limit is {limit}: use --procs (hold, fanout, storm) or fewer connections"
        ));
    }
    Ok(())
}
