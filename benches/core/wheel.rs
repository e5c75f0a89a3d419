//! The timer wheel at 1k, 10k and 100k entries: inserting them, expiring them all in one
//! tick, and the heartbeat's lazy re-arm (fire, `Liveness::on_deadline` says `Recheck`,
//! insert again) of all of them in one tick. The target: at most 1 ms per tick for 100k.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use rollcall::heartbeat::{Heartbeat, Liveness, Verdict};
use rollcall::ids::{Key, Slots};
use rollcall::roster::GraceKey;
use rollcall::wheel::{Millis, Wheel};

use crate::Held;

/// The server's tick and default heartbeat.
const TICK_MS: Millis = 100;
const HEARTBEAT: Heartbeat = Heartbeat {
    interval: 30_000,
    timeout: 60_000,
};
const SIZES: [usize; 3] = [1_000, 10_000, 100_000];
const INTERVAL_TICKS: u64 = HEARTBEAT.interval / TICK_MS;

/// Shaped like the server's private timer key (16 bytes), so wheel entries have the real
/// footprint (24 bytes) and the real cache behaviour.
#[derive(Clone, Copy)]
#[allow(dead_code)] // only `Heartbeat` is built; `Grace` gives the enum the server's size
enum Timer {
    Heartbeat(Key),
    Grace(GraceKey),
}

/// `count` connections, each with its liveness, keyed by generational ids like the server's.
fn connections(count: usize, now: Millis) -> (Slots<Held<Liveness>>, Vec<Key>) {
    let mut conns = Slots::default();
    let keys = (0..count)
        .map(|_| conns.insert(Held::new(Liveness::new(now))))
        .collect();
    (conns, keys)
}

pub fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("wheel");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20);
    for size in SIZES {
        group.throughput(Throughput::Elements(size as u64));
        insert(&mut group, size);
        expire(&mut group, size);
        rearm(&mut group, size, true);
        rearm(&mut group, size, false);
    }
    // The steady state of a big server: 100k connections spread evenly over the ticks of
    // one heartbeat interval, so each tick re-arms about 333 of them.
    let size = SIZES[SIZES.len() - 1];
    group.throughput(Throughput::Elements((size as u64).div_ceil(INTERVAL_TICKS)));
    rearm_spread(&mut group, size);
    group.finish();
}

type Group<'a> = criterion::BenchmarkGroup<'a, criterion::measurement::WallTime>;

/// `size` first deadlines of freshly opened connections, spread over the 300 ticks of one
/// heartbeat interval, into a warm wheel (its slots keep their capacity between rounds, as
/// in a long-running server). Timed: the inserts only; emptying the wheel is not.
fn insert(group: &mut Group, size: usize) {
    let mut fixture = None;
    group.bench_function(BenchmarkId::new("insert", size), |b| {
        let (wheel, keys, now) = fixture.get_or_insert_with(|| {
            let (_, keys) = connections(size, 0);
            (Wheel::new(TICK_MS, 0), keys, 0)
        });
        let spread = HEARTBEAT.interval / TICK_MS;
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            let mut fired = Vec::with_capacity(size);
            for _ in 0..iters {
                let start = Instant::now();
                for (index, &key) in keys.iter().enumerate() {
                    let deadline = *now + HEARTBEAT.interval + (index as u64 % spread) * TICK_MS;
                    wheel.insert(Timer::Heartbeat(key), deadline);
                }
                elapsed += start.elapsed();
                *now += 2 * HEARTBEAT.interval;
                fired.clear();
                wheel.expire(*now, &mut fired);
                assert_eq!(fired.len(), size);
            }
            elapsed
        });
    });
}

/// What the server does with its heartbeat entries at a tick: `expire` into a fresh `Vec`,
/// then per fired key the generational lookup, `Liveness::on_deadline`, and `insert` at the
/// deadline it returns (the server also sends a Ping on `Verdict::Ping`). Returns how many
/// entries were re-armed.
fn heartbeat_tick(
    wheel: &mut Wheel<Timer>,
    conns: &mut Slots<Held<Liveness>>,
    now: Millis,
) -> usize {
    let mut fired = Vec::new();
    wheel.expire(now, &mut fired);
    let mut rearmed = 0;
    for timer in fired {
        let Timer::Heartbeat(id) = timer else {
            continue;
        };
        let Some(liveness) = conns.get_mut(id) else {
            continue;
        };
        match liveness.on_deadline(now, HEARTBEAT) {
            Verdict::Recheck(at) | Verdict::Ping(at) => {
                wheel.insert(timer, at);
                rearmed += 1;
            }
            Verdict::Expired => {}
        }
    }
    rearmed
}

/// How far apart, in ticks, the rounds of the one-tick benchmarks are: 256 divides the
/// wheel's 1024 slots, so the rounds reuse four slots whose capacity stays warm. (Slot
/// vectors never shrink; rounds spread over every slot would leave up to 1024 times
/// `size` × 24 bytes behind, and measure first-touch page faults instead of the wheel.)
const ROUND_TICKS: u64 = 256;

