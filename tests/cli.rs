//! The command line: `--version`, `--help`, invalid values (exit 2), a taken address
//! (exit 1), and the `rollcall token` subcommand's own help and refusals.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::*;
use data_encoding::BASE64URL_NOPAD;
use serde_json::Value;

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
        "--pusher-app",
        "--pusher-app-limit",
        "--webhook",
        "--webhook-ca",
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
        &["--listen", "127.0.0.1:0", "--endpoints", "presence,stats"][..],
        // The timeout must exceed the interval.
        &[
            "--listen",
            "127.0.0.1:0",
            "--heartbeat-interval",
            "2s",
            "--heartbeat-timeout",
            "1s",
        ][..],
        // Pusher apps and limits.
        &["--listen", "127.0.0.1:0", "--pusher-app", "1:key"][..],
        &[
            "--listen",
            "127.0.0.1:0",
            "--pusher-app",
            "1:k:s",
            "--pusher-app",
            "1:k2:s",
        ][..],
        &["--listen", "127.0.0.1:0", "--pusher-client-events", "maybe"][..],
        &[
            "--listen",
            "127.0.0.1:0",
            "--pusher-max-presence-members",
            "0",
        ][..],
        &[
            "--listen",
            "127.0.0.1:0",
            "--pusher-app-limit",
            "9:client_events=off",
        ][..],
        &[
            "--listen",
            "127.0.0.1:0",
            "--pusher-app",
            "1:k:s",
            "--pusher-app-limit",
            "1:nope=1",
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

/// `rollcall token ARGS --token-secret S`, with no secret in the environment.
#[track_caller]
fn token_cli(args: &[&str]) -> CliRun {
    let mut all = vec!["token"];
    all.extend_from_slice(args);
    all.extend(["--token-secret", "s3cret"]);
    run_cli_with_env(&all, &[], &["ROLLCALL_TOKEN_SECRET"], EXIT_WAIT)
}

/// A refusal: exit 2, nothing on stdout, a message on stderr that contains `needle`.
#[track_caller]
fn assert_token_refused(args: &[&str], needle: &str) {
    let run = token_cli(args);
    assert_eq!(run.code, Some(2), "{args:?}: {run:?}");
    assert!(run.stdout.trim().is_empty(), "{args:?}: {run:?}");
    assert!(
        run.stderr.contains(needle),
        "{args:?}: the message should mention {needle}: {run:?}"
    );
}

#[test]
fn token_help_prints_its_usage_and_exits_0() {
    for flag in ["--help", "-h"] {
        let run = run_cli(&["token", flag], EXIT_WAIT);
        assert_eq!(run.code, Some(0), "token {flag}: {run:?}");
        assert!(
            run.stdout.contains("rollcall token"),
            "token {flag}: {run:?}"
        );
        for option in ["--user", "--ttl", "--channels", "--meta", "--token-secret"] {
            assert!(
                run.stdout.contains(option),
                "token {flag} does not mention {option}: {run:?}"
            );
        }
        assert!(
            run.stdout.contains("rounds up"),
            "token {flag} should say a sub-second TTL rounds up: {run:?}"
        );
    }
    // Also after other options, before any check of them.
    let run = run_cli(&["token", "--user", "alice", "--help"], EXIT_WAIT);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("--ttl"), "{run:?}");
}

#[test]
fn token_ttl_under_a_second_is_refused() {
    for ttl in ["500ms", "999ms", "0s"] {
        assert_token_refused(&["--user", "alice", "--ttl", ttl], "--ttl");
    }
}

/// The claims of the token a successful `rollcall token` printed.
#[track_caller]
fn minted_claims(args: &[&str]) -> Value {
    let run = token_cli(args);
    assert_eq!(run.code, Some(0), "{args:?}: {run:?}");
    let token = run.stdout.trim();
    let payload = token
        .split('.')
        .nth(1)
        .unwrap_or_else(|| panic!("not a JWT: {token:?}"));
    let bytes = BASE64URL_NOPAD
        .decode(payload.as_bytes())
        .unwrap_or_else(|e| panic!("payload {payload:?} is not base64url: {e}"));
    serde_json::from_slice(&bytes).expect("the payload is JSON")
}

#[test]
fn token_ttl_with_a_part_of_a_second_rounds_up() {
    for (ttl, seconds) in [("1500ms", 2), ("1000ms", 1), ("2001ms", 3), ("1s", 1)] {
        let claims = minted_claims(&["--user", "alice", "--ttl", ttl]);
        let (Some(iat), Some(exp)) = (claims["iat"].as_u64(), claims["exp"].as_u64()) else {
            panic!("no whole-second iat and exp: {claims}");
        };
        assert_eq!(exp - iat, seconds, "--ttl {ttl}: {claims}");
    }
}

#[test]
fn token_channels_naming_nothing_is_refused() {
    for list in ["", " , ", ",", "  "] {
        assert_token_refused(
            &["--user", "alice", "--ttl", "1h", "--channels", list],
            "--channels",
        );
    }
}

#[test]
fn token_takes_the_identities_apps_have() {
    let user = "auth0|5f7c8ec7c33c6c004bbafe82 \"山田\" \\ 🦀";
    let claims = minted_claims(&[
        "--user",
        user,
        "--ttl",
        "1h",
        "--channels",
        "room:*,studio/1/live",
        "--channel",
        "private-a=b,c;d",
    ]);
    assert_eq!(claims["sub"], user, "{claims}");
    assert_eq!(
        claims["channels"],
        serde_json::json!(["room:*", "studio/1/live", "private-a=b,c;d"]),
        "--channel keeps its commas"
    );
}

#[test]
fn token_refuses_invalid_identities_naming_the_rule() {
    let long = "x".repeat(129);
    assert_token_refused(&["--user", &long, "--ttl", "1h"], "129 bytes");
    assert_token_refused(&["--user", "a\tb", "--ttl", "1h"], "U+0009");
    assert_token_refused(
        &["--user", "a", "--ttl", "1h", "--channel", "chat|*"],
        "\"chat|*\"",
    );
}

/// A build without the `webhook-tls` feature (`.ci/run` builds one) refuses an `https://`
/// webhook at start, naming the feature.
#[cfg(not(feature = "webhook-tls"))]
#[test]
fn without_tls_an_https_webhook_is_refused_naming_the_feature() {
    let run = run_cli(
        &[
            "--listen",
            "127.0.0.1:0",
            "--webhook",
            "https://hooks.example.com/in",
            "--webhook-secret",
            "s",
        ],
        EXIT_WAIT,
    );
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stderr.contains("https://hooks.example.com/in") && run.stderr.contains("`webhook-tls`"),
        "{run:?}"
    );
}
