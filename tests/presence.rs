//! Presence semantics over real sockets: state snapshots, join/leave events and their reasons,
//! second tabs, meta updates, the leave grace, publications and default names.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

#[test]
fn state_join_and_leave_between_two_users() {
    let server = Server::start(&[]);

    let (mut alice, welcome) = Client::connect_welcomed(server.addr(), "user=alice&channel=c1");
    assert_eq!(welcome["user"], "alice", "welcome: {welcome}");
    assert!(
        welcome["conn"].as_str().is_some_and(|c| c.contains('.')),
        "welcome conn is SLOT.GEN: {welcome}"
    );
    assert_eq!(
        welcome["heartbeat"]["interval_ms"], 30_000,
        "default interval: {welcome}"
    );
    assert_eq!(
        welcome["heartbeat"]["timeout_ms"], 60_000,
        "default timeout: {welcome}"
    );

    let state = alice.expect_type("state");
    assert_eq!(state["channel"], "c1");
    assert_eq!(user_names(&state), ["alice"], "alice's state: {state}");
    assert_eq!(
        state["users"]["alice"]["conns"], 1,
        "alice's state: {state}"
    );
    assert!(
        state["users"]["alice"]["meta"].is_object(),
        "meta is an object: {state}"
    );
    let seq0 = seq_of(&state);

    let (mut bob, bob_state) = Client::join(server.addr(), "user=bob&channel=c1");
    let join = alice.expect_type("join");
    assert_eq!(join["channel"], "c1", "join: {join}");
    assert_eq!(join["user"], "bob", "join: {join}");
    assert!(join["meta"].is_object(), "join carries meta: {join}");
    assert_eq!(
        seq_of(&join),
        seq0 + 1,
        "join seq follows alice's state seq: {join}"
    );

    assert_eq!(
        user_names(&bob_state),
        ["alice", "bob"],
        "bob's state: {bob_state}"
    );
    assert_eq!(
        seq_of(&bob_state),
        seq_of(&join),
        "bob's state carries the current seq"
    );
    // The joining connection does not get its own join event.
    assert!(
        presence_events(&bob.roundtrip_ping()).is_empty(),
        "bob got a presence event about himself"
    );

    bob.close();
    let leave = alice.expect_type("leave");
    assert_eq!(leave["channel"], "c1", "leave: {leave}");
    assert_eq!(leave["user"], "bob", "leave: {leave}");
    assert_eq!(leave["reason"], "closed", "leave: {leave}");
    assert_eq!(seq_of(&leave), seq_of(&join) + 1, "leave: {leave}");
}

#[test]
fn second_tab_of_a_present_user_is_silent() {
    let server = Server::start(&[]);
    let (mut observer, _) = Client::join(server.addr(), "user=observer&channel=c1");

    let (tab1, _) = Client::join(server.addr(), "user=alice&channel=c1");
    let join = observer.expect_type("join");
    assert_eq!(join["user"], "alice");

    let (tab2, tab2_state) = Client::join(server.addr(), "user=alice&channel=c1");
    assert_eq!(
        tab2_state["users"]["alice"]["conns"], 2,
        "tab2's state: {tab2_state}"
    );
    assert_eq!(
        tab2_state["users"]["observer"]["conns"], 1,
        "tab2's state: {tab2_state}"
    );
    let before = observer.roundtrip_ping();
    assert!(
        presence_events(&before).is_empty(),
        "second tab caused events: {before:?}"
    );

    tab1.close();
    let before = observer.roundtrip_ping();
    assert!(
        presence_events(&before).is_empty(),
        "closing one of two tabs caused events: {before:?}"
    );
    observer.send_json(&json!({"type": "who", "channel": "c1"}));
    let who = observer.expect_type("state");
    assert_eq!(
        who["users"]["alice"]["conns"], 1,
        "after one tab closed: {who}"
    );

    tab2.close();
    let leave = observer.expect_type("leave");
    assert_eq!(leave["user"], "alice", "leave: {leave}");
    assert_eq!(leave["reason"], "closed", "leave: {leave}");
    assert_eq!(
        seq_of(&leave),
        seq_of(&join) + 1,
        "silent tabs do not move seq: {leave}"
    );
}

#[test]
fn explicit_leave_of_last_tab_has_reason_left() {
    let server = Server::start(&[]);
    let (mut observer, _) = Client::join(server.addr(), "user=observer&channel=c1");
    let (mut tab1, _) = Client::join(server.addr(), "user=alice&channel=c1");
    observer.expect_type("join");
    let (mut tab2, _) = Client::join(server.addr(), "user=alice&channel=c1");

    tab1.send_json(&json!({"type": "leave", "channel": "c1"}));
    // The leave command has no reply; the pong proves it was handled.
    let before = tab1.roundtrip_ping();
    assert!(before.is_empty(), "leave got a reply: {before:?}");
    let before = observer.roundtrip_ping();
    assert!(
        presence_events(&before).is_empty(),
        "leave of one of two tabs caused events: {before:?}"
    );

    tab2.send_json(&json!({"type": "leave", "channel": "c1"}));
    let leave = observer.expect_type("leave");
    assert_eq!(leave["user"], "alice", "leave: {leave}");
    assert_eq!(leave["reason"], "left", "leave: {leave}");

    // Having left, the connection is no longer a member.
    tab2.send_json(&json!({"type": "who", "channel": "c1", "ref": 9}));
    let err = tab2.wait_for_type("error", STEP).0;
    assert_eq!(err["code"], "not_joined", "who after leave: {err}");
    assert_eq!(err["ref"], 9, "who after leave: {err}");
}

