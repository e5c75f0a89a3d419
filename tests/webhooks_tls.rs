//! `https://` webhooks (the `webhook-tls` feature, on in default builds): a receiver behind
//! TLS, checked at the receiver.
//!
//! Each test makes a throwaway CA and a receiver certificate (rcgen) and serves them with a
//! small blocking rustls server on threads; the receiver checks every signature with the
//! server's own HMAC helper, and records the name each client asked for (SNI) and each
//! handshake that failed on its side.
//!
//! - With `--webhook-ca`, events arrive signed, over one kept-alive TLS connection, a batch
//!   larger than rustls's plaintext buffer included; SNI names the URL's host.
//! - A certificate for another host, a receiver whose CA is not trusted (no `--webhook-ca`),
//!   a receiver that answers the handshake with garbage: each is a failed request, counted,
//!   retried and logged with rustls's reason; nothing is delivered, and presence is served.
//! - A `--webhook-ca` that cannot be read, or holds no certificate, stops the start.
//!
//! The build without the feature (an `https://` URL refused at start, naming it) is
//! `tests/cli.rs`, run by `.ci/run` with `--no-default-features --features cli`.
#![cfg(feature = "webhook-tls")]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rollcall::pusher::auth::sign;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use serde_json::{json, Value};

const SECRET: &str = "webhook-secret";

/// A throwaway CA: its PEM file (for `--webhook-ca`) and its issuer.
struct Ca {
    pem_file: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

/// A new CA, its certificate written to a file of its own under the test's temporary folder.
fn new_ca(test: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().expect("CA key");
    let cert = params.self_signed(&key).expect("CA certificate");
    let pem_file = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{test}-ca.pem"));
    std::fs::write(&pem_file, cert.pem()).expect("write the CA");
    Ca {
        pem_file,
        issuer: Issuer::new(params, key),
    }
}

/// A receiver certificate naming `names`, signed by `ca`: the chain and its key.
fn leaf(ca: &Ca, names: &[&str]) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
    let params = CertificateParams::new(names).expect("leaf params");
    let key = KeyPair::generate().expect("leaf key");
    let cert = params
        .signed_by(&key, &ca.issuer)
        .expect("leaf certificate");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    (vec![cert.der().clone()], key)
}

/// What a receiver saw.
#[derive(Default)]
struct Seen {
    /// Valid events in order: `(X-Pusher-Key, event)`.
    events: Mutex<Vec<(String, Value)>>,
    /// Completed handshakes, and the name each client sent (SNI).
    names: Mutex<Vec<Option<String>>>,
    /// Handshakes that failed on the receiver's side, with rustls's reason.
    refused: Mutex<Vec<String>>,
    /// Requests whose signature did not verify.
    forged: AtomicUsize,
}

/// The address `localhost` resolves to first: the server connects to the same one.
fn localhost() -> SocketAddr {
    ("localhost", 0)
        .to_socket_addrs()
        .expect("resolve localhost")
        .next()
        .expect("an address for localhost")
}

/// An HTTPS receiver on `localhost`, a free port, serving `chain` (answers 200, keep-alive).
fn tls_receiver(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> (u16, Arc<Seen>) {
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("the receiver's certificate");
    let config = Arc::new(config);
    let listener = TcpListener::bind(localhost()).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Seen::default());
    let sink = seen.clone();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let (config, sink) = (config.clone(), sink.clone());
            thread::spawn(move || serve_tls(stream, config, &sink));
        }
    });
    (port, seen)
}

