//! The library's [`rollcall::Handler`] hooks ([`rollcall::Server::run_with`]) on an embedded
//! server, and `examples/radio.rs`, built on them, end to end with a real client.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::{mpsc, Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use rollcall::model::LeaveReason;
use rollcall::{
    Actions, Config, ConnectRequest, Counts, Decision, Handle, HandleError, Handler, Presence,
    Server,
};
use serde_json::json;

/// What the recording handler saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Connect {
        user: Option<String>,
        channels: Vec<String>,
    },
    Join {
        channel: String,
        user: String,
    },
    Leave {
        channel: String,
        user: String,
        reason: LeaveReason,
    },
    Update {
        user: String,
        meta: String,
    },
    Message {
        channel: String,
        data: String,
    },
}

/// Refuses user `mallory`, renames user `guest` to `visitor` in channel `lobby` with a meta,
/// admits `lurker` into no channel, chooses a meta that is no object for `broken`; records
/// all.
struct Recorder(mpsc::Sender<Seen>);

impl Handler for Recorder {
    fn on_connect(&mut self, request: &ConnectRequest<'_>) -> Decision {
        let _ = self.0.send(Seen::Connect {
            user: request.user.map(str::to_owned),
            channels: request.channels.to_vec(),
        });
        if request.target.starts_with("/app/refused") {
            return Decision::Refuse {
                status: 403,
                reason: "no Pusher here".into(),
            };
        }
        if request.target.starts_with("/app/") {
            // Ignored for a Pusher connection: its identity is in its signed subscriptions.
            return Decision::AcceptAs {
                user: "renamed".into(),
                channels: vec!["lobby".into()],
                meta: None,
            };
        }
        match request.user {
            Some("mallory") => Decision::Refuse {
                status: 403,
                reason: "not you".into(),
            },
            Some("guest") => Decision::AcceptAs {
                user: "visitor".into(),
                channels: vec!["lobby".into()],
                meta: Some(json!({"role": "guest"})),
            },
            Some("lurker") => Decision::AcceptAs {
                user: "lurker".into(),
                channels: Vec::new(),
                meta: None,
            },
            Some("broken") => Decision::AcceptAs {
                user: "broken".into(),
                channels: Vec::new(),
                meta: Some(json!(["not", "an", "object"])),
            },
            _ => Decision::Accept,
        }
    }

    fn on_presence(&mut self, change: Presence<'_>, _actions: &mut Actions) {
        let seen = match change {
            Presence::Join { channel, user, .. } => Seen::Join {
                channel: channel.into(),
                user: user.into(),
            },
            Presence::Leave {
                channel,
                user,
                reason,
            } => Seen::Leave {
                channel: channel.into(),
                user: user.into(),
                reason,
            },
            Presence::Update { user, meta, .. } => Seen::Update {
                user: user.into(),
                meta: meta.into(),
            },
        };
        let _ = self.0.send(seen);
    }

    fn on_message(
        &mut self,
        channel: &str,
        _from: Option<&str>,
        data: &str,
        _actions: &mut Actions,
    ) {
        let _ = self.0.send(Seen::Message {
            channel: channel.into(),
            data: data.into(),
        });
    }
}

fn embed_with_recorder(config: Config) -> (SocketAddr, Handle, mpsc::Receiver<Seen>) {
    let (ready, bound) = mpsc::channel();
    let (seen, record) = mpsc::channel();
    thread::spawn(move || {
        let mut server =
            Server::bind(config.listen(SocketAddr::from(([127, 0, 0, 1], 0)))).expect("bind");
        let _ = ready.send((server.local_addr(), server.handle()));
        let _ = server.run_with(Recorder(seen));
    });
    let (addr, handle) = bound.recv_timeout(STEP).expect("bound");
    (addr, handle, record)
}

#[track_caller]
fn next_seen(record: &mpsc::Receiver<Seen>) -> Seen {
    record.recv_timeout(STEP).expect("the handler was told")
}

