//! The JSON wire format: encoding each server event and decoding each client command.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion};
use rollcall::model::Counts;
use rollcall::model::{ErrorCode, EventsMode, Json, LeaveReason};
use rollcall::protocol::decode;
use rollcall::protocol::event;
use rollcall::roster::Roster;
use serde_json::json;

use crate::MAX_META;

pub fn benches(c: &mut Criterion) {
    encode(c);
    decode_commands(c);
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(800));
    let meta = crate::meta(r#"{"name":"Alice","status":"online"}"#);
    let data = Json::from_value(&json!({"text": "hello, world", "n": [1, 2, 3]}));
    let id = Json::from_value(&json!(17));
    let reference = Json::from_value(&json!("r-42"));

    group.bench_function("welcome", |b| {
        b.iter(|| event::welcome(black_box("12.3"), black_box("alice"), 30_000, 60_000));
    });
    // `state` walks the roster's member map, as the server does on join and `who`.
    for size in [10, 1_000] {
        let mut roster = Roster::new();
        let mut channel = None;
        for i in 0..size {
            let user = roster.connect_user(&format!("user-{i}"));
            let conn = rollcall::ids::Key {
                slot: i,
                generation: 0,
            };
            let (id, _) = roster.join("lobby", conn, &user, Some(meta.clone()), EventsMode::All);
            channel = Some(id);
        }
        let channel = channel.expect("members");
        group.bench_function(BenchmarkId::new("state", size), |b| {
            b.iter(|| {
                event::state(
                    "lobby",
                    black_box(7),
                    roster.members(channel),
                    Some(&reference),
                )
            });
        });
    }
    group.bench_function("join", |b| {
        b.iter(|| event::join(black_box("lobby"), black_box("alice"), &meta, black_box(42)));
    });
    // The same join for a user id that needs escaping (quotes, a backslash): the slow path.
    group.bench_function("join_escaped", |b| {
        let user = r#"auth0|"al\ice" 🦀"#;
        b.iter(|| {
            event::join(
                black_box("room:lobby"),
                black_box(user),
                &meta,
                black_box(42),
            )
        });
    });
    group.bench_function("leave", |b| {
        b.iter(|| {
            event::leave(
                black_box("lobby"),
                black_box("alice"),
                LeaveReason::Timeout,
                black_box(43),
            )
        });
    });
    group.bench_function("update", |b| {
        b.iter(|| event::update(black_box("lobby"), black_box("alice"), &meta, black_box(44)));
    });
    group.bench_function("count", |b| {
        let counts = Counts {
            users: 1_000,
            connections: 1_200,
            seq: 45,
        };
        b.iter(|| event::count(black_box("lobby"), black_box(counts), None));
    });
    group.bench_function("message", |b| {
        b.iter(|| event::message(black_box("lobby"), Some(black_box("alice")), &data));
    });
    group.bench_function("pong", |b| {
        b.iter(|| event::pong(black_box(&id), None));
    });
    group.bench_function("error", |b| {
        b.iter(|| {
            event::error(
                ErrorCode::NotJoined,
                black_box("not joined to \"lobby\""),
                Some(&reference),
            )
        });
    });
    group.finish();
}

fn decode_commands(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(800));
    let commands = [
        (
            "join_meta",
            r#"{"type":"join","channel":"lobby","meta":{"name":"Alice","status":"online"},"events":"all","ref":1}"#,
        ),
        ("leave", r#"{"type":"leave","channel":"lobby"}"#),
        (
            "update",
            r#"{"type":"update","channel":"lobby","meta":{"status":"away"}}"#,
        ),
        ("who", r#"{"type":"who","channel":"lobby","ref":"w1"}"#),
        (
            "publish",
            r#"{"type":"publish","channel":"lobby","data":{"text":"hello, world","n":[1,2,3]}}"#,
        ),
        // Numbers are kept with every digit (protocol §2), each as its own text: the cost
        // scales with how many a command carries.
        (
            "publish_numbers",
            r#"{"type":"publish","channel":"lobby","data":{"id":12345678901234567890123,"xy":[[48.8566,2.3522],[-33.8688,151.2093],[40.7128,-74.006],[35.6762,139.6503]],"t":1733338800123,"v":[0,1,2,3,4,5,6,7]}}"#,
        ),
        ("ping", r#"{"type":"ping","id":17}"#),
        ("watch", r#"{"type":"watch","channel":"lobby"}"#),
    ];
    for (name, text) in commands {
        decode(text, MAX_META).unwrap_or_else(|error| panic!("{name}: {error:?}"));
        group.bench_function(name, |b| {
            b.iter(|| decode(black_box(text), MAX_META));
        });
    }
    group.finish();
}
