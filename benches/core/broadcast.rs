//! The socket-free half of a broadcast: one `join` event to the 10k `all` subscribers of a
//! channel, each written as a WebSocket text frame through its own tungstenite `WebSocket`
//! (server role, the server's buffer settings) over an in-memory sink. The server's
//! delivery path is mirrored: encode once, share the bytes (`Utf8Bytes`), walk
//! `Roster::subscribers`, look each connection up by generational key, `write` the frame.

use std::hint::black_box;
use std::io::{self, Read, Write};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use rollcall::ids::Slots;

use crate::Held;
use rollcall::model::{EventsMode, Meta};
use rollcall::protocol::event;
use rollcall::roster::{ChannelId, ConnId, Roster};
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Message, Utf8Bytes, WebSocket};

const MEMBERS: usize = 10_000;
const CHANNEL: &str = "lobby";

/// A peer that never sends anything and takes every byte at once.
#[derive(Default)]
struct Sink {
    written: u64,
}

impl Read for Sink {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct Fixture {
    roster: Roster,
    conns: Slots<Held<WebSocket<Sink>>>,
    channel: ChannelId,
    meta: Meta,
}

impl Fixture {
    fn new() -> Fixture {
        // As the server configures its sockets, from the default `Config`.
        let defaults = rollcall::Config::default();
        let config = WebSocketConfig::default()
            .read_buffer_size(defaults.read_buffer_size)
            .write_buffer_size(0)
            .max_write_buffer_size(defaults.max_backlog)
            .max_message_size(Some(defaults.max_message_size))
            .max_frame_size(Some(defaults.max_message_size));
        let meta = crate::meta(r#"{"name":"Member","status":"online"}"#);
        let mut roster = Roster::new();
        let mut conns = Slots::default();
        let mut channel = None;
        for i in 0..MEMBERS {
            let id = conns.insert(Held::new(WebSocket::from_raw_socket(
                Sink::default(),
                Role::Server,
                Some(config),
            )));
            let user = roster.connect_user(&format!("user-{i}"));
            let (joined, _) = roster.join(CHANNEL, id, &user, Some(meta.clone()), EventsMode::All);
            channel = Some(joined);
        }
        Fixture {
            roster,
            conns,
            channel: channel.expect("members"),
            meta,
        }
    }
}

/// The `all` subscribers but `except`, as the server's `subscribers_in_mode`.
fn recipients(
    roster: &Roster,
    channel: ChannelId,
    except: Option<ConnId>,
) -> impl Iterator<Item = ConnId> + '_ {
    roster
        .subscribers(channel)
        .filter(move |&(conn, mode)| mode == EventsMode::All && Some(conn) != except)
        .map(|(conn, _)| conn)
}

pub fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("broadcast");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
        .throughput(Throughput::Elements(MEMBERS as u64));
    let mut fixture: Option<Fixture> = None;
    let mut seq = 0u64;

    // The whole fan-out: encode, then one text frame per subscriber.
    group.bench_function(BenchmarkId::new("join_event_framed", MEMBERS), |b| {
        let fixture = fixture.get_or_insert_with(Fixture::new);
        b.iter(|| {
            seq += 1;
            let text = Utf8Bytes::from(event::join(CHANNEL, "newcomer", &fixture.meta, seq));
            let Fixture {
                roster,
                conns,
                channel,
                ..
            } = fixture;
            let mut sent = 0usize;
            for id in recipients(roster, *channel, None) {
                let Some(ws) = conns.get_mut(id) else {
                    continue;
                };
                if !ws.can_write() {
                    continue;
                }
                ws.write(Message::Text(text.clone()))
                    .expect("the sink takes everything");
                sent += 1;
            }
            assert_eq!(sent, MEMBERS);
        });
    });

    // The same walk without framing: what the roster walk and the lookups cost alone.
    group.bench_function(BenchmarkId::new("walk_only", MEMBERS), |b| {
        let fixture = fixture.get_or_insert_with(Fixture::new);
        b.iter(|| {
            let mut writable = 0usize;
            for id in recipients(&fixture.roster, fixture.channel, None) {
                if fixture.conns.get(id).is_some_and(|ws| ws.can_write()) {
                    writable += 1;
                }
            }
            black_box(writable)
        });
    });
    group.finish();
}