fn serve_tls(mut tcp: TcpStream, config: Arc<ServerConfig>, seen: &Seen) {
    let mut tls = ServerConnection::new(config).expect("a server session");
    while tls.is_handshaking() {
        if let Err(error) = tls.complete_io(&mut tcp) {
            seen.refused.lock().expect("lock").push(error.to_string());
            return;
        }
    }
    let name = tls.server_name().map(str::to_owned);
    seen.names.lock().expect("lock").push(name);
    let mut reader = BufReader::new(StreamOwned::new(tls, tcp));
    while let Some((headers, body)) = read_request(&mut reader) {
        let valid = headers.get("x-pusher-signature") == Some(&sign(SECRET, &body))
            && headers.get("content-type").map(String::as_str) == Some("application/json");
        if !valid {
            seen.forged.fetch_add(1, Ordering::SeqCst);
        } else {
            let batch: Value = serde_json::from_str(&body).expect("a JSON batch");
            let key = headers.get("x-pusher-key").cloned().unwrap_or_default();
            let events = batch["events"].as_array().expect("events").clone();
            let mut sink = seen.events.lock().expect("lock");
            sink.extend(events.into_iter().map(|event| (key.clone(), event)));
        }
        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        let stream = reader.get_mut();
        if stream
            .write_all(answer)
            .and_then(|()| stream.flush())
            .is_err()
        {
            return;
        }
    }
}

/// One request's headers (names in lower case) and body; `None` once the client is gone.
fn read_request<R: BufRead>(reader: &mut R) -> Option<(BTreeMap<String, String>, String)> {
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return None;
    }
    assert!(line.starts_with("POST /hook HTTP/1.1"), "{line:?}");
    let mut headers = BTreeMap::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(": ").expect("name: value");
        headers.insert(name.to_ascii_lowercase(), value.to_owned());
    }
    let length: usize = headers["content-length"].parse().expect("length");
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((headers, String::from_utf8(body).expect("utf-8 body")))
}

