//! The command line: `--version`, `--help`, invalid values (exit 2) and a taken address
//! (exit 1).

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::*;

const EXIT_WAIT: Duration = Duration::from_secs(5);

#[test]
fn version_prints_the_crate_version() {
    let run = run_cli(&["--version"], EXIT_WAIT);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stdout.contains(env!("CARGO_PKG_VERSION")),
        "--version output: {run:?}"
    );
}

#[test]
fn help_mentions_the_flags() {
    let run = run_cli(&["--help"], EXIT_WAIT);
    assert_eq!(run.code, Some(0), "{run:?}");
    let text = format!("{}{}", run.stdout, run.stderr);
    for flag in [
        "--listen",
        "--heartbeat-interval",
        "--heartbeat-timeout",
        "--leave-grace",
        "--client-publish",
    ] {
        assert!(
            text.contains(flag),
            "--help does not mention {flag}: {run:?}"
        );
    }
}

#[test]
fn invalid_flag_values_exit_2_with_a_message() {
    for args in [
        &["--listen", "127.0.0.1:0", "--heartbeat-interval", "abc"][..],
        &["--listen", "127.0.0.1:0", "--max-message-size", "12XB"][..],
        &["--listen", "127.0.0.1:0", "--no-such-flag"][..],
        // The timeout must exceed the interval.
        &[
            "--listen",
            "127.0.0.1:0",
            "--heartbeat-interval",
            "2s",
            "--heartbeat-timeout",
            "1s",
        ][..],
    ] {
        let run = run_cli(args, EXIT_WAIT);
        assert_eq!(run.code, Some(2), "{args:?}: {run:?}");
        assert!(
            !run.stderr.trim().is_empty(),
            "{args:?}: no message on stderr"
        );
    }
    let run = run_cli(
        &["--listen", "127.0.0.1:0", "--heartbeat-interval", "abc"],
        EXIT_WAIT,
    );
    assert!(
        run.stderr.contains("abc") || run.stderr.contains("heartbeat-interval"),
        "the message should name the flag or the value: {run:?}"
    );
}

#[test]
fn taken_address_exits_1_naming_it() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind a listener");
    let addr = taken.local_addr().expect("local addr").to_string();
    let run = run_cli(&["--listen", &addr], EXIT_WAIT);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr.contains(&addr),
        "stderr should mention {addr}: {run:?}"
    );
    drop(taken);
}

#[test]
fn server_starts_and_reports_its_port() {
    let mut server = Server::start(&[]);
    assert_ne!(server.addr().port(), 0);
    assert!(server.is_running());
    assert!(
        server
            .stderr()
            .contains(&format!("listening on {}", server.addr())),
        "{}",
        server.stderr()
    );
}
