//! Identities as apps have them (docs/protocol.md §1): a user id holding quotes, a
//! backslash, markup, an emoji and right-to-left text, and channel names in the `room:lobby`
//! and `studio/1/live` conventions, travel byte for byte through every message and endpoint
//! over real sockets; what breaks the rules gets a 400 or a `bad_request` naming the rule.
//! (The dashboard's rendering of such an id is checked in Chromium by `dashboard.rs`, a
//! cluster note carrying one by `cluster.rs`, an Auth0 `sub` in a PyJWT token by `tokens.rs`.)

mod common;

use common::*;
use serde_json::{json, Value};

/// Every hazard a user id may hold: JSON's two escapes, markup, a 4-byte emoji, a
/// right-to-left override and Arabic text, a space and an Auth0 prefix.
const HAZARD: &str = "auth0|q\"b\\s</script><b>x</b> 🦀 \u{202e}مرحبا\u{202c}";

const ROOM: &str = "room:lobby";

#[test]
fn a_hazardous_user_id_round_trips_through_every_message() {
    let server = Server::start(&["--client-publish"]);
    let addr = server.addr();
    let (mut watcher, _) = Client::join(addr, &format!("user=olga&channel={ROOM}"));

    let query = format!("user={}&channel={}", url_encode(HAZARD), url_encode(ROOM));
    let (mut hazard, welcome) = Client::connect_welcomed(addr, &query);
    assert_eq!(welcome["user"], HAZARD, "welcome: {welcome}");
    let state = hazard.expect_type("state");
    assert_eq!(state["channel"], ROOM, "{state}");
    let mut names = user_names(&state);
    names.sort();
    assert_eq!(names, [HAZARD, "olga"], "state: {state}");

    let join = watcher.expect_type("join");
    assert_eq!(
        (&join["user"], &join["channel"]),
        (&json!(HAZARD), &json!(ROOM)),
        "{join}"
    );

    hazard.send_json(&json!({"type": "update", "channel": ROOM, "meta": {"name": HAZARD}}));
    let update = watcher.expect_type("update");
    assert_eq!(update["user"], HAZARD, "{update}");
    assert_eq!(update["meta"]["name"], HAZARD, "{update}");

    hazard.send_json(&json!({"type": "publish", "channel": ROOM, "data": "hi"}));
    let message = watcher.expect_type("message");
    assert_eq!(
        (&message["from"], &message["channel"]),
        (&json!(HAZARD), &json!(ROOM))
    );

    let everything = http_get(addr, "/presence").json();
    assert!(
        everything["channels"][ROOM]["users"].get(HAZARD).is_some(),
        "GET /presence: {everything}"
    );
    for path in ["/presence/room:lobby", "/presence/room%3Alobby"] {
        let channel = http_get(addr, path).json();
        assert_eq!(
            channel["users"][HAZARD]["meta"]["name"], HAZARD,
            "{path}: {channel}"
        );
    }

    let body = json!({"channels": [ROOM, "studio/1/live"], "data": {"by": "server"}});
    let published = http_post(addr, "/publish", &[], body.to_string().as_bytes());
    assert_eq!(published.status, 200, "{published:?}");
    let message = watcher.expect_type("message");
    assert_eq!(
        (&message["from"], &message["channel"]),
        (&Value::Null, &json!(ROOM))
    );

    hazard.close();
    let leave = watcher.expect_type("leave");
    assert_eq!(leave["user"], HAZARD, "{leave}");
}

#[test]
fn channel_names_in_the_apps_conventions_work_everywhere() {
    let server = Server::start(&[]);
    let addr = server.addr();
    let channels = [
        "room:lobby",
        "studio/1/live",
        "private-App.Models.User.42",
        "a=b,c;d@e",
    ];
    let query: String = channels
        .iter()
        .map(|c| format!("&channel={}", url_encode(c)))
        .collect();
    let (mut client, _) = Client::connect_welcomed(addr, &format!("user=ann{query}"));
    for channel in channels {
        let state = client.expect_type("state");
        assert_eq!(state["channel"], channel, "{state}");
        let count = http_get(addr, &format!("/presence/{}?count", url_encode(channel)));
        assert_eq!(count.status, 200, "{channel}: {count:?}");
        assert_eq!(count.json()["users"], 1, "{channel}");
    }
    client.send_json(&json!({"type": "join", "channel": "chat:index", "ref": 1}));
    let state = client.expect_type("state");
    assert_eq!(state["channel"], "chat:index");
}

#[test]
fn names_breaking_the_rules_are_refused_naming_the_rule() {
    let server = Server::start(&[]);
    let addr = server.addr();
    let long_user = "u".repeat(129);
    for (query, rule) in [
        (
            format!("user={long_user}"),
            "user is 129 bytes long, the limit is 128 bytes",
        ),
        (
            "user=a%09b".into(),
            "user contains the control character U+0009",
        ),
        (
            "user=a&channel=a*".into(),
            "channel contains '*', which is reserved",
        ),
        ("user=a&channel=a%23b".into(), "'#', which is reserved"),
        (
            "user=a%zz".into(),
            "user: malformed percent-encoding \"%zz\" at byte 1",
        ),
    ] {
        let response = upgrade_attempt(addr, upgrade_request(&format!("/?{query}")).as_bytes());
        assert_eq!(response.status, 400, "{query}: {response:?}");
        assert!(
            response.body.contains(rule),
            "{query}: {:?} lacks {rule:?}",
            response.body
        );
    }

    let (mut client, _) = Client::join(addr, "user=ann&channel=c");
    let long_channel = "c".repeat(201);
    for (channel, rule) in [
        (
            long_channel.as_str(),
            "channel is 201 bytes long, the limit is 200 bytes",
        ),
        ("a|b", "channel contains '|'"),
        ("a*", "reserved for grant patterns"),
    ] {
        client.send_json(&json!({"type": "join", "channel": channel, "ref": 7}));
        let error = client.expect_type("error");
        assert_eq!(error["code"], "bad_request", "{channel}: {error}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(rule),
            "{channel}: {message:?} lacks {rule:?}"
        );
    }
    // The connection keeps working after its refused commands.
    client.send_json(&json!({"type": "join", "channel": "room:ok"}));
    assert_eq!(client.expect_type("state")["channel"], "room:ok");
}