#[test]
fn the_handler_decides_on_connections() {
    let (addr, _handle, record) = embed_with_recorder(Config::default());
    let refused = upgrade_attempt(addr, upgrade_request("/?user=mallory").as_bytes());
    assert_eq!(refused.status, 403, "{refused:?}");
    assert!(refused.body.contains("not you"), "{refused:?}");
    assert_eq!(
        next_seen(&record),
        Seen::Connect {
            user: Some("mallory".into()),
            channels: vec![]
        }
    );

    let (mut guest, welcome) = Client::connect_welcomed(addr, "user=guest&channel=secret");
    assert_eq!(welcome["user"], "visitor", "the handler chose the user");
    let state = guest.expect_type("state");
    assert_eq!(state["channel"], "lobby", "and the channel: {state}");
    assert_eq!(
        state["users"]["visitor"]["meta"],
        json!({"role": "guest"}),
        "and the meta: {state}"
    );
    assert_eq!(
        next_seen(&record),
        Seen::Connect {
            user: Some("guest".into()),
            channels: vec!["secret".into()]
        }
    );
    assert_eq!(
        next_seen(&record),
        Seen::Join {
            channel: "lobby".into(),
            user: "visitor".into()
        },
        "and the channel"
    );
}

/// A Pusher connection is asked too: the host may refuse it, but not rename it (its user is
/// the one its signed presence subscription names), and its channels reach the hooks as
/// `APP_ID#CHANNEL`.
#[test]
fn the_handler_may_refuse_a_pusher_connection_but_not_rename_it() {
    let apps = rollcall::pusher::PusherSettings::parse_list("9:app-key:app-secret,8:refused:x")
        .expect("apps");
    let settings = rollcall::pusher::PusherSettings {
        apps,
        ..Default::default()
    };
    let (addr, _handle, record) = embed_with_recorder(Config::default().pusher(settings));
    let refused = upgrade_attempt(addr, upgrade_request("/app/refused?protocol=7").as_bytes());
    assert_eq!(refused.status, 403, "{refused:?}");
    assert!(matches!(
        next_seen(&record),
        Seen::Connect { user: None, .. }
    ));

    let mut client = Client::connect_target(addr, "/app/app-key?protocol=7");
    let established = client.recv_json(STEP);
    assert_eq!(
        established["event"], "pusher:connection_established",
        "{established}"
    );
    assert!(matches!(
        next_seen(&record),
        Seen::Connect { user: None, .. }
    ));
    let data: serde_json::Value =
        serde_json::from_str(established["data"].as_str().unwrap_or_default()).expect("JSON");
    let socket = data["socket_id"].as_str().expect("socket id");
    let channel_data = r#"{"user_id":"ann"}"#;
    let signature = rollcall::pusher::auth::sign(
        "app-secret",
        &format!("{socket}:presence-room:{channel_data}"),
    );
    client.send_json(&json!({"event": "pusher:subscribe", "data": {
        "channel": "presence-room", "auth": format!("app-key:{signature}"),
        "channel_data": channel_data}}));
    let reply = client.recv_json(STEP);
    assert_eq!(
        reply["event"], "pusher_internal:subscription_succeeded",
        "{reply}"
    );
    assert_eq!(
        next_seen(&record),
        Seen::Join {
            channel: "9#presence-room".into(),
            user: "ann".into()
        },
        "not 'renamed' in lobby"
    );
}