#[test]
fn meta_update_reaches_observer_and_who() {
    let server = Server::start(&[]);
    let (mut observer, _) = Client::join(server.addr(), "user=observer&channel=c1");
    let (mut alice, _) = Client::join(server.addr(), "user=alice&channel=c1");
    let join = observer.expect_type("join");

    alice
        .send_json(&json!({"type": "update", "channel": "c1", "meta": {"status": "away", "n": 3}}));
    let update = observer.expect_type("update");
    assert_eq!(update["channel"], "c1", "update: {update}");
    assert_eq!(update["user"], "alice", "update: {update}");
    assert_eq!(
        update["meta"],
        json!({"status": "away", "n": 3}),
        "update: {update}"
    );
    assert_eq!(seq_of(&update), seq_of(&join) + 1, "update: {update}");

    // The updater's own connection gets the event as well.
    let own = alice.expect_type("update");
    assert_eq!(
        own["meta"],
        json!({"status": "away", "n": 3}),
        "own update: {own}"
    );
    assert_eq!(seq_of(&own), seq_of(&update));

    observer.send_json(&json!({"type": "who", "channel": "c1"}));
    let who = observer.expect_type("state");
    assert_eq!(
        who["users"]["alice"]["meta"],
        json!({"status": "away", "n": 3}),
        "who: {who}"
    );
    assert_eq!(
        seq_of(&who),
        seq_of(&update),
        "who carries the current seq: {who}"
    );
}

#[test]
fn leave_grace_hides_a_quick_reconnect_and_delays_a_real_leave() {
    let grace = Duration::from_secs(1);
    let server = Server::start(&["--leave-grace", "1s"]);
    let (mut observer, _) = Client::join(server.addr(), "user=observer&channel=c1");

    let (alice, _) = Client::join(server.addr(), "user=alice&channel=c1");
    let join = observer.expect_type("join");
    assert_eq!(join["user"], "alice");
    alice.close();
    let (_alice_again, state) = Client::join(server.addr(), "user=alice&channel=c1");
    assert_eq!(
        state["users"]["alice"]["conns"], 1,
        "reconnected alice: {state}"
    );

    // The grace timer of the first connection must expire without effect: watch past it.
    observer.expect_silence(grace + Duration::from_millis(500));
    assert!(presence_events(&observer.roundtrip_ping()).is_empty());

    let (bob, _) = Client::join(server.addr(), "user=bob&channel=c1");
    let bob_join = observer.expect_type("join");
    assert_eq!(bob_join["user"], "bob");
    bob.close();
    let closed_at = Instant::now();
    let leave = observer.expect_type("leave");
    let waited = closed_at.elapsed();
    assert_eq!(leave["user"], "bob", "leave: {leave}");
    assert_eq!(leave["reason"], "closed", "leave: {leave}");
    assert!(
        waited >= grace - Duration::from_millis(150),
        "leave after {}ms, before the {}ms grace",
        ms(waited),
        ms(grace)
    );
    assert!(
        waited <= grace + Duration::from_millis(1500),
        "leave only after {}ms",
        ms(waited)
    );

    // An explicit leave is not delayed by the grace.
    let (mut carol, _) = Client::join(server.addr(), "user=carol&channel=c1");
    observer.expect_type("join");
    carol.send_json(&json!({"type": "leave", "channel": "c1"}));
    let sent_at = Instant::now();
    let leave = observer.expect_type("leave");
    assert_eq!(leave["user"], "carol", "leave: {leave}");
    assert_eq!(leave["reason"], "left", "leave: {leave}");
    assert!(
        sent_at.elapsed() < grace - Duration::from_millis(200),
        "explicit leave waited {}ms",
        ms(sent_at.elapsed())
    );
}