/// Waits until the receiver holds `count` events; fails with what it holds.
#[track_caller]
fn wait_events(seen: &Seen, count: usize, what: &str) {
    let started = Instant::now();
    while seen.events.lock().expect("lock").len() < count {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{what}: {:?}",
            seen.events.lock().expect("lock")
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// The events as `KEY name channel [user]` lines.
fn lines(seen: &Seen) -> Vec<String> {
    common::webhook_lines(&seen.events.lock().expect("lock"))
}

/// A server posting to `url`, with `flags` besides.
fn hooked_server(url: &str, flags: &[&str]) -> Server {
    let mut args = vec![
        "--webhook",
        url,
        "--webhook-secret",
        SECRET,
        "--rate-limit",
        "off",
    ];
    args.extend_from_slice(flags);
    Server::start(&args)
}

#[test]
fn events_arrive_signed_over_https_with_the_private_ca() {
    let ca = new_ca("delivered");
    let (chain, key) = leaf(&ca, &["localhost"]);
    let (port, seen) = tls_receiver(chain, key);
    let url = format!("https://localhost:{port}/hook");
    let ca_file = ca.pem_file.to_str().expect("utf-8 path");
    let server = hooked_server(&url, &["--webhook-ca", ca_file]);
    let (mut alice, _) = Client::join(server.addr(), "user=alice");
    wait_events(&seen, 2, "alice joined");
    // A batch over rustls's plaintext buffer (64 KiB): 100 updates of about 1 KiB each.
    let pad = "x".repeat(900);
    for n in 0..100 {
        alice.send_json(&json!({"type":"update","channel":"lobby","meta":{"n":n,"pad":pad}}));
    }
    wait_events(&seen, 102, "alice's 100 updates");
    let lines = lines(&seen);
    assert_eq!(
        lines[..3],
        [
            "rollcall channel_occupied lobby",
            "rollcall member_added lobby alice",
            "rollcall member_updated lobby alice",
        ]
    );
    let events = seen.events.lock().expect("lock");
    let order: Vec<_> = events[2..]
        .iter()
        .map(|(_, event)| event["meta"]["n"].as_u64().expect("n"))
        .collect();
    assert_eq!(
        order,
        (0..100).collect::<Vec<_>>(),
        "every update, in order"
    );
    assert_eq!(seen.forged.load(Ordering::SeqCst), 0, "a signature failed");
    assert_eq!(
        *seen.names.lock().expect("lock"),
        [Some("localhost".to_owned())],
        "one handshake, kept alive, with SNI naming the URL's host"
    );
    let metrics = scrape(server.addr());
    assert_eq!(metrics.get("rollcall_webhook_events_sent_total"), 102.0);
    assert_eq!(metrics.get("rollcall_webhook_failed_total"), 0.0);
}

/// Waits until `server` counted two failed requests (the second a retry), then checks that
/// the receiver got nothing, the log said why, and presence is served.
#[track_caller]
fn refused_and_retried(server: &Server, seen: &Seen, reason: &str) {
    let started = Instant::now();
    while scrape(server.addr()).get("rollcall_webhook_failed_total") < 2.0 {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "not two failures: {}",
            server.stderr()
        );
        thread::sleep(Duration::from_millis(20));
    }
    let metrics = scrape(server.addr());
    assert!(metrics.get("rollcall_webhook_retried_total") >= 1.0);
    assert_eq!(metrics.get("rollcall_webhook_events_sent_total"), 0.0);
    assert!(seen.events.lock().expect("lock").is_empty());
    server.wait_for_log(reason, STEP);
    let (_bob, state) = Client::join(server.addr(), "user=bob");
    assert_eq!(user_names(&state), ["alice", "bob"]);
}

#[test]
fn a_certificate_for_another_host_is_refused_and_retried() {
    let ca = new_ca("wrong-name");
    let (chain, key) = leaf(&ca, &["receiver.example"]);
    let (port, seen) = tls_receiver(chain, key);
    let url = format!("https://localhost:{port}/hook");
    let ca_file = ca.pem_file.to_str().expect("utf-8 path");
    let server = hooked_server(&url, &["--webhook-ca", ca_file]);
    let (_alice, _) = Client::join(server.addr(), "user=alice");
    refused_and_retried(&server, &seen, "not valid for name");
    assert!(
        !seen.refused.lock().expect("lock").is_empty(),
        "the receiver saw no refused handshake"
    );
}

#[test]
fn without_its_ca_a_private_receiver_is_refused() {
    let ca = new_ca("untrusted");
    let (chain, key) = leaf(&ca, &["localhost"]);
    let (port, seen) = tls_receiver(chain, key);
    let url = format!("https://localhost:{port}/hook");
    let server = hooked_server(&url, &[]);
    let (_alice, _) = Client::join(server.addr(), "user=alice");
    refused_and_retried(&server, &seen, "UnknownIssuer");
}

#[test]
fn a_receiver_answering_the_handshake_with_garbage_is_a_failure() {
    let listener = TcpListener::bind(localhost()).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut hello = [0; 512];
            let _ = stream.read(&mut hello);
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\nthis is no TLS\r\n");
        }
    });
    let server = hooked_server(&format!("https://localhost:{port}/hook"), &[]);
    let (_alice, _) = Client::join(server.addr(), "user=alice");
    refused_and_retried(&server, &Seen::default(), "TLS: ");
}

#[test]
fn an_unreadable_or_empty_ca_file_stops_the_start() {
    let missing = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("no-such-ca.pem");
    let empty = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("empty-ca.pem");
    std::fs::write(&empty, "not a certificate\n").expect("write");
    for (file, needle) in [(&missing, "no-such-ca.pem"), (&empty, "no CERTIFICATE")] {
        let file = file.to_str().expect("utf-8 path");
        let run = run_cli(
            &[
                "--listen",
                "127.0.0.1:0",
                "--webhook",
                "https://localhost/hook",
                "--webhook-secret",
                SECRET,
                "--webhook-ca",
                file,
            ],
            STEP,
        );
        assert_ne!(run.code, Some(0), "{run:?}");
        assert!(
            run.stderr.contains("--webhook-ca") && run.stderr.contains(needle),
            "{run:?}"
        );
    }
}
