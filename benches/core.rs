//! Micro-benchmarks of rollcall's pure core, through its public API only: the timer wheel
//! (insert, expiry, heartbeat lazy re-arm), the presence roster (join / leave / update in
//! a big channel), the JSON codec (every server event, every client command) and the
//! socket-free half of a broadcast (one event framed for 10k WebSocket connections).
//!
//! Run with `cargo bench --bench core`; `cargo bench --bench core -- wheel` runs one group.
//! Each group keeps warm-up and measurement short so the whole run stays well under three
//! minutes on a 2-core machine. Expensive fixtures (100k entries, 10k sockets) are built
//! lazily inside the benchmark closure, once, so a filtered-out benchmark costs nothing.

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use rollcall::ids::Stamped;
use rollcall::model::{Action, Meta};
use rollcall::protocol::decode;

#[path = "core/broadcast.rs"]
mod broadcast;
#[path = "core/codec.rs"]
mod codec;
#[path = "core/roster.rs"]
mod roster;
#[path = "core/wheel.rs"]
mod wheel;

/// `max_meta_size` of the default configuration.
const MAX_META: usize = 1 << 10;

/// A non-empty [`Meta`]. The public API only makes one by decoding a command.
fn meta(object: &str) -> Meta {
    let text = format!(r#"{{"type":"update","channel":"c","meta":{object}}}"#);
    match decode(&text, MAX_META).map(|command| command.action) {
        Ok(Action::Update { meta, .. }) => meta,
        other => panic!("{object} is not a meta object: {other:?}"),
    }
}

/// A value in `ids::Slots`, which keep each value's generation in the value itself.
struct Held<T> {
    value: T,
    generation: u32,
}

impl<T> Held<T> {
    fn new(value: T) -> Held<T> {
        Held {
            value,
            generation: 0,
        }
    }
}

impl<T> Stamped for Held<T> {
    fn generation(&self) -> u32 {
        self.generation
    }

    fn stamp(&mut self, generation: u32) {
        self.generation = generation;
    }
}

impl<T> Deref for Held<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> DerefMut for Held<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

/// A short configuration: fast enough for the whole file, steady enough for comparisons.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = wheel::benches, roster::benches, codec::benches, broadcast::benches
}
criterion_main!(benches);
