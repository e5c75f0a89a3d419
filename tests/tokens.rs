//! Signed connection tokens (`--token-secret`, issue 6): HS256 JWTs (RFC 7519) in the
//! upgrade's `token` parameter, each refusal reason, channel patterns, the `refresh` command,
//! the expiry close (4001), the `rollcall token` subcommand, `ROLLCALL_TOKEN_SECRET`, the
//! admin token alongside, and interoperability with PyJWT.
//!
//! The tokens are built here with `hmac` and `sha2`, independently of the server's code, so a
//! bug shared by a signer and a verifier cannot hide. Expiry tests read the system clock,
//! since `exp` is wall-clock time (NumericDate); each wait is bounded by a deadline computed
//! from the token's own `exp`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use data_encoding::BASE64URL_NOPAD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::{Sha256, Sha512};

/// The secret of most servers below.
const SECRET: &str = "s3cret";

/// The usual JOSE header.
const HS256: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// How long a CLI run may take.
const EXIT_WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Building tokens
// ---------------------------------------------------------------------------------------------

/// base64url without padding (RFC 7515 section 2).
fn b64(bytes: &[u8]) -> String {
    BASE64URL_NOPAD.encode(bytes)
}

/// HMAC-SHA256 of `input` with `key`.
fn hs256(input: &str, key: &str) -> Vec<u8> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(input.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// HMAC-SHA512 of `input` with `key` (for a genuine HS512 token).
fn hs512(input: &str, key: &str) -> Vec<u8> {
    let mut mac =
        Hmac::<Sha512>::new_from_slice(key.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(input.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// The JWS signing input: `base64url(header).base64url(claims)`.
fn signing_input(header_json: &str, claims_json: &str) -> String {
    format!(
        "{}.{}",
        b64(header_json.as_bytes()),
        b64(claims_json.as_bytes())
    )
}

/// A compact JWS: `header_json` and `claims_json` taken verbatim (they need not be valid
/// JSON), signed with HMAC-SHA256 and `key` whatever the header says.
fn jwt(header_json: &str, claims_json: &str, key: &str) -> String {
    let input = signing_input(header_json, claims_json);
    let signature = b64(&hs256(&input, key));
    format!("{input}.{signature}")
}

/// A well-formed HS256 token with `claims`, signed with [`SECRET`].
fn token(claims: &Value) -> String {
    jwt(HS256, &claims.to_string(), SECRET)
}

/// Seconds since the Unix epoch.
fn now() -> u64 {
    unix_ms() / 1000
}

/// The first whole second at least `min` from now: a token with this `exp` lives between
/// `min` and `min + 1 s`.
fn exp_after(min: Duration) -> u64 {
    (unix_ms() + min.as_millis() as u64).div_ceil(1000)
}

/// A valid token for `sub`, expiring in a minute, with every channel allowed.
fn token_for(sub: &str) -> String {
    token(&json!({"sub": sub, "exp": now() + 60}))
}

/// The three dot-separated parts of a compact token.
#[track_caller]
fn parts(token: &str) -> [&str; 3] {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a compact JWS: {token:?}");
    [parts[0], parts[1], parts[2]]
}

/// A base64url part decoded and parsed as JSON.
#[track_caller]
fn decode_part(part: &str) -> Value {
    let bytes = BASE64URL_NOPAD
        .decode(part.as_bytes())
        .unwrap_or_else(|e| panic!("part {part:?} is not base64url without padding: {e}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("part {part:?} is not JSON: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Talking to the server
// ---------------------------------------------------------------------------------------------

/// Starts a server checking tokens with [`SECRET`], plus `flags`.
#[track_caller]
fn token_server(flags: &[&str]) -> Server {
    let mut all = vec!["--token-secret", SECRET];
    all.extend_from_slice(flags);
    Server::start(&all)
}

/// An upgrade attempt on `/?query`: the full response unless it is a `101`.
#[track_caller]
fn upgrade(server: &Server, query: &str) -> HttpResponse {
    upgrade_attempt(
        server.addr(),
        upgrade_request(&format!("/?{query}")).as_bytes(),
    )
}

/// The upgrade on `/?query` is refused with `status` and a `text/plain` body starting with
/// `reason`.
#[track_caller]
fn assert_refused(server: &Server, query: &str, status: u16, reason: &str, what: &str) {
    let resp = upgrade(server, query);
    assert_eq!(resp.status, status, "{what}: {resp:?}");
    assert!(
        resp.content_type().starts_with("text/plain"),
        "{what}: content type: {resp:?}"
    );
    assert!(
        resp.body.starts_with(reason),
        "{what}: the body should start with {reason:?}: {resp:?}"
    );
}

/// The upgrade with `token` (channel lobby) is refused with 401 and `reason`.
#[track_caller]
fn assert_token_refused(server: &Server, token: &str, reason: &str, what: &str) {
    assert_refused(
        server,
        &format!("token={token}&channel=lobby"),
        401,
        reason,
        what,
    );
}

/// Connects with `token` and `rest` of the query; consumes and returns the `welcome`.
#[track_caller]
fn connect_with(server: &Server, token: &str, rest: &str) -> (Client, Value) {
    let query = if rest.is_empty() {
        format!("token={token}")
    } else {
        format!("token={token}&{rest}")
    };
    match Client::try_connect_target(server.addr(), &format!("/?{query}")) {
        Ok(mut client) => {
            let welcome = client.expect_type("welcome");
            (client, welcome)
        }
        Err(e) => panic!(
            "the upgrade with {query:?} should be accepted: {e}; server stderr:\n{}",
            server.stderr()
        ),
    }
}

/// Connects with `token` to `channel` (mode all); returns the client and its `state`.
#[track_caller]
fn join_with(server: &Server, token: &str, channel: &str) -> (Client, Value) {
    let (mut client, welcome) = connect_with(server, token, &format!("channel={channel}"));
    let state = client.expect_type("state");
    assert_eq!(state["channel"], channel, "{state} after {welcome}");
    (client, state)
}

/// Sends `command` (which carries `"ref"`) and returns the next reply with that ref.
#[track_caller]
fn request(client: &mut Client, command: Value) -> Value {
    let reference = command["ref"].clone();
    assert!(!reference.is_null(), "give {command} a ref");
    client.send_json(&command);
    client
        .wait_for(STEP, &format!("the reply to {command}"), |v| {
            v["ref"] == reference
        })
        .0
}

/// Asserts `reply` is an `error` with `code` whose message starts with `prefix`.
#[track_caller]
fn assert_error(reply: &Value, code: &str, prefix: &str, what: &str) {
    assert_eq!(reply["type"], "error", "{what}: {reply}");
    assert_eq!(reply["code"], code, "{what}: {reply}");
    let message = reply["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(prefix),
        "{what}: the message should start with {prefix:?}: {reply}"
    );
}

/// `join` command for `channel` (no meta): the reply.
#[track_caller]
fn join_command(client: &mut Client, channel: &str, reference: &str) -> Value {
    request(
        client,
        json!({"type": "join", "channel": channel, "ref": reference}),
    )
}

// ---------------------------------------------------------------------------------------------
// Accepted tokens
// ---------------------------------------------------------------------------------------------

#[test]
fn valid_token_connects_as_its_subject_with_its_meta() {
    let server = token_server(&[]);
    let tok = token(&json!({
        "sub": "alice",
        "exp": now() + 60,
        "iat": now(),
        "channels": ["lobby", "chat.*"],
        "meta": {"role": "mod"},
    }));
    let (mut alice, welcome) = connect_with(&server, &tok, "channel=chat.1");
    assert_eq!(welcome["user"], "alice", "{welcome}");
    let state = alice.expect_type("state");
    assert_eq!(
        state["users"],
        json!({"alice": {"conns": 1, "meta": {"role": "mod"}}}),
        "the token's meta is the user's meta when joining without one: {state}"
    );
    assert_eq!(state["channel"], "chat.1", "{state}");

    // A join command without meta takes the token's; one with meta keeps its own.
    let reply = join_command(&mut alice, "lobby", "j1");
    assert_eq!(reply["type"], "state", "{reply}");
    assert_eq!(reply["users"]["alice"]["meta"], json!({"role": "mod"}));
    let reply = request(
        &mut alice,
        json!({"type": "join", "channel": "chat.2", "meta": {"status": "away"}, "ref": "j2"}),
    );
    assert_eq!(reply["type"], "state", "{reply}");
    assert_eq!(reply["users"]["alice"]["meta"], json!({"status": "away"}));

    // Others see the subject too.
    let (_bob, state) = join_with(&server, &token_for("bob"), "lobby");
    assert_eq!(user_names(&state), ["alice", "bob"], "{state}");
    let join = alice.wait_for_type("join", STEP).0;
    assert_eq!(join["user"], "bob", "{join}");
}

#[test]
fn header_typ_is_optional_and_unknown_claims_are_ignored() {
    let server = token_server(&[]);
    let claims = json!({"sub": "carol", "exp": now() + 60, "iss": "elsewhere", "x": [1, 2]});
    for header in [
        r#"{"alg":"HS256"}"#,
        r#"{"alg":"HS256","typ":"at+jwt"}"#,
        r#"{"typ":"JWT","alg":"HS256","kid":"k1"}"#,
    ] {
        let tok = jwt(header, &claims.to_string(), SECRET);
        let (_client, welcome) = connect_with(&server, &tok, "channel=lobby");
        assert_eq!(welcome["user"], "carol", "header {header}: {welcome}");
    }
}

// ---------------------------------------------------------------------------------------------
// Refusals at the upgrade, one per reason
// ---------------------------------------------------------------------------------------------

#[test]
fn expired_token_is_refused_beyond_the_leeway_only() {
    let server = token_server(&[]);
    let tok = token(&json!({"sub": "alice", "exp": now() - 30}));
    assert_token_refused(&server, &tok, "expired", "exp 30 s ago");
    let tok = token(&json!({"sub": "alice", "exp": now() - 7}));
    assert_token_refused(&server, &tok, "expired", "exp 7 s ago (leeway 5 s)");

    // Within the default 5 s leeway: accepted.
    let tok = token(&json!({"sub": "alice", "exp": now() - 2}));
    let (_client, welcome) = connect_with(&server, &tok, "channel=lobby");
    assert_eq!(welcome["user"], "alice", "{welcome}");

    // A larger leeway accepts an older token.
    let lenient = token_server(&["--token-leeway", "60s"]);
    let tok = token(&json!({"sub": "alice", "exp": now() - 30}));
    let (_client, welcome) = connect_with(&lenient, &tok, "channel=lobby");
    assert_eq!(welcome["user"], "alice", "{welcome}");
}

#[test]
fn token_is_expired_as_soon_as_exp_passes() {
    // RFC 7519 section 4.1.4: the current time must be before `exp`; a NumericDate is compared
    // as a time, not truncated to whole seconds.
    let server = token_server(&["--token-leeway", "0s"]);
    // At least 200 ms into a second, so that `exp` = the current whole second is in the past.
    let into_second = unix_ms() % 1000;
    if into_second < 200 {
        std::thread::sleep(Duration::from_millis(200 - into_second));
    }
    let exp = now();
    let tok = token(&json!({"sub": "alice", "exp": exp}));
    let resp = upgrade(&server, &format!("token={tok}&channel=lobby"));
    assert_eq!(
        resp.status,
        401,
        "exp {exp} s, upgrade sent at {} ms, leeway 0: {resp:?}",
        unix_ms()
    );
    assert!(resp.body.starts_with("expired"), "{resp:?}");
}

#[test]
fn token_not_yet_valid_is_refused_beyond_the_leeway() {
    let server = token_server(&[]);
    let exp = now() + 600;
    let tok = token(&json!({"sub": "alice", "exp": exp, "nbf": now() + 30}));
    assert_token_refused(&server, &tok, "not_yet_valid", "nbf in 30 s");
    let tok = token(&json!({"sub": "alice", "exp": exp, "iat": now() + 30}));
    assert_token_refused(&server, &tok, "not_yet_valid", "iat in 30 s");

    // Within the leeway, and in the past: accepted.
    for claims in [
        json!({"sub": "alice", "exp": exp, "nbf": now() + 2}),
        json!({"sub": "alice", "exp": exp, "iat": now() + 2}),
        json!({"sub": "alice", "exp": exp, "nbf": now() - 60, "iat": now() - 60}),
    ] {
        let (_client, welcome) = connect_with(&server, &token(&claims), "channel=lobby");
        assert_eq!(welcome["user"], "alice", "{claims}: {welcome}");
    }
}

#[test]
fn token_signed_with_another_key_is_refused() {
    let server = token_server(&[]);
    let claims = json!({"sub": "alice", "exp": now() + 60}).to_string();
    for key in ["other", "s3cre", "s3cret ", "S3CRET", ""] {
        let tok = jwt(HS256, &claims, key);
        assert_token_refused(&server, &tok, "bad_signature", &format!("key {key:?}"));
    }
    // A signature cut short or with a flipped bit.
    let good = jwt(HS256, &claims, SECRET);
    let [h, p, s] = parts(&good);
    let mut sig = BASE64URL_NOPAD
        .decode(s.as_bytes())
        .expect("our own base64");
    sig[0] ^= 1;
    let flipped = format!("{h}.{p}.{}", b64(&sig));
    assert_token_refused(&server, &flipped, "bad_signature", "flipped bit");
    let short = format!("{h}.{p}.{}", b64(&sig[..16]));
    assert_token_refused(&server, &short, "bad_signature", "16-byte signature");
    let empty = format!("{h}.{p}.");
    assert_token_refused(&server, &empty, "bad_signature", "empty signature");
}

#[test]
fn alg_none_is_refused() {
    let server = token_server(&[]);
    let claims = json!({"sub": "alice", "exp": now() + 60}).to_string();
    for header in [
        r#"{"alg":"none"}"#,
        r#"{"alg":"none","typ":"JWT"}"#,
        r#"{"alg":"None"}"#,
        r#"{"alg":"NONE"}"#,
    ] {
        // Unsecured JWS (RFC 7515 appendix A.5): an empty signature.
        let unsigned = format!("{}.", signing_input(header, &claims));
        assert_token_refused(&server, &unsigned, "bad_algorithm", header);
        // And with an HS256 signature that would be right.
        let signed = jwt(header, &claims, SECRET);
        assert_token_refused(&server, &signed, "bad_algorithm", header);
    }
}

#[test]
fn other_algorithms_are_refused() {
    let server = token_server(&[]);
    let claims = json!({"sub": "alice", "exp": now() + 60}).to_string();
    // Headers naming another algorithm, signed with HS256 as a confused verifier would check.
    for header in [
        r#"{"alg":"HS512","typ":"JWT"}"#,
        r#"{"alg":"HS384","typ":"JWT"}"#,
        r#"{"alg":"RS256","typ":"JWT"}"#,
        r#"{"alg":"ES256","typ":"JWT"}"#,
        r#"{"alg":"hs256","typ":"JWT"}"#,
        r#"{"alg":"","typ":"JWT"}"#,
        r#"{"alg":256,"typ":"JWT"}"#,
        r#"{"typ":"JWT"}"#,
    ] {
        let tok = jwt(header, &claims, SECRET);
        assert_token_refused(&server, &tok, "bad_algorithm", header);
    }
    // A genuine HS512 token with the right key.
    let input = signing_input(r#"{"alg":"HS512","typ":"JWT"}"#, &claims);
    let tok = format!("{input}.{}", b64(&hs512(&input, SECRET)));
    assert_token_refused(&server, &tok, "bad_algorithm", "genuine HS512");
}

#[test]
fn tampered_token_is_refused() {
    let server = token_server(&[]);
    let exp = now() + 60;
    let alice = token(&json!({"sub": "alice", "exp": exp, "channels": ["lobby"]}));
    let [h, _, s] = parts(&alice);
    // Another subject, another expiry, more channels: each with alice's signature.
    for claims in [
        json!({"sub": "mallory", "exp": exp, "channels": ["lobby"]}),
        json!({"sub": "alice", "exp": exp + 3600, "channels": ["lobby"]}),
        json!({"sub": "alice", "exp": exp, "channels": ["*"]}),
    ] {
        let forged = format!("{h}.{}.{s}", b64(claims.to_string().as_bytes()));
        assert_token_refused(&server, &forged, "bad_signature", &claims.to_string());
    }
    // A changed header with the old signature.
    let forged = format!("{}.{}", b64(br#"{"alg":"HS256"}"#), &alice[h.len() + 1..]);
    assert_token_refused(&server, &forged, "bad_signature", "changed header");
    // The original still works.
    let (_client, welcome) = connect_with(&server, &alice, "channel=lobby");
    assert_eq!(welcome["user"], "alice", "{welcome}");
}

#[test]
fn malformed_and_missing_tokens_are_refused() {
    let server = token_server(&[]);
    let exp = now() + 60;
    let good = token(&json!({"sub": "alice", "exp": exp}));
    let [h, p, s] = parts(&good);
    let mut cases: Vec<(String, String)> = vec![
        ("one part".into(), h.to_string()),
        ("two parts".into(), format!("{h}.{p}")),
        ("four parts".into(), format!("{h}.{p}.{s}.{s}")),
        ("garbage".into(), "not-a-token".into()),
        ("non-base64url signature".into(), format!("{h}.{p}.{s}~")),
    ];
    // A part that is not base64url, in an input signed as it stands: its encoding is the
    // only defect (the contract gives no precedence between reasons).
    for (what, input) in [
        ("non-base64url header", format!("eyJ~(*.{p}")),
        ("non-base64url claims", format!("{h}.e30~~")),
        ("standard base64 claims", format!("{h}.{p}/")),
    ] {
        let signed = format!("{input}.{}", b64(&hs256(&input, SECRET)));
        cases.push((what.to_string(), signed));
    }
    // Properly signed, so that only the content is wrong.
    for (what, claims) in [
        ("claims not JSON", "not json".to_string()),
        ("claims an array", "[1,2]".to_string()),
        ("claims a string", r#""alice""#.to_string()),
        ("claims a number", "42".to_string()),
        ("no exp", json!({"sub": "alice"}).to_string()),
        ("no sub", json!({"exp": exp}).to_string()),
        (
            "exp a string",
            json!({"sub": "alice", "exp": exp.to_string()}).to_string(),
        ),
        ("exp null", json!({"sub": "alice", "exp": null}).to_string()),
        ("sub a number", json!({"sub": 7, "exp": exp}).to_string()),
        ("sub empty", json!({"sub": "", "exp": exp}).to_string()),
        (
            "sub not a user id",
            json!({"sub": "a\tb", "exp": exp}).to_string(),
        ),
        (
            "sub too long",
            json!({"sub": "a".repeat(129), "exp": exp}).to_string(),
        ),
        (
            "channels a string",
            json!({"sub": "alice", "exp": exp, "channels": "lobby"}).to_string(),
        ),
        (
            "channels with a number",
            json!({"sub": "alice", "exp": exp, "channels": ["lobby", 3]}).to_string(),
        ),
        (
            "meta an array",
            json!({"sub": "alice", "exp": exp, "meta": [1]}).to_string(),
        ),
        (
            "meta a string",
            json!({"sub": "alice", "exp": exp, "meta": "mod"}).to_string(),
        ),
    ] {
        cases.push((what.to_string(), jwt(HS256, &claims, SECRET)));
    }
    cases.push((
        "header not JSON".into(),
        jwt(
            "not json",
            &json!({"sub": "alice", "exp": exp}).to_string(),
            SECRET,
        ),
    ));
    for (what, tok) in &cases {
        assert_token_refused(&server, tok, "malformed", what);
    }

    for query in ["channel=lobby", "", "tokens=x&channel=lobby"] {
        assert_refused(&server, query, 401, "missing", &format!("query {query:?}"));
    }
    // The server is fine afterwards.
    let (_client, welcome) = connect_with(&server, &good, "channel=lobby");
    assert_eq!(welcome["user"], "alice", "{welcome}");
}

#[test]
fn user_parameter_with_a_token_is_a_bad_request() {
    let server = token_server(&[]);
    let tok = token_for("alice");
    for query in [
        format!("token={tok}&user=alice&channel=lobby"),
        format!("user=bob&token={tok}"),
    ] {
        let resp = upgrade(&server, &query);
        assert_eq!(resp.status, 400, "{query}: {resp:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Channels allowed by the token
// ---------------------------------------------------------------------------------------------

#[test]
fn channels_outside_the_token_are_forbidden() {
    let server = token_server(&[]);
    let tok = token(&json!({"sub": "alice", "exp": now() + 60, "channels": ["lobby", "chat.*"]}));

    for channel in ["other", "chats", "chat", "lobby2", "Lobby"] {
        assert_refused(
            &server,
            &format!("token={tok}&channel={channel}"),
            403,
            "",
            &format!("URL channel {channel}"),
        );
    }
    assert_refused(
        &server,
        &format!("token={tok}&channel=lobby&channel=other"),
        403,
        "",
        "one of two URL channels outside",
    );

    for channel in ["lobby", "chat.1", "chat.x.y", "chat."] {
        let (_client, state) = join_with(&server, &tok, channel);
        assert_eq!(user_names(&state), ["alice"], "{channel}: {state}");
    }

    // The join command: refused outside, the connection stays and can join inside.
    let (mut alice, _) = join_with(&server, &tok, "lobby");
    for (i, channel) in ["chats", "other", "chat"].iter().enumerate() {
        let reply = join_command(&mut alice, channel, &format!("f{i}"));
        assert_error(&reply, "forbidden", "", &format!("join {channel}"));
    }
    let reply = join_command(&mut alice, "chat.42", "ok");
    assert_eq!(reply["type"], "state", "{reply}");
    assert_eq!(reply["channel"], "chat.42", "{reply}");
    assert!(alice.roundtrip_ping().is_empty());
    // The refused joins made nobody present.
    let (_other_user, state) = join_with(&server, &token_for("bob"), "other");
    assert_eq!(user_names(&state), ["bob"], "{state}");
}

#[test]
fn star_and_absent_channels_allow_every_channel() {
    let server = token_server(&[]);
    let star = token(&json!({"sub": "alice", "exp": now() + 60, "channels": ["*"]}));
    let absent = token(&json!({"sub": "bob", "exp": now() + 60}));
    for tok in [&star, &absent] {
        for channel in ["lobby", "chats", "x"] {
            let (_client, state) = join_with(&server, tok, channel);
            assert_eq!(state["channel"], channel, "{state}");
        }
        let (mut client, _) = join_with(&server, tok, "lobby");
        let reply = join_command(&mut client, "anything-at-all", "j");
        assert_eq!(reply["type"], "state", "{reply}");
    }
}

#[test]
fn default_channel_not_allowed_joins_nothing() {
    let server = token_server(&[]);
    for channels in [json!(["chat.*"]), json!([])] {
        let tok = token(&json!({"sub": "alice", "exp": now() + 60, "channels": channels}));
        let (mut client, welcome) = connect_with(&server, &tok, "");
        assert_eq!(welcome["user"], "alice", "{welcome}");
        let before = client.roundtrip_ping();
        assert!(
            before.is_empty(),
            "channels {channels}: no channel should be joined, got {before:?}"
        );
        let reply = join_command(&mut client, "lobby", "j");
        assert_error(&reply, "forbidden", "", &format!("channels {channels}"));
    }
    // An empty list allows nothing.
    let none = token(&json!({"sub": "alice", "exp": now() + 60, "channels": []}));
    assert_refused(
        &server,
        &format!("token={none}&channel=lobby"),
        403,
        "",
        "empty channels list",
    );
}

// ---------------------------------------------------------------------------------------------
// Refresh and expiry
// ---------------------------------------------------------------------------------------------

#[test]
fn refresh_extends_the_connection_past_its_first_exp() {
    let server = token_server(&["--token-leeway", "0s"]);
    let first_exp = exp_after(Duration::from_secs(2));
    let first = token(&json!({"sub": "alice", "exp": first_exp, "channels": ["lobby"]}));
    let (mut alice, _) = join_with(&server, &first, "lobby");
    let reply = join_command(&mut alice, "dev", "before");
    assert_error(&reply, "forbidden", "", "dev before the refresh");

    let new_exp = now() + 60;
    let second = token(&json!({
        "sub": "alice",
        "exp": new_exp,
        "channels": ["lobby", "dev"],
        "meta": {"v": 2},
    }));
    let reply = request(
        &mut alice,
        json!({"type": "refresh", "token": second, "ref": "r1"}),
    );
    assert_eq!(
        reply,
        json!({"type": "refreshed", "exp": new_exp, "ref": "r1"})
    );
    assert!(
        unix_ms() < first_exp * 1000,
        "the test was too slow: the refresh came after the first exp"
    );

    // The new token's channels and meta apply to later joins.
    let reply = join_command(&mut alice, "dev", "after");
    assert_eq!(reply["type"], "state", "{reply}");
    assert_eq!(reply["users"]["alice"]["meta"], json!({"v": 2}), "{reply}");

    // Still open well after the first exp: nothing arrives (no Close), and a ping works.
    let until = first_exp * 1000 + 1500;
    alice.expect_silence(Duration::from_millis(until.saturating_sub(unix_ms())));
    assert!(alice.roundtrip_ping().is_empty());
    // The lobby membership from the first token stayed.
    let who = request(
        &mut alice,
        json!({"type": "who", "channel": "lobby", "ref": "w"}),
    );
    assert_eq!(user_names(&who), ["alice"], "{who}");
}

#[test]
fn refresh_with_a_bad_token_is_forbidden() {
    let server = token_server(&[]);
    let (mut alice, _) = join_with(&server, &token_for("alice"), "lobby");
    let exp = now() + 60;
    let claims = json!({"sub": "alice", "exp": exp}).to_string();
    let cases = [
        ("wrong_subject", token(&json!({"sub": "bob", "exp": exp}))),
        (
            "expired",
            token(&json!({"sub": "alice", "exp": now() - 60})),
        ),
        (
            "not_yet_valid",
            token(&json!({"sub": "alice", "exp": exp, "nbf": now() + 60})),
        ),
        ("bad_signature", jwt(HS256, &claims, "other")),
        (
            "bad_algorithm",
            format!("{}.", signing_input(r#"{"alg":"none"}"#, &claims)),
        ),
        ("malformed", "abc".to_string()),
    ];
    for (i, (reason, tok)) in cases.iter().enumerate() {
        let reply = request(
            &mut alice,
            json!({"type": "refresh", "token": tok, "ref": i}),
        );
        assert_error(&reply, "forbidden", reason, &format!("refresh ({reason})"));
    }
    // The connection stays, still alice's.
    assert!(alice.roundtrip_ping().is_empty());
    let who = request(
        &mut alice,
        json!({"type": "who", "channel": "lobby", "ref": "w"}),
    );
    assert_eq!(user_names(&who), ["alice"], "{who}");
}

#[test]
fn refresh_without_tokens_configured_is_a_bad_request() {
    let server = Server::start_with_env(&[], &[]);
    let (mut alice, _) = Client::join(server.addr(), "user=alice&channel=lobby");
    let reply = request(
        &mut alice,
        json!({"type": "refresh", "token": token_for("alice"), "ref": "r"}),
    );
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["code"], "bad_request", "{reply}");
    assert!(alice.roundtrip_ping().is_empty());
}

#[test]
fn expiry_closes_with_4001_and_others_see_expired() {
    let server = token_server(&["--token-leeway", "0s"]);
    let (mut observer, _) = join_with(&server, &token_for("observer"), "lobby");
    let exp = exp_after(Duration::from_secs(1));
    let victim_token = token(&json!({"sub": "victim", "exp": exp}));
    let (mut victim, state) = join_with(&server, &victim_token, "lobby");
    assert_eq!(user_names(&state), ["observer", "victim"], "{state}");
    observer.wait_for(STEP, "victim's join", |v| {
        v["type"] == "join" && v["user"] == "victim"
    });

    // The Close comes at exp, rounded up to the 100 ms tick; the rest of the margin is for a
    // loaded machine.
    let deadline = exp * 1000 + 500;
    let close = loop {
        let remaining = Duration::from_millis(deadline.saturating_sub(unix_ms()));
        match victim.next(remaining) {
            Incoming::Json(_) => {}
            Incoming::Close(frame) => break frame,
            other => panic!(
                "expected a Close by {deadline} ms (exp {exp} s, leeway 0, the 100 ms tick and a \
                 margin), got {other:?} at {} ms",
                unix_ms()
            ),
        }
    };
    let at = unix_ms();
    assert!(
        at + 100 >= exp * 1000,
        "closed at {at} ms, before exp {exp} s"
    );
    assert_eq!(
        close,
        Some((4001, "token expired".to_string())),
        "Close frame"
    );

    let leave = observer
        .wait_for(STEP, "victim's leave", |v| {
            v["type"] == "leave" && v["user"] == "victim"
        })
        .0;
    assert_eq!(leave["reason"], "expired", "{leave}");
    assert_eq!(leave["channel"], "lobby", "{leave}");
    // The observer's own long-lived token keeps it connected.
    assert!(observer.roundtrip_ping().is_empty());
}

// ---------------------------------------------------------------------------------------------
// The `rollcall token` subcommand and the secret's sources
// ---------------------------------------------------------------------------------------------

/// `rollcall token ARGS` with no secret in the environment; must exit 0; the token printed.
#[track_caller]
fn make_token(args: &[&str]) -> String {
    let mut all = vec!["token"];
    all.extend_from_slice(args);
    let run = run_cli_with_env(&all, &[], &["ROLLCALL_TOKEN_SECRET"], EXIT_WAIT);
    assert_eq!(run.code, Some(0), "rollcall {all:?}: {run:?}");
    let tok = run.stdout.trim().to_string();
    assert_eq!(
        run.stdout.trim_end().lines().count(),
        1,
        "one line on stdout: {run:?}"
    );
    tok
}

#[test]
fn token_subcommand_prints_a_token_the_server_accepts() {
    let before = now();
    let tok = make_token(&[
        "--user",
        "alice",
        "--ttl",
        "1h",
        "--channels",
        "lobby,chat.*",
        "--token-secret",
        SECRET,
    ]);
    let after = now();
    let [h, p, s] = parts(&tok);
    let header = decode_part(h);
    assert_eq!(header["alg"], "HS256", "header {header}");
    let claims = decode_part(p);
    assert_eq!(claims["sub"], "alice", "{claims}");
    assert_eq!(claims["channels"], json!(["lobby", "chat.*"]), "{claims}");
    let exp = claims["exp"]
        .as_u64()
        .unwrap_or_else(|| panic!("exp: {claims}"));
    assert!(
        (before + 3600..=after + 3601).contains(&exp),
        "exp {exp} should be an hour after {before}..{after}"
    );
    assert_eq!(
        s,
        b64(&hs256(&format!("{h}.{p}"), SECRET)),
        "HMAC-SHA256 over header.payload with the secret"
    );

    let server = token_server(&[]);
    for channel in ["lobby", "chat.x"] {
        let (_client, state) = join_with(&server, &tok, channel);
        assert_eq!(user_names(&state), ["alice"], "{state}");
    }
    assert_refused(
        &server,
        &format!("token={tok}&channel=other"),
        403,
        "",
        "channel other",
    );
    // Another secret refuses it.
    let other = Server::start_with_env(&["--token-secret", "another"], &[]);
    assert_token_refused(&other, &tok, "bad_signature", "another server secret");
}

#[test]
fn token_subcommand_meta_becomes_the_users_meta() {
    let tok = make_token(&[
        "--user",
        "bob",
        "--ttl",
        "10m",
        "--meta",
        r#"{"role":"mod"}"#,
        "--token-secret",
        SECRET,
    ]);
    let claims = decode_part(parts(&tok)[1]);
    assert_eq!(claims["meta"], json!({"role": "mod"}), "{claims}");
    let server = token_server(&[]);
    let (_bob, state) = join_with(&server, &tok, "anywhere");
    assert_eq!(
        state["users"]["bob"]["meta"],
        json!({"role": "mod"}),
        "{state}"
    );
}

#[test]
fn token_subcommand_refuses_bad_input_with_exit_2() {
    let base = ["token", "--user", "alice", "--ttl", "1h"];
    // No secret anywhere.
    let run = run_cli_with_env(&base, &[], &["ROLLCALL_TOKEN_SECRET"], EXIT_WAIT);
    assert_eq!(run.code, Some(2), "no secret: {run:?}");
    assert!(run.stdout.trim().is_empty(), "no secret: {run:?}");
    assert!(!run.stderr.trim().is_empty(), "no secret: no message");

    let bad: &[&[&str]] = &[
        &["token", "--user", "a\u{7}b", "--ttl", "1h"],
        &["token", "--ttl", "1h"],
        &["token", "--user", "alice", "--ttl", "soon"],
        &[
            "token",
            "--user",
            "alice",
            "--ttl",
            "1h",
            "--channels",
            "lo*by",
        ],
        &[
            "token",
            "--user",
            "alice",
            "--ttl",
            "1h",
            "--channels",
            "a b",
        ],
        &["token", "--user", "alice", "--ttl", "1h", "--meta", "[1]"],
        &["token", "--user", "alice", "--ttl", "1h", "--meta", "{nope"],
    ];
    for args in bad {
        let mut all = args.to_vec();
        all.extend(["--token-secret", SECRET]);
        let run = run_cli_with_env(&all, &[], &["ROLLCALL_TOKEN_SECRET"], EXIT_WAIT);
        assert_eq!(run.code, Some(2), "{all:?}: {run:?}");
        assert!(!run.stderr.trim().is_empty(), "{all:?}: no message");
    }
}

#[test]
fn token_secret_from_the_environment_works_like_the_flag() {
    let env = [("ROLLCALL_TOKEN_SECRET", "envsecret")];
    let server = Server::start_with_env(&[], &env);
    let from_env = jwt(
        HS256,
        &json!({"sub": "alice", "exp": now() + 60}).to_string(),
        "envsecret",
    );
    let (_client, welcome) = connect_with(&server, &from_env, "channel=lobby");
    assert_eq!(welcome["user"], "alice", "{welcome}");
    assert_refused(&server, "channel=lobby", 401, "missing", "no token");
    assert_token_refused(&server, &token_for("alice"), "bad_signature", "other key");

    // The subcommand reads it too.
    let run = run_cli_with_env(
        &["token", "--user", "dora", "--ttl", "5m"],
        &env,
        &[],
        EXIT_WAIT,
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    let (_client, welcome) = connect_with(&server, run.stdout.trim(), "channel=lobby");
    assert_eq!(welcome["user"], "dora", "{welcome}");

    // The flag wins over the environment.
    let server = Server::start_with_env(&["--token-secret", SECRET], &env);
    let (_client, welcome) = connect_with(&server, &token_for("alice"), "channel=lobby");
    assert_eq!(welcome["user"], "alice", "{welcome}");
    assert_token_refused(&server, &from_env, "bad_signature", "env key, flag given");
}

#[test]
fn admin_token_still_works_with_tokens_enabled() {
    let server = Server::start_with_env(&["--admin-token", "a", "--token-secret", "s"], &[]);
    let addr = server.addr();
    let resp = http_get_with(addr, "/presence", &[("Authorization", "Bearer a")]);
    assert_eq!(resp.status, 200, "{resp:?}");
    let resp = http_get(addr, "/presence");
    assert_eq!(resp.status, 401, "no bearer: {resp:?}");
    // A connection token is not the admin token.
    let jwt_s = jwt(
        HS256,
        &json!({"sub": "alice", "exp": now() + 60}).to_string(),
        "s",
    );
    let resp = http_get_with(
        addr,
        "/presence",
        &[("Authorization", &format!("Bearer {jwt_s}"))],
    );
    assert_eq!(resp.status, 401, "JWT as bearer: {resp:?}");
    // And WebSockets still take JWTs.
    let (_client, welcome) = connect_with(&server, &jwt_s, "channel=lobby");
    assert_eq!(welcome["user"], "alice", "{welcome}");
}

#[test]
fn a_tokens_grant_bounds_watching_too() {
    let server = token_server(&[]);
    let everything = token_for("m");
    let (_m, _) = connect_with(&server, &everything, "channel=secret&channel=lobby");
    let granted = token(&json!({"sub": "g", "exp": now() + 60, "channels": ["lobby", "chat.*"]}));

    // On the URL: only what the grant allows, and `*` only with a grant of every channel.
    for watch in ["secret", "*", "lobby&watch=secret"] {
        assert_refused(
            &server,
            &format!("token={granted}&watch={watch}"),
            403,
            "watch",
            &format!("watch={watch} past the grant"),
        );
    }
    let (mut g, _) = connect_with(&server, &granted, "watch=lobby&watch=chat.1");
    for _ in 0..2 {
        g.expect_type("state");
    }

    // By command: the same rules.
    for channel in ["secret", "*"] {
        let reply = request(
            &mut g,
            json!({"type": "watch", "channel": channel, "ref": channel}),
        );
        assert_error(&reply, "forbidden", "watching", &format!("watch {channel}"));
    }
    let reply = request(
        &mut g,
        json!({"type": "watch", "channel": "chat.2", "ref": 1}),
    );
    assert_eq!(reply["type"], "state", "{reply}");
    // A granted watcher asks `who` only of what it watches.
    let reply = request(
        &mut g,
        json!({"type": "who", "channel": "secret", "ref": 2}),
    );
    assert_error(&reply, "not_joined", "not joined", "who secret");

    // A token of every channel may watch them all.
    let (mut all, _) = connect_with(&server, &everything, "watch=*");
    let state = all.expect_type("state");
    let second = all.expect_type("state");
    let mut names = [state["channel"].clone(), second["channel"].clone()];
    names.sort_by_key(|name| name.to_string());
    assert_eq!(names, [json!("lobby"), json!("secret")]);
}

#[test]
fn the_admin_token_is_enough_for_the_dashboard_under_tokens() {
    let server = Server::start_with_env(&["--admin-token", "A", "--token-secret", SECRET], &[]);
    let addr = server.addr();
    let (_m, _) = connect_with(&server, &token_for("m"), "channel=lobby");

    // The dashboard's own request: no connection token, the admin token, `watch=*`.
    let (mut dashboard, welcome) = Client::connect_welcomed(addr, "watch=*&admin=A");
    assert!(
        welcome["user"]
            .as_str()
            .is_some_and(|u| u.starts_with("anon-")),
        "{welcome}"
    );
    let state = dashboard.expect_type("state");
    assert_eq!(user_names(&state), ["m"], "{state}");
    // It watches; it does not join.
    let reply = request(
        &mut dashboard,
        json!({"type": "join", "channel": "lobby", "ref": 1}),
    );
    assert_error(&reply, "forbidden", "channel lobby", "join without a token");
    let presence = http_get_with(addr, "/presence", &[("Authorization", "Bearer A")]).json();
    assert_eq!(presence["users"], 1, "{presence}");
    assert_eq!(presence["watchers"], 1, "{presence}");

    // Without the admin token (or with a wrong one) a token is still needed; with it, no
    // channel can be joined by URL and no user named.
    assert_refused(&server, "watch=*", 401, "watching needs", "watch, no admin");
    assert_refused(
        &server,
        "watch=*&admin=B",
        401,
        "watching needs",
        "wrong admin",
    );
    assert_refused(&server, "admin=A", 401, "missing", "admin without a watch");
    assert_refused(
        &server,
        "watch=*&admin=A&channel=x",
        403,
        "channel x",
        "join by URL",
    );
    assert_refused(
        &server,
        "watch=*&admin=A&user=u",
        400,
        "user",
        "user by URL",
    );
}

// ---------------------------------------------------------------------------------------------
// Interoperability with PyJWT
// ---------------------------------------------------------------------------------------------

/// A Python interpreter that has PyJWT: `.ci/run`'s venv, else `python3` when it has it.
fn pyjwt_python() -> Option<PathBuf> {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/pyjwt/venv/bin/python");
    [venv, PathBuf::from("python3")].into_iter().find(|python| {
        Command::new(python)
            .args(["-c", "import jwt"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    })
}

/// Runs `script` with `args` under `python` (warnings off: PyJWT warns about short keys).
#[track_caller]
fn run_python(python: &Path, script: &str, args: &[&str]) -> String {
    let mut command = Command::new(python);
    command.args(["-W", "ignore", "-c", script]).args(args);
    let run = run_command(command, EXIT_WAIT);
    assert_eq!(run.code, Some(0), "python {script}: {run:?}");
    run.stdout.trim().to_string()
}

#[test]
fn pyjwt_tokens_are_accepted_and_ours_decode_in_pyjwt() {
    let Some(python) = pyjwt_python() else {
        skip_or_fail(
            "ROLLCALL_PYJWT_TESTS",
            "PyJWT test",
            "neither target/pyjwt/venv/bin/python nor python3 can `import jwt`",
            "run .ci/run or pip install PyJWT",
        );
        return;
    };
    let server = token_server(&[]);
    let exp = (now() + 60).to_string();
    let encode = r#"
import sys, jwt
print(jwt.encode({"sub": "py", "exp": int(sys.argv[1]), "channels": ["lobby"]},
                 sys.argv[2], algorithm="HS256"))
"#;
    let tok = run_python(&python, encode, &[&exp, SECRET]);
    let (_client, state) = join_with(&server, &tok, "lobby");
    assert_eq!(user_names(&state), ["py"], "{state}");
    assert_refused(
        &server,
        &format!("token={tok}&channel=dev"),
        403,
        "",
        "PyJWT token outside its channels",
    );

    // The other way: PyJWT verifies what `rollcall token` signs.
    let ours = make_token(&[
        "--user",
        "alice",
        "--ttl",
        "1h",
        "--channels",
        "lobby,chat.*",
        "--token-secret",
        SECRET,
    ]);
    let decode = r#"
import sys, json, jwt
claims = jwt.decode(sys.argv[1], sys.argv[2], algorithms=["HS256"],
                    options={"require": ["exp", "sub"]})
print(json.dumps(claims))
"#;
    let out = run_python(&python, decode, &[&ours, SECRET]);
    let claims: Value = serde_json::from_str(&out).expect("PyJWT's claims as JSON");
    assert_eq!(claims["sub"], "alice", "{claims}");
    assert_eq!(claims["channels"], json!(["lobby", "chat.*"]), "{claims}");
}

/// Issue 16: the identities an identity provider issues, as PyJWT signs them: an Auth0 `sub`
/// and a `room:*` grant join `room:lobby`; a grant with an invalid entry is refused naming it.
#[test]
fn pyjwt_token_with_an_auth0_subject_and_a_pattern_grant_joins() {
    let Some(python) = pyjwt_python() else {
        skip_or_fail(
            "ROLLCALL_PYJWT_TESTS",
            "PyJWT identities test",
            "neither target/pyjwt/venv/bin/python nor python3 can `import jwt`",
            "run .ci/run or pip install PyJWT",
        );
        return;
    };
    let server = token_server(&[]);
    let exp = (now() + 60).to_string();
    let encode = r#"
import sys, json, jwt
print(jwt.encode({"sub": sys.argv[3], "exp": int(sys.argv[1]), "channels": json.loads(sys.argv[4])},
                 sys.argv[2], algorithm="HS256"))
"#;
    let subject = "auth0|5f7c8ec7c33c6c004bbafe82";
    let grant = r#"["room:*", "private-App.Models.User.*"]"#;
    let tok = run_python(&python, encode, &[&exp, SECRET, subject, grant]);
    let (_client, state) = join_with(&server, &tok, "room:lobby");
    assert_eq!(user_names(&state), [subject], "{state}");
    let (_client, state) = join_with(&server, &tok, "private-App.Models.User.42");
    assert_eq!(user_names(&state), [subject], "{state}");
    assert_refused(
        &server,
        &format!("token={tok}&channel=chat:lobby"),
        403,
        "",
        "outside the room:* grant",
    );

    let bad_grant = r#"["room:*", "chat|*"]"#;
    let tok = run_python(&python, encode, &[&exp, SECRET, subject, bad_grant]);
    assert_refused(
        &server,
        &format!("token={tok}&channel=room:lobby"),
        401,
        "malformed (channel pattern \"chat|*\"",
        "a grant with an invalid entry",
    );
}