#[test]
fn client_publish_reaches_every_member_in_any_events_mode() {
    let server = Server::start(&["--client-publish"]);
    let (mut quiet, _) = Client::connect_welcomed(server.addr(), "user=bob&channel=c1&events=none");
    let (mut alice, _) = Client::join(server.addr(), "user=alice&channel=c1");
    let (mut carol, _) = Client::join(server.addr(), "user=carol&channel=c1");

    let data = json!({"text": "hi", "n": [1, 2, 3]});
    carol.send_json(&json!({"type": "publish", "channel": "c1", "data": data}));

    for (name, client) in [("alice", &mut alice), ("carol", &mut carol)] {
        let (msg, _skipped) = client.wait_for_type("message", STEP);
        assert_eq!(msg["channel"], "c1", "{name} got {msg}");
        assert_eq!(msg["from"], "carol", "{name} got {msg}");
        assert_eq!(msg["data"], data, "{name} got {msg}");
    }
    // An events=none member gets publications and nothing else.
    let msg = quiet.recv_json(STEP);
    assert_eq!(
        msg["type"], "message",
        "first thing pushed to events=none: {msg}"
    );
    assert_eq!(msg["from"], "carol", "{msg}");
    assert_eq!(msg["data"], data, "{msg}");
}

#[test]
fn anonymous_user_and_default_channel() {
    let server = Server::start(&[]);
    let (mut anon, welcome) = Client::connect_welcomed(server.addr(), "");
    let user = welcome["user"]
        .as_str()
        .expect("welcome.user is a string")
        .to_string();
    assert!(user.starts_with("anon-"), "anonymous user name: {welcome}");
    let state = anon.expect_type("state");
    assert_eq!(state["channel"], "lobby", "default channel: {state}");
    assert!(
        users_of(&state).contains_key(&user),
        "state lists {user}: {state}"
    );

    let (_other, other_welcome) = Client::connect_welcomed(server.addr(), "");
    assert_ne!(
        other_welcome["user"], welcome["user"],
        "two anonymous users share a name"
    );

    let server = Server::start(&["--default-channel", "x"]);
    let (_c, state) = Client::join(server.addr(), "user=alice");
    assert_eq!(state["channel"], "x", "--default-channel x: {state}");
}

#[test]
fn user_names_are_percent_decoded_and_may_have_128_bytes() {
    let server = Server::start(&[]);
    let (_c, welcome) = Client::connect_welcomed(server.addr(), "user=al%40ice.b-c_d&channel=c1");
    assert_eq!(welcome["user"], "al@ice.b-c_d", "{welcome}");

    let long = "a".repeat(128);
    let (_c, welcome) = Client::connect_welcomed(server.addr(), &format!("user={long}"));
    assert_eq!(welcome["user"], long.as_str(), "{welcome}");

    // `/ws` is an upgrade path too.
    let mut c = Client::connect_target(server.addr(), "/ws?user=wsuser&channel=c1");
    let welcome = c.expect_type("welcome");
    assert_eq!(welcome["user"], "wsuser");
}

#[test]
fn several_channels_get_a_state_each_in_url_order() {
    let server = Server::start(&[]);
    let (mut c, _) = Client::connect_welcomed(server.addr(), "user=alice&channel=b2&channel=a1");
    let first = c.expect_type("state");
    let second = c.expect_type("state");
    assert_eq!(first["channel"], "b2", "{first}");
    assert_eq!(second["channel"], "a1", "{second}");
}

#[test]
fn an_unknown_events_mode_is_refused_with_the_valid_ones_named() {
    let server = Server::start(&[]);
    let refused = upgrade_attempt(
        server.addr(),
        upgrade_request("/?user=a&channel=c&events=bogus").as_bytes(),
    );
    assert_eq!(refused.status, 400, "{refused:?}");
    assert!(
        refused.body.contains("all, diff, count or none") && refused.body.contains("bogus"),
        "{refused:?}"
    );
    let (mut client, _) = Client::join(server.addr(), "user=a");
    client.send_json(&serde_json::json!({"type": "join", "channel": "c", "events": "bogus"}));
    let error = client.expect_type("error");
    assert_eq!(error["code"], "bad_request", "{error}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("\"diff\"")),
        "{error}"
    );
}

#[test]
fn diff_subscribers_hear_joins_coalesced_with_a_chained_seq() {
    let server = Server::start(&["--diff-interval", "3s"]);
    let (mut dana, state) = Client::join(server.addr(), "user=dana&channel=room&events=diff");
    assert_eq!(seq_of(&state), 1);
    // The first change of a quiet channel comes at once, alone.
    let _alice = Client::join(server.addr(), "user=alice&channel=room");
    let (first, _) = dana.wait_for_type("diff", STEP);
    assert_eq!(first["from"], 1, "{first}");
    assert_eq!(first["seq"], 2, "{first}");
    assert_eq!(first["joins"], serde_json::json!({"alice": {}}), "{first}");
    // Within the interval that follows, the rest fold into one diff.
    let (bob, _) = Client::join(server.addr(), "user=bob&channel=room");
    let _carol = Client::join(server.addr(), "user=carol&channel=room");
    drop(bob);
    let (second, _) = dana.wait_for_type("diff", STEP);
    assert_eq!(second["from"], 2, "chained to the first: {second}");
    assert_eq!(second["seq"], 5, "{second}");
    assert_eq!(
        second["joins"],
        serde_json::json!({"carol": {}}),
        "bob came and went: {second}"
    );
    assert_eq!(second["leaves"], serde_json::json!({}), "{second}");
}
