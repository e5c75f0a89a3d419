//! Fuzzes the frame boundary that lets an idle connection drop tungstenite's context:
//! `rollcall::frame_boundary::replay` reads any bytes, cut into any reads, through tungstenite
//! with one context throughout and with the context dropped wherever the boundary says the
//! connection is idle; the two must report the same messages, errors and replies.
//!
//! Input: one byte giving the number of cuts (up to 15), that many bytes giving where each
//! read ends (as a fraction of the stream), then the peer's bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rollcall::frame_boundary::replay;

fuzz_target!(|data: &[u8]| {
    let Some((&count, rest)) = data.split_first() else {
        return;
    };
    let count = usize::from(count % 16).min(rest.len());
    let (cuts, stream) = rest.split_at(count);
    let mut offsets: Vec<usize> = cuts
        .iter()
        .map(|&cut| usize::from(cut) * stream.len() / 255)
        .collect();
    offsets.sort_unstable();
    let mut chunks = Vec::with_capacity(offsets.len() + 1);
    let mut start = 0;
    for offset in offsets.into_iter().chain([stream.len()]) {
        chunks.push(&stream[start..offset]);
        start = offset;
    }
    if let Err(difference) = replay(&chunks) {
        panic!("dropping an idle context changed what tungstenite reports:\n{difference}");
    }
});
