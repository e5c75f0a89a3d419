//! One presence operation (join, leave, update) against a channel of 1k or 100k members.
//! The channel is built once, outside the timed loop; each timed operation is undone
//! (untimed) so the channel keeps its size. Times are per operation.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, BenchmarkId, Criterion};
use rollcall::ids::Key;
use rollcall::model::{EventsMode, LeaveReason, Meta};
use rollcall::roster::{ChannelId, Roster, UserId};

const SIZES: [usize; 2] = [1_000, 100_000];
const CHANNEL: &str = "lobby";
/// Operations timed back to back before they are undone.
const CHUNK: usize = 64;

fn conn(slot: usize) -> Key {
    Key {
        slot: slot as u32,
        generation: 0,
    }
}

struct Fixture {
    roster: Roster,
    channel: ChannelId,
    /// The channel's members; member `i` is subscribed through `conn(i)`.
    members: Vec<UserId>,
    /// Connected users not in the channel, on `conn(size + i)`.
    newcomers: Vec<UserId>,
    meta: Meta,
}

impl Fixture {
    fn new(size: usize) -> Fixture {
        let mut roster = Roster::new();
        let meta = crate::meta(r#"{"name":"Member","status":"online"}"#);
        let members: Vec<UserId> = (0..size)
            .map(|i| roster.connect_user(&format!("user-{i}")))
            .collect();
        let mut channel = None;
        for (i, user) in members.iter().enumerate() {
            let (id, _) = roster.join(CHANNEL, conn(i), user, Some(meta.clone()), EventsMode::All);
            channel = Some(id);
        }
        let newcomers = (0..CHUNK)
            .map(|i| roster.connect_user(&format!("newcomer-{i}")))
            .collect();
        Fixture {
            roster,
            channel: channel.expect("at least one member"),
            members,
            newcomers,
            meta,
        }
    }

    fn join_newcomers(&mut self, count: usize) -> Duration {
        let size = self.members.len();
        let mut metas: Vec<Option<Meta>> = vec![Some(self.meta.clone()); count];
        let start = Instant::now();
        for (i, user) in self.newcomers[..count].iter().enumerate() {
            let meta = metas[i].take();
            black_box(
                self.roster
                    .join(CHANNEL, conn(size + i), user, meta, EventsMode::All),
            );
        }
        start.elapsed()
    }

    fn leave_newcomers(&mut self, count: usize) -> Duration {
        let size = self.members.len();
        let start = Instant::now();
        for (i, user) in self.newcomers[..count].iter().enumerate() {
            let outcome =
                self.roster
                    .leave(self.channel, conn(size + i), user, LeaveReason::Left, false);
            black_box(outcome.expect("joined"));
        }
        start.elapsed()
    }
}

pub fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("roster");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30);
    for size in SIZES {
        // Built on first use only (a filtered-out size costs nothing), then shared by the
        // three benchmarks of that size, which all leave it as they found it.
        let mut fixture: Option<Fixture> = None;

        // A newcomer joins (with meta): announced as a `join`. Undone by leaving.
        group.bench_function(BenchmarkId::new("join", size), |b| {
            let fixture = fixture.get_or_insert_with(|| Fixture::new(size));
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                let mut left = iters as usize;
                while left > 0 {
                    let count = left.min(CHUNK);
                    elapsed += fixture.join_newcomers(count);
                    fixture.leave_newcomers(count);
                    left -= count;
                }
                elapsed
            });
        });

        // A member's only connection leaves (no grace): announced as a `leave`. Undone by
        // joining again.
        group.bench_function(BenchmarkId::new("leave", size), |b| {
            let fixture = fixture.get_or_insert_with(|| Fixture::new(size));
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                let mut left = iters as usize;
                while left > 0 {
                    let count = left.min(CHUNK);
                    fixture.join_newcomers(count);
                    elapsed += fixture.leave_newcomers(count);
                    left -= count;
                }
                elapsed
            });
        });

        // A member changes its meta: announced as an `update`. Members are taken in turn,
        // and each pass over the channel alternates between two metas, so every call is a
        // real change. Producing the new `Meta` (decoding, in the server) is not timed.
        let metas = [
            crate::meta(r#"{"name":"Member","status":"away"}"#),
            crate::meta(r#"{"name":"Member","status":"busy"}"#),
        ];
        let mut next = 0usize;
        group.bench_function(BenchmarkId::new("update", size), |b| {
            let fixture = fixture.get_or_insert_with(|| Fixture::new(size));
            let Fixture {
                roster,
                channel,
                members,
                ..
            } = fixture;
            b.iter_batched(
                || {
                    let index = next % members.len();
                    let meta = metas[(next / members.len()) % 2].clone();
                    next += 1;
                    (index, meta)
                },
                |(index, meta)| {
                    roster
                        .update(*channel, conn(index), &members[index], meta)
                        .expect("a member")
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}