#[test]
fn the_handler_is_told_of_presence_and_publications() {
    let config = Config::default()
        .heartbeat_interval(Duration::from_millis(300))
        .heartbeat_timeout(Duration::from_millis(700));
    let (addr, handle, record) = embed_with_recorder(config);
    let (mut alice, _) = Client::join(addr, "user=alice&channel=radio");
    next_seen(&record);
    assert_eq!(
        next_seen(&record),
        Seen::Join {
            channel: "radio".into(),
            user: "alice".into()
        }
    );
    alice.send_json(&json!({"type": "update", "channel": "radio", "meta": {"mood": "jazz"}}));
    assert_eq!(
        next_seen(&record),
        Seen::Update {
            user: "alice".into(),
            meta: r#"{"mood":"jazz"}"#.into()
        }
    );
    assert_eq!(handle.publish("radio", &json!({"song": 1})), Ok(1));
    assert_eq!(
        next_seen(&record),
        Seen::Message {
            channel: "radio".into(),
            data: r#"{"song":1}"#.into()
        }
    );

    // A listener that never reads goes silent: the handler hears `timeout`.
    let _silent = Client::connect(addr, "user=silent&channel=radio");
    next_seen(&record);
    assert_eq!(
        next_seen(&record),
        Seen::Join {
            channel: "radio".into(),
            user: "silent".into()
        }
    );
    let deadline = Instant::now() + STEP;
    let leave = loop {
        assert!(
            Instant::now() < deadline,
            "no leave for the silent listener"
        );
        let _ = alice.try_recv_json(Duration::from_millis(50));
        if let Ok(seen @ Seen::Leave { .. }) = record.try_recv() {
            break seen;
        }
    };
    assert_eq!(
        leave,
        Seen::Leave {
            channel: "radio".into(),
            user: "silent".into(),
            reason: LeaveReason::Timeout
        }
    );
}

#[test]
fn the_radio_example_plays_to_a_listener_and_sees_them_leave() {
    let (_radio, printed) = ChildGuard::spawn_reading(&example("radio"), &["127.0.0.1:0", "1"]);
    let first = printed.recv_timeout(STEP).expect("the example started");
    let addr = printed_address(&first);
    let wait_for_line = |needle: &str| {
        let deadline = Instant::now() + STEP;
        loop {
            let line = printed
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("no line with {needle:?}"));
            if line.contains(needle) {
                return line;
            }
        }
    };

    let (mut listener, _) = Client::connect_welcomed(addr, "user=ella&channel=radio&events=none");
    wait_for_line("tuned in: ella");
    let message = listener.expect_type("message");
    assert!(message["data"]["now_playing"].is_string(), "{message}");
    wait_for_line("now playing:");
    listener.close();
    wait_for_line("left: ella (closed");
}

/// What `on_connect` can read of a request: any header (without regard to case), any query
/// parameter decoded, the peer's address.
#[test]
fn the_connect_request_offers_headers_query_and_peer() {
    /// The header, the two query parameters, and whether the peer is on loopback.
    type Read = (Option<String>, Option<String>, Option<String>, bool);
    struct Reader(mpsc::Sender<Read>);
    impl Handler for Reader {
        fn on_connect(&mut self, request: &ConnectRequest<'_>) -> Decision {
            let _ = self.0.send((
                request.header("x-app-version").map(str::to_owned),
                request.query("room"),
                request.query("missing"),
                request
                    .peer_addr
                    .is_some_and(|peer| peer.ip().is_loopback()),
            ));
            Decision::Accept
        }
    }
    let (seen, read) = mpsc::channel();
    let spawned = Server::spawn(
        Config::default().listen(SocketAddr::from(([127, 0, 0, 1], 0))),
        Reader(seen),
    )
    .expect("spawned");
    let request = upgrade_request("/?user=ada&room=caf%C3%A9+noir").replacen(
        "\r\n",
        "\r\nx-APP-version:  2.1 \r\n",
        1,
    );
    let mut stream = tcp_connect(spawned.local_addr);
    stream.write_all(request.as_bytes()).expect("sent");
    let mut status = [0u8; 12];
    stream.read_exact(&mut status).expect("a response");
    assert_eq!(&status, b"HTTP/1.1 101");
    assert_eq!(
        read.recv_timeout(STEP).expect("on_connect ran"),
        (
            Some("2.1".to_owned()),
            Some("café noir".to_owned()),
            None,
            true
        )
    );
    spawned.handle.shutdown().expect("sent");
}