/// `size` entries due in the same tick, fired by one `expire` into a fresh `Vec` (as the
/// server's loop does). Timed: that one `expire` call, which visits exactly one slot.
fn expire(group: &mut Group, size: usize) {
    let mut fixture = None;
    group.bench_function(BenchmarkId::new("expire_one_tick", size), |b| {
        let (wheel, keys, now) = fixture.get_or_insert_with(|| {
            let (_, keys) = connections(size, 0);
            (Wheel::new(TICK_MS, 0), keys, 0)
        });
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                let due = *now + ROUND_TICKS * TICK_MS;
                for &key in keys.iter() {
                    wheel.insert(Timer::Heartbeat(key), due);
                }
                // Bring the wheel to the tick before: nothing fires, no slot left to walk.
                let mut nothing = Vec::new();
                wheel.expire(due - TICK_MS, &mut nothing);
                assert!(nothing.is_empty());

                let start = Instant::now();
                let mut fired = Vec::new();
                wheel.expire(due, &mut fired);
                black_box(&fired);
                elapsed += start.elapsed();

                assert_eq!(fired.len(), size);
                *now = due;
            }
            elapsed
        });
    });
}

/// One heartbeat tick of lazy re-arm: `expire` fires `size` connections due in this tick,
/// and for each the generational lookup, `Liveness::on_deadline` (every connection sent a
/// frame since, so the verdict is `Recheck`) and `insert` at the real deadline. Timed: that
/// whole tick. Untimed: the frames (`Liveness::heard`) and the walk up to the tick.
///
/// `warm`: the slot the entries move to has held them before (the steady state of a
/// long-running server). Cold: a fresh wheel each round, so the target slot's vector grows
/// from nothing (allocation and first-touch page faults), as the first time a big cluster
/// of connections lands on a slot.
fn rearm(group: &mut Group, size: usize, warm: bool) {
    let name = if warm {
        "rearm_one_tick"
    } else {
        "rearm_one_tick_cold"
    };
    let mut fixture = None;
    group.bench_function(BenchmarkId::new(name, size), |b| {
        let (wheel, conns, keys, due) = fixture.get_or_insert_with(|| {
            let (conns, keys) = connections(size, 0);
            let mut wheel = Wheel::new(TICK_MS, 0);
            let due = Liveness::new(0).first_deadline(HEARTBEAT);
            for &key in &keys {
                wheel.insert(Timer::Heartbeat(key), due);
            }
            (wheel, conns, keys, due)
        });
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                let now = *due;
                // Heard from so that the real deadline is `ROUND_TICKS` ahead (warm) or
                // one tick short of a whole interval ahead (cold, any fresh slot will do).
                let heard_at = if warm {
                    now + ROUND_TICKS * TICK_MS - HEARTBEAT.interval
                } else {
                    now - TICK_MS
                };
                for &key in keys.iter() {
                    conns.get_mut(key).expect("live").heard(heard_at);
                }
                if !warm {
                    *wheel = Wheel::new(TICK_MS, now - TICK_MS);
                    for &key in keys.iter() {
                        wheel.insert(Timer::Heartbeat(key), now);
                    }
                }
                let mut nothing = Vec::new();
                wheel.expire(now - TICK_MS, &mut nothing);
                assert!(nothing.is_empty());

                let start = Instant::now();
                let rearmed = heartbeat_tick(wheel, conns, now);
                elapsed += start.elapsed();

                assert_eq!(rearmed, size);
                *due = heard_at + HEARTBEAT.interval;
            }
            elapsed
        });
    });
}

/// One tick of a wheel holding `size` heartbeat entries spread evenly over the 300 ticks of
/// the interval: the ~`size / 300` due this tick are fired, looked up, judged (`Recheck`:
/// each was heard from just now, untimed) and re-inserted one interval on. Timed: per tick.
fn rearm_spread(group: &mut Group, size: usize) {
    let mut fixture = None;
    group.bench_function(BenchmarkId::new("rearm_per_tick_spread", size), |b| {
        let (wheel, conns, phases, now) = fixture.get_or_insert_with(|| {
            let (conns, keys) = connections(size, 0);
            let mut wheel = Wheel::new(TICK_MS, 0);
            // `phases[t]`: the connections due at ticks `t`, `t + 300`, `t + 600`, ...
            let mut phases = vec![Vec::new(); INTERVAL_TICKS as usize];
            for (index, key) in keys.into_iter().enumerate() {
                let phase = index % phases.len();
                phases[phase].push(key);
                wheel.insert(Timer::Heartbeat(key), (phase as u64 + 1) * TICK_MS);
            }
            (wheel, conns, phases, 0)
        });
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                *now += TICK_MS;
                let due = &phases[(*now / TICK_MS - 1) as usize % phases.len()];
                for &key in due {
                    conns.get_mut(key).expect("live").heard(*now);
                }

                let start = Instant::now();
                let rearmed = heartbeat_tick(wheel, conns, *now);
                elapsed += start.elapsed();

                assert_eq!(rearmed, due.len());
            }
            elapsed
        });
    });
}