/// `AcceptAs` with no channels joins none (not the default channel); a meta that is not a
/// JSON object refuses the connection with 500 rather than admitting it half-configured.
#[test]
fn accept_as_with_no_channels_joins_none_and_a_bad_meta_is_refused() {
    let (addr, handle, record) = embed_with_recorder(Config::default());
    let (mut lurker, welcome) = Client::connect_welcomed(addr, "user=lurker");
    assert_eq!(welcome["user"], "lurker");
    assert_eq!(
        next_seen(&record),
        Seen::Connect {
            user: Some("lurker".into()),
            channels: vec![]
        }
    );
    let status = handle.status("lurker").expect("answered");
    assert_eq!(status.connections, 1, "{status:?}");
    assert!(status.channels.is_empty(), "joined {:?}", status.channels);
    assert_eq!(handle.members("lobby"), Ok(Vec::new()));
    lurker.send_json(&json!({"type": "join", "channel": "later"}));
    assert_eq!(
        lurker.expect_type("state")["channel"],
        "later",
        "it may join later"
    );

    let refused = upgrade_attempt(addr, upgrade_request("/?user=broken").as_bytes());
    assert_eq!(refused.status, 500, "{refused:?}");
    assert!(refused.body.contains("invalid meta"), "{refused:?}");
}

/// Greets each arrival from `on_presence`, echoes `{"n": k}` in channel `loop` as
/// `{"n": k + 1}` from `on_message`, and tries its own `Handle` from a hook.
struct Greeter {
    handle: Arc<OnceLock<Handle>>,
    from_hook: mpsc::Sender<Result<Option<Counts>, HandleError>>,
}

impl Handler for Greeter {
    fn on_presence(&mut self, change: Presence<'_>, actions: &mut Actions) {
        if let Presence::Join { channel, user, .. } = change {
            let greeting = json!({"hello": user, "in": channel});
            actions.send_to_user(user, &greeting).expect("a valid user");
            if let Some(handle) = self.handle.get() {
                let _ = self.from_hook.send(handle.counts(channel));
            }
        }
    }

    fn on_message(
        &mut self,
        channel: &str,
        _from: Option<&str>,
        data: &str,
        actions: &mut Actions,
    ) {
        let data: serde_json::Value = serde_json::from_str(data).expect("JSON from the server");
        if let (true, Some(n)) = (channel == "loop", data["n"].as_u64()) {
            actions
                .publish(channel, &json!({"n": n + 1}))
                .expect("a valid channel");
        }
    }
}

/// Hooks act through their `Actions` within the same turn, the loop keeps answering, a
/// `Handle` called from a hook fails at once with `OnLoopThread`, and a chain of actions
/// that each fire a hook queueing the next is cut after `MAX_HOOK_CHAIN` links.
#[test]
fn a_greeter_acts_from_its_hooks_and_the_loop_keeps_answering() {
    let handle = Arc::new(OnceLock::new());
    let (from_hook, hook_results) = mpsc::channel();
    let greeter = Greeter {
        handle: Arc::clone(&handle),
        from_hook,
    };
    let config = Config::default()
        .client_publish(true)
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)));
    let spawned = Server::spawn(config, greeter).expect("spawned");
    handle.set(spawned.handle.clone()).expect("set once");

    let (mut ada, _) = Client::join(spawned.local_addr, "user=ada&channel=lobby");
    let greeting = ada.expect_type("message");
    assert_eq!(greeting["data"], json!({"hello": "ada", "in": "lobby"}));
    assert_eq!(
        hook_results.recv_timeout(STEP).expect("the hook ran"),
        Err(HandleError::OnLoopThread)
    );
    let counts = spawned.handle.with_timeout(STEP).counts("lobby");
    assert_eq!(counts.expect("the loop answers").map(|c| c.users), Some(1));

    ada.send_json(&json!({"type": "join", "channel": "loop", "events": "none"}));
    ada.expect_type("message");
    ada.send_json(&json!({"type": "publish", "channel": "loop", "data": {"n": 0}}));
    let mut heard = Vec::new();
    ada.send_json(&json!({"type": "ping", "id": "after"}));
    let (_pong, skipped) = ada.wait_for_type("pong", STEP);
    for message in skipped {
        heard.push(message["data"]["n"].as_u64().expect("a count"));
    }
    let chain: Vec<u64> = (0..=u64::from(rollcall::MAX_HOOK_CHAIN)).collect();
    assert_eq!(
        heard, chain,
        "the client's message, then one per link of the chain"
    );
    spawned.handle.shutdown().expect("sent");
}
